//! Real `nats-server` processes for the tests of dealreg's NATS adapters.
//!
//! The JetStream event store leans on behaviour only the real server has: atomic batch
//! publish (server 2.12+), the expected-sequence checks, Raft elections after a node dies,
//! and the bytes the file store leaves on disk. A double would test our reading of that
//! behaviour, not the behaviour, so these tests start the binary that production runs.
//!
//! - [`NatsServer`]: one JetStream server on 127.0.0.1, on a port it picks itself.
//! - [`NatsCluster`]: a JetStream cluster of three or more nodes on loopback, whose nodes can
//!   be killed (SIGKILL, no shutdown) and restarted on the same ports and store directory.
//!
//! Everything a server writes (its JetStream store, its configuration, its log) lives in a
//! temporary directory that goes away with the handle, and every process is killed by its
//! PID when the handle is dropped, so a failing test leaves nothing running behind it.
//!
//! A missing or too old `nats-server` panics with a message that says to run
//! `scripts/setup`: a test that skipped itself would look like a test that passed.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The oldest server the adapters may run on: atomic batch publish came in 2.12.
pub const MIN_SERVER_VERSION: (u32, u32) = (2, 12);

/// What to do when the server is missing or too old, in every panic about it.
const SETUP_HINT: &str = "run scripts/setup, which installs nats-server >= 2.12";

/// How long a server may take to come up. Generous: the project's machines have two cores
/// and a test binary may start several servers while others build.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The version of the `nats-server` on PATH, as `2.15.1`.
///
/// Panics when there is none, with the hint to run `scripts/setup`.
pub fn server_version() -> String {
    let out = Command::new("nats-server")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nats-server --version ({e}); {SETUP_HINT}"));
    // Prints `nats-server: v2.15.1`.
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim_start_matches('v')
        .to_string()
}

/// `(major, minor, patch)` of a version such as `2.15.1` or `2.12.0-beta.1`.
pub fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Checks once per test binary that the server exists and is recent enough, so that an old
/// server fails with a clear message instead of an obscure error from a newer API.
fn require_server() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let version = server_version();
        let Some((major, minor, _)) = parse_version(&version) else {
            panic!("cannot read the version of nats-server ({version:?}); {SETUP_HINT}");
        };
        assert!(
            (major, minor) >= MIN_SERVER_VERSION,
            "nats-server {version} is older than {}.{}; {SETUP_HINT}",
            MIN_SERVER_VERSION.0,
            MIN_SERVER_VERSION.1
        );
    });
}

fn spawn(args: &[String], log: &Path) -> Child {
    require_server();
    // Appends, so the log of a restarted server keeps what it said before it was killed.
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("create the nats-server log file in the temp dir");
    Command::new("nats-server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server ({e}); {SETUP_HINT}"))
}

