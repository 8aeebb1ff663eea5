//! The event store backends side by side, in one run: durable appends and commands over
//! NATS on the embedded SQLite store, on one JetStream node (`sync_interval: always`) and
//! on a 3-node JetStream cluster with 3 replicas, each next to its own floor measured in
//! the same run:
//!
//! - appends: SQLite's floor is a raw batched insert (rows of the same sizes, WAL,
//!   `synchronous=FULL`, one transaction per `in flight` rows, the largest group commit the
//!   engine could form); JetStream's is a raw publish-with-acknowledgement of the same
//!   payload to a stream of the same settings (storage, replicas, server), no headers.
//! - commands: a submission over NATS to `dealreg_nats::serve` on that backend (views
//!   folded beside it, as `dealreg serve` runs), next to a plain NATS echo request/reply of
//!   the same payload on the same server(s).
//!
//! With `DEALREG_BENCH_SUBJECTS=N` (e.g. 100000) it also appends one event to each of `N`
//! new account streams on one node and reports the server's resident memory (`/varz`
//! `mem`) before, after, and after a restart (the server rebuilds its per-subject index).
//!
//! `cargo bench --bench store_backends`; knobs: DEALREG_BENCH_APPENDS (default 4000),
//! DEALREG_BENCH_STORE_COMMANDS (default 2000), DEALREG_BENCH_IN_FLIGHT (default 64),
//! DEALREG_BENCH_PARTNERS (submitting partners, default 512), DEALREG_BENCH_SUBJECTS
//! (default 0: skipped), DEALREG_BENCH_VIEWS (`off`: no views folded beside the commands,
//! as `serve --no-views`: the command path alone).

/// The allocator and its settings, as in the `dealreg` binary.
#[path = "../src/allocator.rs"]
mod allocator;

#[path = "load.rs"]
#[allow(dead_code)]
mod load;

#[path = "cpu.rs"]
mod cpu;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::{
    Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamAppend, StreamTip,
};
use dealreg_nats::metrics::Metrics;
use dealreg_nats::service::{ServeOptions, Stores};
use dealreg_nats_testkit::{ClusterOptions, NatsCluster, NatsServer};
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore};
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};
use dealreg_vault::KeyVault;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

/// The store calls the engine and the views make, by kind: what a command costs the
/// store, whatever the backend does inside each call.
#[derive(Default)]
struct Calls {
    read_stream: AtomicU64,
    append: AtomicU64,
    append_streams: AtomicU64,
    read_all: AtomicU64,
}

impl Calls {
    fn snapshot(&self) -> [u64; 4] {
        [
            self.read_stream.load(Ordering::Relaxed),
            self.append.load(Ordering::Relaxed),
            self.append_streams.load(Ordering::Relaxed),
            self.read_all.load(Ordering::Relaxed),
        ]
    }
}

/// `S` with its calls counted.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    calls: Arc<Calls>,
}

impl<S: EventStore> EventStore for Counted<S> {
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl std::future::Future<Output = Result<Appended, StoreError>> + Send {
        self.calls.append.fetch_add(1, Ordering::Relaxed);
        self.inner.append(stream, expected, events)
    }

    fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> impl std::future::Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.calls.read_stream.fetch_add(1, Ordering::Relaxed);
        self.inner.read_stream(stream, after, max)
    }

    fn read_stream_to_append(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> impl std::future::Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.calls.read_stream.fetch_add(1, Ordering::Relaxed);
        self.inner.read_stream_to_append(stream, after, max)
    }

    fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> impl std::future::Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.calls.read_all.fetch_add(1, Ordering::Relaxed);
        self.inner.read_all(after, max)
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        self.inner.subscribe_all(after)
    }

    fn last_position(
        &self,
    ) -> impl std::future::Future<Output = Result<Position, StoreError>> + Send {
        self.inner.last_position()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
    ) -> impl std::future::Future<Output = Result<Vec<Appended>, StoreError>> + Send {
        self.calls.append_streams.fetch_add(1, Ordering::Relaxed);
        self.inner.append_streams(appends)
    }
}

