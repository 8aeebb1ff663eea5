//! Capacity stays exact on every backend: a submission's slot is decided on the partner's
//! stream at its exact tip, in one atomic append with the account's events where the
//! backend has one (memory, SQLite, JetStream), else taken before the account records it
//! (KurrentDB), where a slot nothing backs (its command was interrupted) is given back by
//! the timekeeper.
//!
//! Each case runs on every backend: memory, SQLite, JetStream (a real nats-server) and
//! KurrentDB (the official client against the in-test gRPC double; docs/STORES.md); the
//! concurrent case also on a three-node JetStream cluster and through two `dealreg serve`
//! processes. Each run shows that its submissions really raced: races were lost after the
//! partner's stream had just been read afresh, which a run one command after another
//! cannot do.

mod nats_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::memory::MemoryStore;
use dealreg_events::{
    Appended, EventStore, ExpectedVersion, LogPages, LogStream, NewEvent, Position, RecordedEvent,
    StoreError, StreamTip,
};
use dealreg_host::runner::{self, CatchUp};
use dealreg_host::timekeeper;
use dealreg_projections::deadlines::Deadlines;
use dealreg_store_sqlite::SqliteStore;
use dealreg_views::MemoryCheckpoints;
use serde_json::json;
use support::*;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

/// The message the engine logs (at debug) each time it counts a decision taken again.
const LOST_RACE: &str = "lost a concurrency race; deciding again";

/// The races the engine's retry loop lost, read from its debug events: the `attempt` of
/// each. A race lost at attempt 2 or later was lost right after the stream was read
/// afresh, so another writer appended between that read and the append: only writers
/// running at the same time do that. (At attempt 1 an engine may decide on a cache another
/// engine made stale, which commands run one after another also do.)
#[derive(Clone, Default)]
struct LostRaces(Arc<Mutex<Vec<u64>>>);

impl LostRaces {
    /// A dispatcher that records into this; futures run with it (`with_subscriber`), so
    /// tests running beside this one in the same binary are not counted.
    fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(tracing_subscriber::registry().with(self.clone()))
    }

    fn attempts(&self) -> Vec<u64> {
        self.0.lock().expect("lock").clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LostRaces {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            attempt: Option<u64>,
        }
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "attempt" {
                    self.attempt = Some(value);
                }
            }
            fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
                if field.name() == "attempt" {
                    self.attempt = u64::try_from(value).ok();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == LOST_RACE {
            self.0
                .lock()
                .expect("lock")
                .push(fields.attempt.unwrap_or(0));
        }
    }
}

/// Asserts that a run's submissions raced: decisions were taken again (the engines'
/// `decided_again`, `decided_again` of them), and some race was lost at attempt 2 or later
/// (`attempts` of every lost race), which one command after another cannot do.
fn assert_raced(decided_again: u64, attempts: &[u64], backend: &str) {
    let after_fresh_read = attempts.iter().filter(|a| **a >= 2).count();
    eprintln!(
        "{backend}: {decided_again} decisions taken again, {after_fresh_read} of them after a fresh read"
    );
    assert!(
        decided_again > 0,
        "{backend}: no decision was taken again, so no submission lost a race"
    );
    assert!(
        after_fresh_read > 0,
        "{backend}: every race lost was lost on a cached state ({attempts:?}): the submissions \
         could have run one after another"
    );
}

/// Every event of the log with its type and stream.
async fn log_of<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut pages = LogPages::new(store, Position::ORIGIN).await.expect("head");
    while let Some(page) = pages.next_page().await.expect("read") {
        all.extend(page);
    }
    all
}

fn count(log: &[RecordedEvent], event_type: &str) -> usize {
    log.iter().filter(|e| e.event_type == event_type).count()
}

/// A partner with `capacity` open registrations, onboarded and certified.
async fn partner_with_capacity<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
    capacity: u32,
) -> Uuid {
    let partner = Uuid::now_v7();
    for command in [
        onboard(partner, "Capped", &["reseller"], "gold", capacity),
        certify(partner, "analytics", "2027-12-31"),
    ] {
        let reply = must(
            engine
                .execute(envelope(None, channel_manager(), command))
                .await,
        );
        assert!(reply.ok, "{reply:?}");
    }
    partner
}