/// SIGKILL by PID (what `Child::kill` sends on Unix), then reap the process.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A GET on a monitoring endpoint: the status code and the body. `None` while nothing
/// listens or the server does not answer. HTTP/1.0 by hand, so the harness needs no HTTP
/// client crate.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// One JetStream server on 127.0.0.1.
///
/// It picks its own ports (`-p -1`, `-m -1`) and writes them to a ports file, which this
/// handle reads: no port is chosen before the server binds it, so two tests cannot race
/// for one. A [`restart`](NatsServer::restart) reuses the ports and the store directory.
pub struct NatsServer {
    child: Option<Child>,
    url: String,
    monitor_url: String,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// A server with JetStream and the defaults.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None)
    }

    /// A server with JetStream and `config`, a nats-server configuration, when given (for
    /// accounts, `jetstream { sync_interval: always }`, limits). The command line still sets
    /// the address, the ports and the store directory, and wins over the file.
    pub fn start_with(config: Option<&str>) -> NatsServer {
        let dir = tempfile::tempdir().expect("create a temp dir for nats-server");
        let config = config.map(|text| {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, text).expect("write the nats-server config into the temp dir");
            path
        });
        let mut server = NatsServer {
            child: None,
            url: String::new(),
            monitor_url: String::new(),
            dir,
            config,
        };
        server.launch("-1", "-1");
        server
    }

    fn launch(&mut self, port: &str, http_port: &str) {
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.into(),
            "-m".into(),
            http_port.into(),
            "-js".into(),
            "-sd".into(),
            self.store_dir().display().to_string(),
            "--ports_file_dir".into(),
            self.dir.path().display().to_string(),
        ];
        if let Some(config) = &self.config {
            args.push("-c".into());
            args.push(config.display().to_string());
        }
        let child = spawn(&args, &self.log_path());
        let ports = self
            .dir
            .path()
            .join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some((url, monitor)) = std::fs::read_to_string(&ports)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|ports| {
                    let url = ports["nats"][0].as_str()?.to_string();
                    let monitor = ports["monitoring"][0].as_str()?.to_string();
                    Some((url, monitor))
                })
            {
                self.url = url;
                self.monitor_url = monitor;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited ({status}) at start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The monitoring URL, `http://127.0.0.1:PORT` (`/varz` shows the JetStream settings in
    /// force, such as `sync_interval`, which no client API returns).
    pub fn monitor_url(&self) -> &str {
        &self.monitor_url
    }

    /// The JetStream store directory, for checks on the raw bytes the server keeps.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The temp dir holding the store, the config, the ports file and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// What the server wrote to stderr, across restarts.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// The PID while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown, no flush; what the store kept is what a crash keeps.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Kills the server if it runs and starts it again on the same ports and store, so
    /// clients that reconnect find it at the URL they had.
    pub fn restart(&mut self) {
        self.kill();
        let port = port_of(&self.url).expect("the server's URL ends with its port");
        let http = port_of(&self.monitor_url).expect("the monitoring URL ends with its port");
        let url = std::mem::take(&mut self.url);
        self.launch(&port.to_string(), &http.to_string());
        assert_eq!(self.url, url, "the restarted server moved to another port");
    }

    /// `/varz` of the running server, as JSON (`jetstream.config.sync_interval`,
    /// `jetstream.config.sync_always`, `version`).
    pub fn varz(&self) -> serde_json::Value {
        let port = port_of(&self.monitor_url).expect("the monitoring URL ends with its port");
        let (_, body) = http_get(port, "/varz").expect("nats-server answers /varz");
        serde_json::from_str(&body).expect("/varz is JSON")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings added to every node of a [`NatsCluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Lines inside each node's `jetstream { }` block, e.g. `sync_interval: always`.
    pub jetstream: String,
    /// Lines at the top level of each node's configuration, e.g. `accounts { ... }`.
    pub config: String,
}

struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("server.conf")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    fn store_dir(&self) -> PathBuf {
        self.dir.join("jetstream")
    }
}

/// A JetStream cluster on loopback, to test what happens to the event store when a node
/// (and with it a stream leader) dies: election, no lost acknowledged write, rejoin.
///
/// The ports of every node (client, route, monitoring) are chosen before the first start,
/// because each node's routes must name the others' route ports; a node restarts on the
/// same ports and store directory, as a restarted machine would. Nodes are named `n0`,
/// `n1`, ... and that name is the `server_name` that stream info reports as leader.
///
/// Starting, killing and restarting are blocking calls (they poll the monitoring port with
/// std I/O), so they work from sync tests and from any runtime; in an async test they hold
/// one runtime thread while a node comes up, so use the multi-thread flavour there.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// The cluster's name in every node's configuration.
const CLUSTER_NAME: &str = "dealreg-test";

impl NatsCluster {
    /// A cluster of `nodes` (at least 3) with JetStream and the defaults, returned once a
    /// meta leader is elected and every node reports itself healthy.
    pub fn start(nodes: usize) -> NatsCluster {
        NatsCluster::start_with(nodes, &ClusterOptions::default())
    }

    /// As [`start`](NatsCluster::start), with `options` added to every node's configuration.
    pub fn start_with(nodes: usize, options: &ClusterOptions) -> NatsCluster {
        // Fewer than 3 nodes lose their quorum when one is killed, which is the case this
        // harness exists for; a single server is NatsServer.
        assert!(
            nodes >= 3,
            "a test cluster needs at least 3 nodes, got {nodes}"
        );
        let dir = tempfile::tempdir().expect("create a temp dir for the nats cluster");
        let ports = free_ports(nodes * 3);
        let mut cluster = NatsCluster {
            nodes: (0..nodes)
                .map(|i| Node {
                    name: format!("n{i}"),
                    client_port: ports[i * 3],
                    route_port: ports[i * 3 + 1],
                    http_port: ports[i * 3 + 2],
                    dir: dir.path().join(format!("n{i}")),
                    child: None,
                })
                .collect(),
            _dir: dir,
        };
        for i in 0..nodes {
            let node = &cluster.nodes[i];
            std::fs::create_dir_all(&node.dir).expect("create a node dir in the temp dir");
            let config = cluster.node_config(i, options);
            std::fs::write(node.config_path(), config).expect("write a node's nats-server config");
        }
        for i in 0..nodes {
            cluster.spawn_node(i);
        }
        for i in 0..nodes {
            cluster.wait_healthy(i, START_TIMEOUT);
        }
        cluster
    }

    fn node_config(&self, i: usize, options: &ClusterOptions) -> String {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .filter(|other| other.name != node.name)
            .map(|other| format!("    \"nats-route://127.0.0.1:{}\"", other.route_port))
            .collect();
        // Paths go through serde_json so that quotes and backslashes are escaped the way the
        // configuration's double-quoted strings read them.
        let store = serde_json::to_string(&node.store_dir().display().to_string())
            .expect("a path serializes as a JSON string");
        format!(
            "server_name: {name}\n\
             listen: \"127.0.0.1:{client}\"\n\
             http: \"127.0.0.1:{http}\"\n\
             jetstream {{\n  store_dir: {store}\n  {js_extra}\n}}\n\
             cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route}\"\n  routes: [\n{routes}\n  ]\n}}\n\
             {extra}\n",
            name = node.name,
            client = node.client_port,
            http = node.http_port,
            route = node.route_port,
            routes = routes.join("\n"),
            js_extra = options.jetstream,
            extra = options.config,
        )
    }

    fn spawn_node(&mut self, i: usize) {
        let node = &self.nodes[i];
        let args = vec!["-c".to_string(), node.config_path().display().to_string()];
        let child = spawn(&args, &node.log_path());
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` runs, answers `/healthz` with 200 (JetStream enabled, the meta
    /// group and this node's streams current) and knows a meta leader (`/jsz`).
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let node = &self.nodes[i];
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = matches!(http_get(node.http_port, "/healthz"), Some((200, _)));
            let leader = http_get(node.http_port, "/jsz")
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|jsz| jsz["meta_cluster"]["leader"].as_str().map(str::to_string))
                .filter(|leader| !leader.is_empty());
            if healthy && leader.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats node {} not healthy within {timeout:?} (healthz ok: {healthy}, meta leader: {leader:?}):\n{}",
                node.name,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How many nodes the cluster has, running or not.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client URL, comma-joined, as `--nats-url` style flags take a server
    /// list. `async_nats::connect` does not split this string (it parses one address); give
    /// it [`url_list`](NatsCluster::url_list) instead.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every node's client URL, for `async_nats::connect(cluster.url_list())`.
    pub fn url_list(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URLs of the nodes that run now.
    pub fn running_url_list(&self) -> Vec<String> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.url(i))
            .collect()
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s monitoring URL (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].http_port)
    }

    /// Node `i`'s `server_name`, as stream and consumer info name leaders and replicas.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node whose `server_name` is `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Whether node `i` runs (was not killed, or was restarted since).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Node `i`'s PID while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// SIGKILLs node `i` by its PID: no shutdown, no step-down, no flush.
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.nodes[i].child);
    }

    /// Starts node `i` again (killing it first if it runs) on its ports and store directory,
    /// and waits until it is healthy, which means it rejoined and its streams caught up.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn_node(i);
        self.wait_healthy(i, START_TIMEOUT);
    }

    /// Every node's JetStream store directory (streams, and the Raft logs under `_js_`), to
    /// check which bytes every replica still holds on disk.
    pub fn store_dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(Node::store_dir).collect()
    }

    /// What node `i` wrote to stderr, across restarts.
    pub fn log(&self, i: usize) -> String {
        read_log(&self.nodes[i].log_path())
    }

    /// The node that leads `stream` now, from the stream info's `cluster.leader`, asked
    /// through the running nodes. `None` while no leader answers (during an election) or
    /// when the stream does not exist.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.running_url_list())
            .await
            .ok()?;
        let mut js = async_nats::jetstream::new(client);
        js.set_timeout(Duration::from_secs(2));
        let info = js.get_stream(stream).await.ok()?.get_info().await.ok()?;
        let leader = info.cluster?.leader?;
        self.node_index(&leader).filter(|&i| self.is_running(i))
    }

    /// Polls [`stream_leader`](NatsCluster::stream_leader) until there is one, e.g. after
    /// killing the old leader. Panics with every node's log when `timeout` passes first.
    pub async fn wait_for_stream_leader(&self, stream: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.stream_leader(stream).await {
                return leader;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..self.nodes.len())
                    .map(|i| format!("--- {} ---\n{}", self.nodes[i].name, self.log(i)))
                    .collect();
                panic!(
                    "no leader for stream {stream} within {timeout:?}:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill_child(&mut node.child);
        }
    }
}