/// A nats-server of the run: its PID (for its CPU) and monitoring URL (for its message
/// counts).
struct Server {
    pid: Option<u32>,
    monitor: String,
}

/// `/varz` of a server, by a plain HTTP GET on loopback.
fn varz(monitor: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let address = monitor.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return serde_json::Value::Null;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET /varz HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// What the processes had spent and the servers had carried at one moment.
struct Spent {
    own_cpu: f64,
    server_cpu: Vec<f64>,
    server_msgs: Vec<f64>,
    calls: [u64; 4],
}

impl Spent {
    fn now(servers: &[Server], calls: &Calls) -> Spent {
        Spent {
            own_cpu: cpu::cpu_seconds("self"),
            server_cpu: servers
                .iter()
                .map(|s| s.pid.map_or(0.0, |p| cpu::cpu_seconds(&p.to_string())))
                .collect(),
            server_msgs: servers
                .iter()
                .map(|s| {
                    let v = varz(&s.monitor);
                    v["in_msgs"].as_f64().unwrap_or(0.0) + v["out_msgs"].as_f64().unwrap_or(0.0)
                })
                .collect(),
            calls: calls.snapshot(),
        }
    }
}

/// Per command, over a phase of `commands`: store calls, CPU of each process, messages
/// through each server.
struct PerCommand {
    reads: f64,
    appends: f64,
    multi_appends: f64,
    view_reads: f64,
    own_cpu_ms: f64,
    server_cpu_ms: Vec<f64>,
    server_msgs: Vec<f64>,
}

impl PerCommand {
    fn between(before: &Spent, after: &Spent, commands: usize) -> PerCommand {
        let n = commands.max(1) as f64;
        let call = |i: usize| (after.calls[i] - before.calls[i]) as f64 / n;
        PerCommand {
            reads: call(0),
            appends: call(1),
            multi_appends: call(2),
            view_reads: call(3),
            own_cpu_ms: (after.own_cpu - before.own_cpu) * 1000.0 / n,
            server_cpu_ms: after
                .server_cpu
                .iter()
                .zip(&before.server_cpu)
                .map(|(a, b)| (a - b) * 1000.0 / n)
                .collect(),
            server_msgs: after
                .server_msgs
                .iter()
                .zip(&before.server_msgs)
                .map(|(a, b)| (a - b) / n)
                .collect(),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The payload of every appended event: the size of a submitted registration's event.
fn event_data(n: usize) -> Vec<u8> {
    let domain = format!("customer-{n}.com");
    json!({ "registration_id": Uuid::now_v7(), "partner_id": Uuid::now_v7(),
            "customer": { "company": format!("Customer {n}"), "domain": domain, "contact": { "sealed": "x".repeat(120) } },
            "product_line": "analytics", "motion": "reseller",
            "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" }, "expected_close": "2026-06-30",
            "proof_of_work": "Joint discovery call held", "kind": "new_business", "submitted_at": "2026-03-02T09:00:00Z" })
    .to_string()
    .into_bytes()
}

fn event_metadata() -> Vec<u8> {
    json!({ "command_id": Uuid::now_v7(), "idempotency_key": Uuid::now_v7(), "actor": { "kind": "partner", "user": "rep" }, "recorded_at": "2026-03-02T09:00:00Z" })
        .to_string()
        .into_bytes()
}

/// Runs `count` operations, `in_flight` at a time; returns operations per second.
async fn drive<F, Fut>(count: usize, in_flight: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                op(n).await;
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap_or_else(|e| panic!("worker: {e}"));
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// `count` one-event appends to new streams through the store's contract.
async fn appends<S: EventStore>(store: S, count: usize, in_flight: usize, tag: &str) -> f64 {
    let tag = tag.to_string();
    drive(count, in_flight, move |n| {
        let (store, stream) = (store.clone(), format!("account-{tag}-{n}.example"));
        async move {
            let event = NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "RegistrationSubmitted".into(),
                data: event_data(n),
                metadata: event_metadata(),
            };
            store
                .append(&stream, ExpectedVersion::NoStream, vec![event])
                .await
                .unwrap_or_else(|e| panic!("append: {e}"));
        }
    })
    .await
}

/// The SQLite floor: the same number of rows of the same sizes, raw prepared inserts, in
/// transactions of `batch` rows, WAL and `synchronous=FULL` as the store runs.
fn sqlite_floor(path: &std::path::Path, count: usize, batch: usize) -> f64 {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("floor: {e}"));
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("floor: {e}"));
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .unwrap_or_else(|e| panic!("floor: {e}"));
    conn.execute_batch(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, revision INTEGER NOT NULL,
           event_id TEXT NOT NULL, event_type TEXT NOT NULL, data BLOB NOT NULL, metadata BLOB NOT NULL,
           prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (stream, revision));",
    )
    .unwrap_or_else(|e| panic!("floor: {e}"));
    let rows: Vec<(String, Vec<u8>, Vec<u8>)> = (0..count)
        .map(|n| {
            (
                format!("account-floor-{n}.example"),
                event_data(n),
                event_metadata(),
            )
        })
        .collect();
    let hash = "0".repeat(64);
    let started = Instant::now();
    for chunk in rows.chunks(batch.max(1)) {
        let tx = conn
            .unchecked_transaction()
            .unwrap_or_else(|e| panic!("floor: {e}"));
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream, revision, event_id, event_type, data, metadata, prev_hash, hash)
                     VALUES (?1, 0, ?2, 'RegistrationSubmitted', ?3, ?4, ?5, ?5)",
                )
                .unwrap_or_else(|e| panic!("floor: {e}"));
            for (stream, data, metadata) in chunk {
                insert
                    .execute(rusqlite::params![
                        stream,
                        Uuid::now_v7().to_string(),
                        data,
                        metadata,
                        hash
                    ])
                    .unwrap_or_else(|e| panic!("floor: {e}"));
            }
        }
        tx.commit().unwrap_or_else(|e| panic!("floor: {e}"));
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Connects to every server of a comma-separated list (async-nats parses one URL a string).
async fn connect(urls: &str) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.parse().unwrap_or_else(|e| panic!("NATS URL {u}: {e}")))
        .collect();
    async_nats::ConnectOptions::new()
        .connect(addrs)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The JetStream floor: raw publish-with-acknowledgement of the same payloads to a stream
