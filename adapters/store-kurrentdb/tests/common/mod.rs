//! What the tests share: a double with a store on it, and a loopback TCP proxy that can cut
//! connections or swallow the server's replies, to show what the store does when the
//! network fails (the double itself never fails).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dealreg_kurrentdb_double::KurrentDouble;
use dealreg_store_kurrentdb::{KurrentOptions, KurrentStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The connection string of a double, without the client's 500 ms wait before its first
/// call.
pub fn url_of(addr: SocketAddr) -> String {
    format!("kurrentdb://{addr}?tls=false&discoveryInterval=0")
}

/// A fresh double and a store on it.
pub async fn fresh() -> (KurrentDouble, KurrentStore) {
    let double = KurrentDouble::start().await;
    let store = KurrentStore::connect(&url_of(double.addr()))
        .await
        .expect("connect to the double");
    (double, store)
}

/// A store on `addr` with `options`.
pub async fn store_at(addr: SocketAddr, options: KurrentOptions) -> KurrentStore {
    KurrentStore::connect_with(&url_of(addr), options)
        .await
        .expect("connect")
}

/// A TCP proxy on loopback in front of `upstream`.
pub struct Proxy {
    addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    swallow: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let swallow = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (swallow2, connections2) = (swallow.clone(), connections.clone());
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let accepted2 = accepted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted2.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let swallow = swallow2.clone();
                let task = tokio::spawn(relay(client, server, swallow));
                connections2
                    .lock()
                    .expect("proxy lock")
                    .push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            accepted,
            swallow,
            connections,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// While on, the client's bytes reach the server but nothing comes back.
    pub fn swallow_replies(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
    }

    /// Closes every open connection at once, as a network failure would.
    pub fn cut(&self) {
        for connection in self.connections.lock().expect("proxy lock").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, swallow: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if swallow.load(Ordering::SeqCst) {
                        continue;
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(up, down);
}
