//! Capacity stays exact without atomic appends to several streams: a submission takes its
//! slot on the partner's stream (at its exact tip) before the account records it, and a
//! slot nothing backs (its command was interrupted) is given back by the timekeeper.
//!
//! Each case runs on every backend: memory, SQLite, JetStream (a real nats-server) and
//! KurrentDB (the official client against the in-test gRPC double; docs/STORES.md).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dealreg_clock::ControlledClock;
use dealreg_engine::runner::{self, CatchUp};
use dealreg_engine::{timekeeper, Engine};
use dealreg_events::memory::MemoryStore;
use dealreg_events::{
    Appended, EventStore, ExpectedVersion, LogPages, LogStream, NewEvent, Position, RecordedEvent,
    StoreError, StreamTip,
};
use dealreg_projections::deadlines::Deadlines;
use dealreg_store_sqlite::SqliteStore;
use dealreg_views::MemoryCheckpoints;
use serde_json::json;
use support::*;
use uuid::Uuid;

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

/// Forty submissions by one partner to forty accounts at once, through four engines on one
/// store (four processes, each with its own cache): exactly `capacity` are accepted, the
/// others refused with `capacity_reached`, and the partner's stream holds one slot for
/// each accepted registration and no other.
async fn capacity_is_exact_under_concurrent_submissions<S: EventStore + Clone>(store: S) {
    const CAPACITY: u32 = 7;
    let clock = ControlledClock::starting_at(start());
    let mut engines = Vec::new();
    for _ in 0..4 {
        engines.push(Arc::new(
            Engine::open(store.clone(), clock.clone(), None)
                .await
                .expect("engine"),
        ));
    }
    let partner = partner_with_capacity(&engines[0], CAPACITY).await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let engine = Arc::clone(&engines[n % engines.len()]);
        tasks.push(tokio::spawn(async move {
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
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("join") {
            (true, _) => accepted += 1,
            (false, Some(code)) => assert_eq!(code, "capacity_reached"),
            (false, None) => panic!("a refusal without a code"),
        }
    }
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
    capacity_is_exact_under_concurrent_submissions(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("capacity.db")).expect("open");
    capacity_is_exact_under_concurrent_submissions(store).await;
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
    capacity_is_exact_under_concurrent_submissions(jetstream(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_jetstream() {
    let server = dealreg_nats_testkit::NatsServer::start();
    an_interrupted_submission_never_leaks_a_slot(jetstream(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_on_kurrentdb() {
    let double = dealreg_kurrentdb_double::KurrentDouble::start().await;
    capacity_is_exact_under_concurrent_submissions(kurrentdb(&double).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_submission_never_leaks_a_slot_on_kurrentdb() {
    let double = dealreg_kurrentdb_double::KurrentDouble::start().await;
    an_interrupted_submission_never_leaks_a_slot(kurrentdb(&double).await).await;
}