/// of the same storage and replicas, one new subject each.
async fn jetstream_floor(urls: &[String], replicas: usize, count: usize, in_flight: usize) -> f64 {
    let client = connect(&urls.join(",")).await;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_FLOOR".into(),
        subjects: vec!["bench.floor.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("floor stream: {e}"));
    let payload = bytes::Bytes::from(event_data(0));
    drive(count, in_flight, move |n| {
        let (js, payload) = (js.clone(), payload.clone());
        async move {
            js.publish(format!("bench.floor.account-{n}"), payload)
                .await
                .unwrap_or_else(|e| panic!("publish: {e}"))
                .await
                .unwrap_or_else(|e| panic!("ack: {e}"));
        }
    })
    .await
}

/// A plain request/reply echo of `payload` on `url`: the floor of any command over NATS.
async fn echo_floor(url: &str, count: usize, in_flight: usize) -> f64 {
    let client = connect(url).await;
    let responder = connect(url).await;
    let mut echo = responder
        .subscribe("bench.echo")
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let answering = tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    let payload = bytes::Bytes::from(submission(Uuid::now_v7(), 0, "echo").to_string());
    // Interest reaches the other nodes of a cluster a moment after the subscription: wait
    // for the first answer before timing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.request("bench.echo", payload.clone()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the echo responder never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = drive(count, in_flight, move |_| {
        let (client, payload) = (client.clone(), payload.clone());
        async move {
            client
                .request("bench.echo", payload)
                .await
                .unwrap_or_else(|e| panic!("echo: {e}"));
        }
    })
    .await;
    answering.abort();
    rate
}

