//! The event store of dealreg: one trait, several backends, one conformance suite.
//!
//! Why one trait: the engine must run unchanged on the embedded SQLite file, on NATS
//! JetStream and on KurrentDB. The trait is therefore shaped by what all three can promise:
//!
//! * **Streams** are named by strings such as `account-acme.com` or `partner-<uuid>`; a
//!   stream's events are numbered by a 0-based [`StreamRevision`] (KurrentDB's stream
//!   revision, JetStream's per-subject sequence mapped to 0-based, SQLite's column).
//! * **Global positions** ([`GlobalPosition`]) order every event in the store: the SQLite
//!   row id, the JetStream stream sequence, KurrentDB's commit position. They increase
//!   strictly in append order but need not be dense, so readers only ever compare them.
//! * **Appends** write to one or more streams atomically, each with an
//!   [`ExpectedVersion`] (SQLite: one transaction; JetStream 2.12: atomic batch publish with
//!   `Nats-Expected-Last-Subject-Sequence` per message; KurrentDB: multi-stream append).
//! * **Idempotency** keys are deduplicated inside the same atomic write as the events, so a
//!   retried append can never apply twice, and the retry gets the first append's outcome.
//! * **Hash chains**: every stored event carries `sha256(prev_hash || stored bytes)` so an
//!   auditor can prove that nothing was altered, inserted or removed ([`chain`]).

pub mod chain;
pub mod conformance;
pub mod hex;
pub mod memory;
mod rules;
pub mod subscription;

use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use subscription::Subscription;

/// The append rules every backend applies identically (backends outside this crate use
/// them too, so that all of them refuse the same requests the same way).
pub use rules::{check_expected, validate};

/// A 0-based revision of an event within its stream.
pub type StreamRevision = u64;

/// Where an event sits in the store's total order. `GlobalPosition::ORIGIN` (0) is "before
/// every event": reading or subscribing after the origin yields the whole log.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct GlobalPosition(pub u64);

impl GlobalPosition {
    pub const ORIGIN: GlobalPosition = GlobalPosition(0);
}

impl std::fmt::Display for GlobalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the writer believes about a stream before appending to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "revision", rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check at all.
    Any,
    /// The stream must not exist yet (has no events).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(StreamRevision),
}

/// An event to be appended. `data` and `metadata` are the exact bytes that will be stored
/// and hashed (JSON in practice; the store does not parse them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// Events for one stream inside an [`AppendRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWrite {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An idempotency key with the fingerprint of the request it belongs to. A second append
/// with the same key and the same fingerprint returns the first outcome; the same key with a
/// different fingerprint is refused with [`StoreError::IdempotencyKeyReused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// One atomic append to one or more streams. Either every write lands or none does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub idempotency: Option<Idempotency>,
    pub writes: Vec<StreamWrite>,
}

/// Where one stream's events of an append landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub stream: String,
    /// Revisions of the appended events, in order (empty when the write had no events).
    pub revisions: Vec<StreamRevision>,
    /// Global positions of the appended events, in order.
    pub positions: Vec<GlobalPosition>,
}

/// The outcome of an append. `deduplicated` is true when the idempotency key had been seen:
/// nothing was written and `writes` is the first append's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub writes: Vec<WriteOutcome>,
    pub deduplicated: bool,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub stream: String,
    pub revision: StreamRevision,
    pub position: GlobalPosition,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    /// Hex sha256 of the previous event's hash in the same stream (64 zeros for the first).
    pub prev_hash: String,
    /// Hex sha256 over `prev_hash` and this event's stored bytes; see [`chain::event_hash`].
    pub hash: String,
}

/// Errors every backend reports the same way, so the engine can react without knowing
/// which backend it runs on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: someone else wrote first. The engine reloads and decides again.
    #[error("stream `{stream}` was expected at {expected:?} but is at {actual:?}; reload the stream and decide again")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// Revision of the last event, or None when the stream has none.
        actual: Option<StreamRevision>,
    },
    #[error("idempotency key `{key}` was already used for a different request; use a new key for a new command")]
    IdempotencyKeyReused { key: String },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("the store is closed; reopen it")]
    Closed,
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The backend knows the append left no trace (its transaction was rolled back, or it
    /// was never attempted because the transaction it would have joined was lost). Why a
    /// variant of its own: a caller may retry it, with or without an idempotency key,
    /// without risking a duplicate.
    #[error("nothing was written: {reason}; the append can be retried")]
    NotWritten { reason: String },
    /// The backend cannot tell whether the append was written (the commit failed and
    /// reading back what committed failed too). Why a variant of its own: retrying without
    /// the same idempotency key could apply the command twice.
    #[error("the append may or may not have been written ({reason}); retry it with the same idempotency key, which applies it at most once")]
    OutcomeUnknown { reason: String },
    /// A save fenced by a lease found the lease held by another process (or expired):
    /// nothing was written. Why a variant: the holder must stop writing that view, not retry.
    #[error("the lease `{lease}` is no longer held by this process; another process writes the views now, nothing was saved")]
    LeaseLost { lease: String },
}

/// The event store. Every backend implements it and passes [`conformance::run_all`].
///
/// Futures are `Send` so the engine can run them on a multi-threaded runtime.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends atomically. See [`AppendRequest`] for the rules.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// Reads up to `max` events of `stream` whose revision is `>= from`, in revision order.
    /// A stream that does not exist reads as empty.
    fn read_stream(
        &self,
        stream: &str,
        from: StreamRevision,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Reads up to `max` events whose position is `> after`, in position order.
    fn read_all(
        &self,
        after: GlobalPosition,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The position of the newest event at this moment, and every later change to it. Used
    /// to wake subscriptions; a subscription always re-reads from the store, so a missed
    /// wake-up can never lose an event.
    fn head(&self) -> tokio::sync::watch::Receiver<GlobalPosition>;

    /// Catch-up then live subscription to every event after `after`.
    fn subscribe(&self, after: GlobalPosition) -> Subscription<Self>
    where
        Self: Sized,
    {
        Subscription::new(self.clone(), after)
    }
}

/// Reads the whole log (after a position) page by page: the loop every reader of the log
/// would otherwise write again. While the caller works on one page the next one is
/// already being read (on another core, for a backend that reads on a blocking pool), so a
/// projection rebuild folds and reads at the same time.
pub struct LogPages<S> {
    store: S,
    after: GlobalPosition,
    page: usize,
    next: Option<tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>>,
}

impl<S: EventStore> LogPages<S> {
    pub fn new(store: &S, after: GlobalPosition, page: usize) -> Self {
        LogPages {
            store: store.clone(),
            after,
            page: page.max(1),
            next: None,
        }
    }

    /// The store the pages are read from.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The next page in position order, or `None` at the end of the log.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let page = match self.next.take() {
            Some(reading) => reading
                .await
                .map_err(|e| StoreError::Backend(format!("reading the log failed: {e}")))??,
            None => self.store.read_all(self.after, self.page).await?,
        };
        let Some(last) = page.last() else {
            return Ok(None);
        };
        self.after = last.position;
        if page.len() == self.page {
            let (store, after, size) = (self.store.clone(), self.after, self.page);
            self.next = Some(tokio::spawn(
                async move { store.read_all(after, size).await },
            ));
        }
        Ok(Some(page))
    }
}