/// The capacity every concurrent case gives its partner, and how many submit at once.
const CAPACITY: u32 = 7;
const SUBMISSIONS: usize = 40;

/// Forty submissions by one partner to forty accounts at once, through four engines on one
/// store (four processes, each with its own cache): exactly `capacity` are accepted, the
/// others refused with `capacity_reached`, and the partner's stream holds one slot for
/// each accepted registration and no other. They raced: all forty start together (a
/// barrier), and decisions were taken again after fresh reads.
async fn capacity_is_exact_under_concurrent_submissions<S: EventStore + Clone>(
    store: S,
    backend: &str,
) {
    capacity_is_exact_on_four_engines(vec![store; 4], backend).await;
}

/// The concurrent case on `stores`, one engine on each (clones of one store, or each its
/// own connection).
async fn capacity_is_exact_on_four_engines<S: EventStore + Clone>(stores: Vec<S>, backend: &str) {
    let store = stores[0].clone();
    let clock = ControlledClock::starting_at(start());
    let mut engines = Vec::new();
    for store in stores {
        engines.push(Arc::new(
            Engine::open(store, clock.clone(), None)
                .await
                .expect("engine"),
        ));
    }
    let partner = partner_with_capacity(&engines[0], CAPACITY).await;
    let before: u64 = engines.iter().map(|e| e.stats().decided_again).sum();
    let lost = LostRaces::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(SUBMISSIONS));
    let mut tasks = Vec::new();
    for n in 0..SUBMISSIONS {
        let engine = Arc::clone(&engines[n % engines.len()]);
        let barrier = Arc::clone(&barrier);
        let submission = async move {
            barrier.wait().await;
            let reply = must(
                engine
                    .execute(envelope(
                        Some(&format!("s-{n}")),
                        partner_actor(partner),
                        submit(
                            Uuid::now_v7(),
                            partner,
                            &format!("customer-{n}.example"),
                            "analytics",
                            "reseller",
                        ),
                    ))
                    .await,
            );
            (reply.ok, reply.error.map(|e| e.code.as_str().to_string()))
        };
        tasks.push(tokio::spawn(submission.with_subscriber(lost.dispatch())));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("join") {
            (true, _) => accepted += 1,
            (false, Some(code)) => assert_eq!(code, "capacity_reached"),
            (false, None) => panic!("a refusal without a code"),
        }
    }
    let decided_again = engines.iter().map(|e| e.stats().decided_again).sum::<u64>() - before;
    let attempts = lost.attempts();
    assert_eq!(
        decided_again,
        attempts.len() as u64,
        "every decision taken again was seen in the engines' events"
    );
    assert_raced(decided_again, &attempts, backend);
    assert_eq!(
        accepted, CAPACITY as usize,
        "exactly the capacity is accepted"
    );
    let log = log_of(&store).await;
    assert_eq!(count(&log, "registration_submitted"), CAPACITY as usize);
    let taken = count(&log, "capacity_slot_taken");
    let released = count(&log, "capacity_slot_released");
    assert_eq!(
        taken - released,
        CAPACITY as usize,
        "one slot held for each accepted registration: {taken} taken, {released} released"
    );
    let holding = must(
        engines[1]
            .execute(envelope(
                None,
                partner_actor(partner),
                submit(
                    Uuid::now_v7(),
                    partner,
                    "one-more.example",
                    "analytics",
                    "reseller",
                ),
            ))
            .await,
    );
    assert_eq!(
        holding
            .error
            .map(|e| e.code.as_str().to_string())
            .as_deref(),
        Some("capacity_reached"),
        "any engine sees the partner full"
    );
}

/// A store whose next append to an account stream fails as if the connection dropped
/// after it was sent and before the answer came (the append did not land).
#[derive(Clone)]
struct Interrupting<S> {
    inner: S,
    armed: Arc<AtomicBool>,
}

