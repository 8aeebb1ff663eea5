//! A real `nats-server` and real `dealreg serve` processes for the NATS tests.
//!
//! The server listens on 127.0.0.1 on a port it picks (`-p -1`, read back from its ports
//! file), keeps JetStream in a temporary directory and is stopped by its PID. A missing
//! server fails the test: `scripts/setup` installs one.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl NatsServer {
    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        self.child.id()
    }

    /// A server with JetStream, and `config` (a nats-server configuration) when given.
    pub fn start(config: Option<&str>) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.path().join("jetstream"))
            .arg("--ports_file_dir")
            .arg(dir.path());
        if let Some(config) = config {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, config).expect("write server config");
            command.arg("-c").arg(&path);
        }
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({e}); run scripts/setup, which installs nats-server >= 2.12"));
        let ports = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ports) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(url) = value["nats"][0].as_str() {
                        break url.to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        NatsServer { child, url, dir }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dealreg serve` process.
pub struct Serve {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `dealreg serve` on `store`, connecting to `url` with `extra` arguments
    /// (credentials), and waits until it answers `$SRV.PING.dealreg` through `client`.
    pub async fn start(
        store: impl AsRef<std::ffi::OsStr>,
        url: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
        client: &async_nats::Client,
    ) -> Serve {
        let before = count_instances(client).await;
        let serve = Serve::spawn(store, url, extra, envs, log);
        let deadline = Instant::now() + Duration::from_secs(20);
        while count_instances(client).await <= before {
            assert!(
                Instant::now() < deadline,
                "dealreg serve did not come up: {}",
                serve.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    /// `dealreg serve --views-only`: it registers no service instance, so it is up once
    /// its log says it took the views lease.
    pub async fn start_views_only(
        store: impl AsRef<std::ffi::OsStr>,
        url: &str,
        log: PathBuf,
    ) -> Serve {
        let serve = Serve::spawn(store, url, &["--views-only"], &[], log);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !serve.log_text().contains("took the views lease") {
            assert!(
                Instant::now() < deadline,
                "dealreg serve --views-only did not take the views lease: {}",
                serve.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    fn spawn(
        store: impl AsRef<std::ffi::OsStr>,
        url: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> Serve {
        let out = std::fs::File::create(&log).expect("serve log");
        let child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(store.as_ref())
            .args(["serve", "--nats-url", url, "--tick-secs", "3600"])
            .args(extra)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start dealreg serve");
        Serve {
            child: Some(child),
            log,
        }
    }

    /// Like [`Serve::start`] with no extra arguments, logging with `rust_log` (a
    /// `RUST_LOG` filter, e.g. the engine's debug events) instead of `info`.
    pub async fn start_logging(
        store: impl AsRef<std::ffi::OsStr>,
        url: &str,
        rust_log: &str,
        log: PathBuf,
        client: &async_nats::Client,
    ) -> Serve {
        let before = count_instances(client).await;
        let out = std::fs::File::create(&log).expect("serve log");
        let child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(store.as_ref())
            .args(["serve", "--nats-url", url, "--tick-secs", "3600"])
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start dealreg serve");
        let serve = Serve {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while count_instances(client).await <= before {
            assert!(
                Instant::now() < deadline,
                "dealreg serve did not come up: {}",
                serve.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status once it drained.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("serve runs");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        child.wait().expect("wait for serve")
    }

    /// SIGKILL: no drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many instances of the dealreg micro service answer a ping now.
pub async fn count_instances(client: &async_nats::Client) -> usize {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else {
        return 0;
    };
    if client
        .publish_with_reply("$SRV.PING.dealreg", inbox, "".into())
        .await
        .is_err()
    {
        return 0;
    }
    let _ = client.flush().await;
    let mut n = 0;
    // With no instance at all the server answers "no responders": an empty message.
    while let Ok(Some(reply)) =
        tokio::time::timeout(Duration::from_millis(150), replies.next()).await
    {
        if !reply.payload.is_empty() {
            n += 1;
        }
    }
    n
}

/// A request with a JSON body; the reply's JSON and its error-code header.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: &serde_json::Value,
    msg_id: Option<&str>,
) -> (serde_json::Value, Option<String>) {
    request_bytes(client, subject, body.to_string().into_bytes(), msg_id).await
}

pub async fn request_bytes(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
    msg_id: Option<&str>,
) -> (serde_json::Value, Option<String>) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert("Nats-Msg-Id", id);
    }
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        client.request_with_headers(subject.to_string(), headers, body.into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply on {subject} within 20 s"))
    .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_string());
    let value = serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("reply on {subject} is not JSON ({e}): {:?}", reply.payload));
    (value, code)
}

/// A client of a server run with the example configuration, as `user` (whose password
/// there is `<user>-secret`), with its own inbox prefix when given (partners need one).
pub async fn connect_as(url: &str, user: &str, inbox: Option<String>) -> async_nats::Client {
    let mut options = async_nats::ConnectOptions::new()
        .user_and_password(user.to_string(), format!("{user}-secret"));
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    options.connect(url).await.expect("connect")
}

/// A date `days` from today, as the commands write dates.
pub fn days_from_now(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .to_string()
}