/// `n` distinct free ports on 127.0.0.1: all bound at once (so none repeats), then released
/// for the servers to take. Another process could take one in between; the servers' logs
/// then say so.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

/// A loopback listener that answers the NATS client handshake as a server of another
/// version would: its `INFO` names `version` and JetStream, it answers `PING` with `PONG`,
/// and it never serves anything else. For the refusal of servers older than
/// [`MIN_SERVER_VERSION`]: no older `nats-server` is installed here, and the version check
/// reads nothing but the handshake's `INFO`.
pub struct HandshakeOnlyServer {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HandshakeOnlyServer {
    /// Listens on 127.0.0.1 on a free port, in a thread of its own.
    pub fn start(version: &str) -> HandshakeOnlyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let info = format!(
            "INFO {{\"server_id\":\"HANDSHAKE-ONLY\",\"server_name\":\"handshake-only\",\"version\":\"{version}\",\"proto\":1,\"go\":\"go1.24\",\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}}\r\n"
        );
        let stopped = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let info = info.clone();
                        std::thread::spawn(move || answer_handshake(stream, &info));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HandshakeOnlyServer {
            url: format!("nats://127.0.0.1:{port}"),
            stop,
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for HandshakeOnlyServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn answer_handshake(mut stream: TcpStream, info: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if stream.write_all(info.as_bytes()).is_err() {
        return;
    }
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = pending.drain(..end + 2).collect();
            if line.starts_with(b"PING") && stream.write_all(b"PONG\r\n").is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("2.12.0-beta.1"), Some((2, 12, 0)));
        assert_eq!(parse_version("2.12"), Some((2, 12, 0)));
        assert_eq!(parse_version("x"), None);
        assert!(parse_version("2.11.9").map(|(a, b, _)| (a, b)) < Some(MIN_SERVER_VERSION));
    }

    #[test]
    fn ports_come_from_urls() {
        assert_eq!(port_of("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(port_of("http://127.0.0.1:8222/"), Some(8222));
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(9);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 9);
    }
}