impl<S: EventStore> EventStore for Interrupting<S> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        if stream.starts_with("account-") && self.armed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::OutcomeUnknown {
                reason: "the connection dropped (simulated)".into(),
            });
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, after, max).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        self.inner.subscribe_all(after)
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        self.inner.last_position().await
    }
}

/// A store that lets other tasks run before each append and after each read, as a store
/// over a network does. The memory store answers without ever yielding, so on it commands
/// never interleave between reading a stream and appending to it: forty "concurrent"
/// submissions there run as if one after another.
#[derive(Clone)]
struct Yielding<S>(S);

impl<S: EventStore> EventStore for Yielding<S> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        tokio::task::yield_now().await;
        self.0.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = self.0.read_stream(stream, after, max).await;
        tokio::task::yield_now().await;
        read
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_all(after, max).await
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        self.0.subscribe_all(after)
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        self.0.last_position().await
    }
}

/// The deadlines as the timekeeper reads them, folded from the log.
async fn deadlines<S: EventStore>(store: &S) -> Deadlines {
    runner::catch_up::<Deadlines, _, _>(
        store,
        &MemoryCheckpoints::new(),
        CatchUp::default(),
        |_| {},
    )
    .await
    .expect("deadlines")
    .state
}

/// A submission interrupted between its slot and the account's write: a retry with its key
/// uses the slot it already holds; left alone, the slot is given back two minutes later
/// (the account first records that it never uses it); a retry after that takes a new one.
async fn an_interrupted_submission_never_leaks_a_slot<S: EventStore + Clone>(store: S) {
    let clock = ControlledClock::starting_at(start());
    let armed = Arc::new(AtomicBool::new(false));
    let interrupting = Interrupting {
        inner: store.clone(),
        armed: Arc::clone(&armed),
    };
    let engine = Engine::open(interrupting, clock.clone(), None)
        .await
        .expect("engine");
    let partner = partner_with_capacity(&engine, 1).await;
    let registration = Uuid::now_v7();
    let command = || {
        envelope(
            Some("submit-once"),
            partner_actor(partner),
            submit(
                registration,
                partner,
                "interrupted.example",
                "analytics",
                "reseller",
            ),
        )
    };

    // Retried within the grace period: the slot taken the first time is used.
    armed.store(true, Ordering::SeqCst);
    let failed = engine.execute(command()).await;
    assert!(
        matches!(failed, Err(ref e) if e.code() == "store_failed"),
        "{failed:?}"
    );
    let log = log_of(&store).await;
    assert_eq!(count(&log, "capacity_slot_taken"), 1, "the slot was taken");
    assert_eq!(count(&log, "registration_submitted"), 0);
    let retried = must(engine.execute(command()).await);
    assert!(retried.ok, "{retried:?}");
    let log = log_of(&store).await;
    assert_eq!(
        count(&log, "capacity_slot_taken"),
        1,
        "the retry used the slot its first attempt took"
    );
    assert!(
        deadlines(&store)
            .await
            .open()
            .iter()
            .all(|d| d.slot.is_none()),
        "a backed slot is no deadline"
    );

    // Left alone: the slot is given back after two minutes, and only then.
    let withdraw = must(
        engine
            .execute(envelope(
                None,
                partner_actor(partner),
                json!({ "type": "withdraw_registration", "account": "interrupted.example", "registration_id": registration, "reason": "lost the deal" }),
            ))
            .await,
    );
    assert!(withdraw.ok, "{withdraw:?}");
    let second = Uuid::now_v7();
    let command = || {
        envelope(
            Some("submit-twice"),
            partner_actor(partner),
            submit(
                second,
                partner,
                "left-alone.example",
                "analytics",
                "reseller",
            ),
        )
    };
    armed.store(true, Ordering::SeqCst);
    assert!(engine.execute(command()).await.is_err());
    clock.advance(chrono::Duration::seconds(60));
    let early = timekeeper::tick(&engine, &deadlines(&store).await)
        .await
        .expect("tick");
    assert!(
        early.issued.is_empty(),
        "nothing is due within the grace period: {:?}",
        early.issued
    );
    let full = must(
        engine
            .execute(envelope(
                None,
                partner_actor(partner),
                submit(
                    Uuid::now_v7(),
                    partner,
                    "meanwhile.example",
                    "analytics",
                    "reseller",
                ),
            ))
            .await,
    );
    assert_eq!(
        full.error.map(|e| e.code.as_str().to_string()).as_deref(),
        Some("capacity_reached"),
        "the held slot still counts"
    );
    clock.advance(chrono::Duration::seconds(90));
    let due = timekeeper::tick(&engine, &deadlines(&store).await)
        .await
        .expect("tick");
    assert_eq!(due.issued.len(), 1, "{:?}", due.issued);
    let (_, lapsed) = &due.issued[0];
    assert!(lapsed.reply.ok, "{:?}", lapsed.reply);
    let log = log_of(&store).await;
    assert_eq!(count(&log, "capacity_slot_lapsed"), 1);
    let lapsed_on = log
        .iter()
        .find(|e| e.event_type == "capacity_slot_lapsed")
        .map(|e| e.stream.clone());
    assert_eq!(lapsed_on.as_deref(), Some("account-left-alone.example"));
    let again = timekeeper::tick(&engine, &deadlines(&store).await)
        .await
        .expect("tick");
    assert!(
        again.issued.is_empty(),
        "given back once: {:?}",
        again.issued
    );

    // The interrupted command retried now takes a new slot (its old one is given up).
    let late = must(engine.execute(command()).await);
    assert!(late.ok, "{late:?}");
    let log = log_of(&store).await;
    assert_eq!(count(&log, "registration_submitted"), 2);
    let (taken, released) = (
        count(&log, "capacity_slot_taken"),
        count(&log, "capacity_slot_released"),
    );
    assert_eq!(
        taken - released,
        1,
        "one slot held, by the one open registration: {taken} taken, {released} released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_memory() {
    capacity_is_exact_under_concurrent_submissions(Yielding(MemoryStore::new()), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("capacity.db")).expect("open");
    capacity_is_exact_under_concurrent_submissions(store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_memory() {
    an_interrupted_submission_never_leaks_a_slot(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("interrupted.db")).expect("open");
    an_interrupted_submission_never_leaks_a_slot(store).await;
}

async fn jetstream(
    server: &dealreg_nats_testkit::NatsServer,
) -> dealreg_store_jetstream::JetStreamStore {
    dealreg_store_jetstream::JetStreamStore::connect(
        &[server.url().to_string()],
        dealreg_store_jetstream::JetStreamOptions::default(),
    )
    .await
    .expect("open the JetStream store")
}

async fn kurrentdb(
    double: &dealreg_kurrentdb_double::KurrentDouble,
) -> dealreg_store_kurrentdb::KurrentStore {
    dealreg_store_kurrentdb::KurrentStore::connect(&double.url())
        .await
        .expect("open the KurrentDB store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_jetstream() {
    let server = dealreg_nats_testkit::NatsServer::start();
    capacity_is_exact_under_concurrent_submissions(jetstream(&server).await, "jetstream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_jetstream() {
    let server = dealreg_nats_testkit::NatsServer::start();
    an_interrupted_submission_never_leaks_a_slot(jetstream(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_kurrentdb() {
    let double = dealreg_kurrentdb_double::KurrentDouble::start().await;
    capacity_is_exact_under_concurrent_submissions(kurrentdb(&double).await, "kurrentdb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_kurrentdb() {
    let double = dealreg_kurrentdb_double::KurrentDouble::start().await;
    an_interrupted_submission_never_leaks_a_slot(kurrentdb(&double).await).await;
}

/// The concurrent case on a three-node JetStream cluster with three replicas: four engines,
/// each on its own connection, the connections spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_a_three_node_cluster() {
    let cluster = dealreg_nats_testkit::NatsCluster::start(3);
    let options = dealreg_store_jetstream::JetStreamOptions {
        replicas: 3,
        timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let mut stores = Vec::new();
    for n in 0..4 {
        stores.push(
            dealreg_store_jetstream::JetStreamStore::connect(
                &[cluster.url(n % cluster.size())],
                options.clone(),
            )
            .await
            .expect("open the JetStream store on a node of the cluster"),
        );
    }
    capacity_is_exact_on_four_engines(stores, "three-node cluster").await;
}

/// `(attempt)` of each race lost, from the JSON debug log of a `dealreg serve` process.
fn lost_races_in(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == json!(LOST_RACE))
        .map(|line| line["fields"]["attempt"].as_u64().unwrap_or(0))
        .collect()
}

/// The concurrent case through two `dealreg serve` processes on one JetStream log, each
/// with its own views file: forty submissions by one partner, sent at once over NATS (the
/// service's queue group spreads them over both processes). How often the engines decided
/// again is read from their debug log (the event the engine logs as it counts
/// `decided_again`; serve does not publish the counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_through_two_serve_processes() {
    use nats_support::{days_from_now, request, NatsServer, Serve};
    const CM: &str = "dealreg.vendor.channel_manager.cmd";
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let spec = |n: usize| {
        format!(
            "jetstream:{}?views={}",
            server.url,
            dir.path().join(format!("host-{n}.db")).display()
        )
    };
    let mut hosts = Vec::new();
    for n in 0..2 {
        hosts.push(
            Serve::start_logging(
                spec(n),
                &server.url,
                "info,dealreg_engine=debug",
                dir.path().join(format!("host-{n}.log")),
                &client,
            )
            .await,
        );
    }
    let partner = Uuid::now_v7();
    for command in [
        onboard(partner, "Capped", &["reseller"], "gold", CAPACITY),
        certify(partner, "analytics", &days_from_now(700)),
    ] {
        let subject = format!("{CM}.{}", command["type"].as_str().unwrap_or_default());
        let (reply, _) = request(&client, &subject, &json!({ "command": command }), None).await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    let submit_over_nats = |n: usize| {
        let client = client.clone();
        async move {
            let mut command = submit(
                Uuid::now_v7(),
                partner,
                &format!("customer-{n}.example"),
                "analytics",
                "reseller",
            );
            command["expected_close"] = json!(days_from_now(60));
            let (reply, _) = request(
                &client,
                &format!("dealreg.partner.{partner}.cmd.submit_registration"),
                &json!({ "command": command }),
                Some(&format!("s-{n}")),
            )
            .await;
            reply
        }
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(SUBMISSIONS));
    let mut tasks = Vec::new();
    for n in 0..SUBMISSIONS {
        let (barrier, submission) = (Arc::clone(&barrier), submit_over_nats(n));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            submission.await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        let reply = task.await.expect("join");
        if reply["ok"] == json!(true) {
            accepted += 1;
        } else {
            assert_eq!(reply["error"]["code"], json!("capacity_reached"), "{reply}");
        }
    }
    assert_eq!(
        accepted, CAPACITY as usize,
        "exactly the capacity is accepted"
    );
    let full = submit_over_nats(SUBMISSIONS).await;
    assert_eq!(
        full["error"]["code"],
        json!("capacity_reached"),
        "either process sees the partner full: {full}"
    );
    let mut attempts = Vec::new();
    for host in &mut hosts {
        let status = host.terminate();
        assert!(status.success(), "{}", host.log_text());
        attempts.extend(lost_races_in(&host.log_text()));
    }
    assert_raced(attempts.len() as u64, &attempts, "two serve processes");

    let events = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(spec(0))
        .arg("events")
        .output()
        .expect("dealreg events");
    assert!(
        events.status.success(),
        "dealreg events: {}",
        String::from_utf8_lossy(&events.stderr)
    );
    let types: Vec<String> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("event line");
            event["event_type"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let count = |t: &str| types.iter().filter(|e| *e == t).count();
    assert_eq!(count("registration_submitted"), CAPACITY as usize);
    let (taken, released) = (
        count("capacity_slot_taken"),
        count("capacity_slot_released"),
    );
    assert_eq!(
        taken - released,
        CAPACITY as usize,
        "one slot held for each accepted registration: {taken} taken, {released} released"
    );
}