/// The NATS body of submission `n` by `partner`.
fn submission(partner: Uuid, n: usize, tag: &str) -> serde_json::Value {
    let domain = format!("{tag}-customer-{n}.com");
    json!({ "command": {
        "type": "submit_registration", "registration_id": Uuid::now_v7(), "partner_id": partner,
        "customer": { "company": format!("Customer {n}"), "domain": domain, "contact": { "name": "Dana", "email": format!("dana@{domain}") } },
        "product_line": "analytics", "motion": "reseller",
        "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" }, "expected_close": "2026-06-30",
        "proof_of_work": "Joint discovery call held", "kind": "new_business" } })
}

/// Submissions over NATS to `dealreg_nats::serve` running on `store` with its views in
/// `views` (folded beside the commands, feeds published, as `dealreg serve` runs).
async fn commands_over_nats<S: EventStore + Clone>(
    (url, servers): (&str, &[Server]),
    store: S,
    vault: Arc<dyn KeyVault>,
    views: SqliteCheckpoints,
    count: usize,
    in_flight: usize,
    tag: &str,
) -> (f64, PerCommand) {
    let calls = Arc::new(Calls::default());
    let store = Counted {
        inner: store,
        calls: Arc::clone(&calls),
    };
    let partner_count = env_usize("DEALREG_BENCH_PARTNERS", 512).max(1);
    let engine = Arc::new(
        Engine::open(
            store.clone(),
            ControlledClock::starting_at(load::start()),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("engine: {e}"))
        .with_vault(vault),
    );
    let partners = Arc::new(load::onboard_partners(&engine, partner_count).await);
    let holder = dealreg_nats::service::holder_name();
    let fenced = views.fenced(dealreg_nats::service::VIEWS_LEASE, &holder);
    let service_client = connect(url).await;
    let client = connect(url).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(dealreg_nats::serve(
        service_client,
        engine,
        Stores {
            log: store,
            views: views.clone(),
            fenced,
            leases: views,
            shared: None::<dealreg_views::Unshared>,
        },
        ServeOptions {
            holder,
            tick: Duration::from_secs(3600),
            // DEALREG_BENCH_VIEWS=off: the command path alone (`serve --no-views`), to see
            // what the views and their feed cost each backend.
            views: std::env::var("DEALREG_BENCH_VIEWS").as_deref() != Ok("off"),
            ..ServeOptions::default()
        },
        Arc::new(Metrics::default()),
        async {
            let _ = stopped.await;
        },
    ));
    // Ready when the service answers a query.
    let started = Instant::now();
    while client
        .request("$SRV.PING.dealreg", bytes::Bytes::new())
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tag = tag.to_string();
    let before = Spent::now(servers, &calls);
    let rate = drive(count, in_flight, move |n| {
        let (client, partners, tag) = (client.clone(), Arc::clone(&partners), tag.clone());
        async move {
            let partner = partners[n % partners.len()];
            let body = submission(partner, n, &tag).to_string();
            let reply = client
                .request(
                    format!("dealreg.partner.{partner}.cmd.submit_registration"),
                    body.into(),
                )
                .await
                .unwrap_or_else(|e| panic!("request: {e}"));
            assert!(
                reply.payload.starts_with(b"{\"ok\":true"),
                "a command over NATS failed: {}",
                String::from_utf8_lossy(&reply.payload)
            );
        }
    })
    .await;
    let after = Spent::now(servers, &calls);
    let _ = stop.send(());
    match service.await {
        Ok(Ok(())) => {}
        other => panic!("the service did not drain: {other:?}"),
    }
    (rate, PerCommand::between(&before, &after, count))
}

async fn jetstream(urls: &[String], replicas: usize, monitor: &str) -> JetStreamStore {
    let store = JetStreamStore::connect(
        urls,
        JetStreamOptions {
            replicas,
            monitoring_url: Some(monitor.to_string()),
            ..JetStreamOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("JetStream store: {e}"));
    assert!(
        store.durability().acknowledged_means_durable(),
        "the bench measures durable appends: {}",
        store.durability()
    );
    store
}

async fn jetstream_vault(url: &str, replicas: usize) -> Arc<dyn KeyVault> {
    let client = connect(url).await;
    Arc::new(
        dealreg_vault_jetstream::JetStreamVault::open(
            client,
            dealreg_vault_jetstream::VaultOptions {
                replicas,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("vault: {e}")),
    )
}

fn mem_mib(varz: &serde_json::Value) -> f64 {
    varz["mem"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
}

struct Row {
    backend: &'static str,
    appends: f64,
    append_floor: f64,
    commands: f64,
    echo: f64,
    per_command: PerCommand,
}

fn main() {
    allocator::tune();
    let count = env_usize("DEALREG_BENCH_APPENDS", 4000).max(1);
    let commands = env_usize("DEALREG_BENCH_STORE_COMMANDS", 2000).max(1);
    let in_flight = env_usize("DEALREG_BENCH_IN_FLIGHT", 64).max(1);
    let subjects = env_usize("DEALREG_BENCH_SUBJECTS", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let mut rows = Vec::new();

    // The embedded store, and one node that syncs every write (NATS for SQLite's commands).
    let mut node = NatsServer::start_with(Some("jetstream { sync_interval: always }"));
    runtime.block_on(async {
        let db = dir.path().join("bench.db");
        let store = SqliteStore::open(&db).unwrap_or_else(|e| panic!("store: {e}"));
        let appended = appends(store, count, in_flight, "sqlite").await;
        let floor = sqlite_floor(&dir.path().join("floor.db"), count, in_flight);
        let served = dir.path().join("served.db");
        let store = SqliteStore::open(&served).unwrap_or_else(|e| panic!("store: {e}"));
        let views = SqliteCheckpoints::open(&served).unwrap_or_else(|e| panic!("views: {e}"));
        let vault: Arc<dyn KeyVault> = Arc::new(
            dealreg_store_sqlite::SqliteVault::open(&served, dealreg_vault::KeyMaterial::Random)
                .unwrap_or_else(|e| panic!("vault: {e}")),
        );
        let one_node = [Server {
            pid: node.pid(),
            monitor: node.monitor_url().to_string(),
        }];
        let (over_nats, per_command) = commands_over_nats(
            (node.url(), &one_node),
            store,
            vault,
            views,
            commands,
            in_flight,
            "sq",
        )
        .await;
        let echo = echo_floor(node.url(), commands, in_flight).await;
        rows.push(Row {
            backend: "SQLite (WAL, synchronous=FULL)",
            appends: appended,
            append_floor: floor,
            commands: over_nats,
            echo,
            per_command,
        });

        let urls = vec![node.url().to_string()];
        let store = jetstream(&urls, 1, node.monitor_url()).await;
        let appended = appends(store.clone(), count, in_flight, "js1").await;
        let floor = jetstream_floor(&urls, 1, count, in_flight).await;
        let views = SqliteCheckpoints::open_file(dir.path().join("js1-views.db"), store.identity())
            .unwrap_or_else(|e| panic!("views: {e}"));
        let vault = jetstream_vault(node.url(), 1).await;
        let (over_nats, per_command) = commands_over_nats(
            (node.url(), &one_node),
            store,
            vault,
            views,
            commands,
            in_flight,
            "j1",
        )
        .await;
        let echo = echo_floor(node.url(), commands, in_flight).await;
        rows.push(Row {
            backend: "JetStream, 1 node, sync always",
            appends: appended,
            append_floor: floor,
            commands: over_nats,
            echo,
            per_command,
        });
    });

    let cluster = NatsCluster::start_with(3, &ClusterOptions::default());
    runtime.block_on(async {
        let urls = cluster.url_list();
        let store = jetstream(&urls, 3, &cluster.monitor_url(0)).await;
        let appended = appends(store.clone(), count, in_flight, "js3").await;
        let floor = jetstream_floor(&urls, 3, count, in_flight).await;
        let views = SqliteCheckpoints::open_file(dir.path().join("js3-views.db"), store.identity())
            .unwrap_or_else(|e| panic!("views: {e}"));
        let vault = jetstream_vault(&cluster.urls(), 3).await;
        let nodes: Vec<Server> = (0..3)
            .map(|i| Server {
                pid: cluster.pid(i),
                monitor: cluster.monitor_url(i).to_string(),
            })
            .collect();
        let (over_nats, per_command) = commands_over_nats(
            (&cluster.urls(), &nodes),
            store,
            vault,
            views,
            commands,
            in_flight,
            "j3",
        )
        .await;
        let echo = echo_floor(&cluster.urls(), commands, in_flight).await;
        rows.push(Row {
            backend: "JetStream, 3 nodes, R3",
            appends: appended,
            append_floor: floor,
            commands: over_nats,
            echo,
            per_command,
        });
    });
    drop(cluster);

    println!("store_backends: {count} one-event appends and {commands} submissions over NATS per backend, {in_flight} in flight (floors in the same run)");
    println!(
        "{:<32} | {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7}",
        "backend", "appends/s", "floor/s", "ratio", "cmds/s", "echo/s", "ratio"
    );
    for r in &rows {
        println!(
            "{:<32} | {:>10.0} {:>10.0} {:>7.3} | {:>10.0} {:>10.0} {:>7.3}",
            r.backend,
            r.appends,
            r.append_floor,
            r.appends / r.append_floor,
            r.commands,
            r.echo,
            r.commands / r.echo
        );
    }
    if let Some(sqlite) = rows.first() {
        for r in rows.iter().skip(1) {
            println!(
                "  {} ÷ SQLite: appends {:.3}, commands over NATS {:.3}",
                r.backend,
                r.appends / sqlite.appends,
                r.commands / sqlite.commands
            );
        }
    }

    println!("per submission (the commands phase): store calls of the engine (reads of a stream, appends, multi-stream appends) and of the views (log pages read); CPU ms of this process (engine, views, clients) and of each nats-server; messages in + out through each server (/varz)");
    println!(
        "{:<32} | {:>6} {:>7} {:>6} {:>6} | {:>8} {:>20} | {:>20}",
        "backend", "reads", "appends", "multi", "views", "self ms", "servers ms", "server msgs"
    );
    for r in &rows {
        let p = &r.per_command;
        let list = |v: &[f64], digits: usize| {
            v.iter()
                .map(|x| format!("{x:.digits$}"))
                .collect::<Vec<_>>()
                .join("/")
        };
        println!(
            "{:<32} | {:>6.2} {:>7.2} {:>6.2} {:>6.2} | {:>8.3} {:>20} | {:>20}",
            r.backend,
            p.reads,
            p.appends,
            p.multi_appends,
            p.view_reads,
            p.own_cpu_ms,
            list(&p.server_cpu_ms, 3),
            list(&p.server_msgs, 1)
        );
    }

    if subjects > 0 {
        let before = mem_mib(&node.varz());
        let rate = runtime.block_on(async {
            let urls = vec![node.url().to_string()];
            let store = jetstream(&urls, 1, node.monitor_url()).await;
            appends(store, subjects, 256, "subjects").await
        });
        let after = mem_mib(&node.varz());
        node.restart();
        // Let the server recover its streams before reading its memory.
        std::thread::sleep(Duration::from_secs(5));
        let restarted = mem_mib(&node.varz());
        println!("server memory with {subjects} more account subjects on one node ({rate:.0} appends/s to write them): {before:.1} MiB before, {after:.1} MiB after, {restarted:.1} MiB after a restart");
        println!(
            "  ≈ {:.0} bytes per subject (after − before)",
            (after - before) * 1024.0 * 1024.0 / subjects as f64
        );
    }
}
