//! The events port of dealreg: one trait, several backends, one conformance suite.
//!
//! Why the trait is this small: the engine runs unchanged on the embedded SQLite file, on
//! NATS JetStream and on KurrentDB, so it may only ask for what all three can promise
//! without faking it:
//!
//! * **Streams** are named by strings (`account-acme.co.uk`, `partner-<uuid>`, `program`);
//!   a stream's events are numbered by a 0-based [`StreamRevision`]. Backends that have no
//!   revision of their own (JetStream) store it with the event.
//! * **Positions** ([`Position`]) order every event of the log. They are opaque tokens
//!   that only ever increase in append order: SQLite's row id, JetStream's stream
//!   sequence, KurrentDB's (commit, prepare) pair. Nothing may count events with them.
//! * **An append writes one stream**, atomically, with an [`ExpectedVersion`]: any, no
//!   stream yet, or exactly the tip the writer loaded. The tip carries the revision (what
//!   SQLite and KurrentDB check), the position (what JetStream checks, as the last
//!   sequence of the stream's subject) and the hash the next event chains from.
//!   Writing several streams in one atomic append is an optional capability
//!   ([`EventStore::append_streams`]); the engine never needs it.
//! * **Hash chains** are computed before the append, by [`chain::link`], from the tip the
//!   append expects: an exact expectation guarantees the chain continues from the event
//!   the writer loaded. Every backend stores the two hashes beside the event and none
//!   computes them its own way.
//! * **Reading the log** is one thing: [`EventStore::subscribe_all`], catch-up then live,
//!   each backend with its native mechanism. [`LogPages`] reads it up to the head it found
//!   when it started (a rebuild, an export, an audit).
//! * **Idempotency is not the store's job**: the engine records each command's key and
//!   fingerprint in its events' metadata (JetStream's message-id window and KurrentDB's
//!   event-id deduplication cannot promise "the first outcome, forever").

pub mod audit;
pub mod chain;
pub mod conformance;
pub mod hex;
mod log;
pub mod memory;
pub mod portable;
mod rules;
pub mod subscription;

use std::future::Future;
use std::pin::Pin;

pub use dealreg_domain::Position;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use log::LogPages;
/// The append rules every backend applies identically (backends outside this crate use
/// them too, so that all of them refuse the same requests the same way).
pub use rules::{check_expected, validate};

/// A 0-based revision of an event within its stream.
pub type StreamRevision = u64;

/// The last event of a stream as a writer loaded it: what an exact append expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTip {
    pub revision: StreamRevision,
    pub position: Position,
    /// The event's hash; the next event chains from it.
    pub hash: String,
}

impl StreamTip {
    /// The tip a recorded event makes when it is the last of its stream.
    pub fn of(event: &RecordedEvent) -> StreamTip {
        StreamTip {
            revision: event.revision,
            position: event.position,
            hash: event.hash.clone(),
        }
    }
}

/// What the writer believes about a stream before appending to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "tip", rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check at all: the backend finds the tip itself (JetStream and KurrentDB by a
    /// read, then an exact append, again on a lost race).
    Any,
    /// The stream must not exist yet (has no events).
    NoStream,
    /// The stream's last event must be exactly this one.
    Exact(StreamTip),
}

impl ExpectedVersion {
    /// The expectation after `tip` (`None`: the stream has no events).
    pub fn after(tip: Option<&StreamTip>) -> ExpectedVersion {
        match tip {
            Some(tip) => ExpectedVersion::Exact(tip.clone()),
            None => ExpectedVersion::NoStream,
        }
    }

    /// The revision the stream's last event must have (`None`: no event), when the
    /// expectation names one.
    pub fn revision(&self) -> Option<Option<StreamRevision>> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(None),
            ExpectedVersion::Exact(tip) => Some(Some(tip.revision)),
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any revision"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(tip) => write!(f, "revision {}", tip.revision),
        }
    }
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

/// Where an append's events landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub stream: String,
    /// Revisions of the appended events, in order.
    pub revisions: Vec<StreamRevision>,
    /// Positions of the appended events, in order.
    pub positions: Vec<Position>,
    /// The stream's tip after the append: its last event.
    pub tip: StreamTip,
}

/// One stream's part of an atomic append to several streams ([`EventStore::append_streams`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub stream: String,
    pub revision: StreamRevision,
    pub position: Position,
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
    #[error("stream `{stream}` was expected at {expected} but is at {}; reload the stream and decide again", actual.map_or("no stream".to_string(), |r| format!("revision {r}")))]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// Revision of the last event, or None when the stream has none (or the backend
        /// could not tell).
        actual: Option<StreamRevision>,
    },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("the store is closed; reopen it")]
    Closed,
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The backend knows the append left no trace (its transaction was rolled back, or it
    /// was never attempted because the transaction it would have joined was lost). Why a
    /// variant of its own: a caller may retry it without risking a duplicate.
    #[error("nothing was written: {reason}; the append can be retried")]
    NotWritten { reason: String },
    /// The backend cannot tell whether the append was written (the commit failed and
    /// reading back what committed failed too, or the server did not answer in time). Why
    /// a variant of its own: the engine retries such a command only after reading the
    /// stream again, where a command that did land is found by its idempotency key.
    #[error("the append may or may not have been written ({reason}); retry the command with the same idempotency key, which applies it at most once")]
    OutcomeUnknown { reason: String },
}

/// The log as a stream of pages in position order, each non-empty: what
/// [`EventStore::subscribe_all`] gives. It ends only with an error.
pub type LogStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<Vec<RecordedEvent>, StoreError>> + Send>>;

/// What a backend can do beyond the contract, for the jobs that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Positions are consecutive numbers from 1 (SQLite, JetStream): an auditor can tell
    /// a removed event by the gap it leaves. KurrentDB's are not.
    pub dense_positions: bool,
    /// [`EventStore::append_streams`] appends to several streams atomically (SQLite in one
    /// transaction, JetStream in one atomic batch, the memory store); KurrentDB's client
    /// cannot, and the engine then takes a capacity slot before the account's write.
    pub multi_stream_append: bool,
    /// The engine writes a decision's capacity slots in the same append as its events
    /// (not a reservation before and a release after). Where a multi-stream append costs
    /// no more than the plain appends it replaces: SQLite and the memory store; JetStream
    /// on a replicated stream (3-node R3: 1,433 submissions/s against 1,088 with the
    /// reservation path). Not on a single JetStream node with `sync: always`, which
    /// answered 237 submissions/s with it against 1,013 without (`store_backends`, one run
    /// each): an atomic batch there does not share its sync with other publishes.
    pub capacity_in_one_append: bool,
}

/// The event store. Every backend implements it and passes [`conformance::run_all`].
///
/// Futures are `Send` so the engine can run them on a multi-threaded runtime.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends `events` (at least one) to `stream` atomically, if the stream is as
    /// `expected`. Each event's hashes are [`chain::link`]ed from the expected tip (for
    /// [`ExpectedVersion::Any`], from the tip the backend finds).
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Reads up to `max` events of `stream` after `after` (one of its events, as a read
    /// or an append gave it; `None`: from its first), in revision order. A stream that
    /// does not exist reads as empty. Why a tip and not a revision: it names the event by
    /// what every backend can seek to (SQLite and KurrentDB by revision, JetStream by the
    /// stream sequence of its subject), so a reader that folded a stream reads only what
    /// came after, at the same cost however long the stream is.
    fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// [`EventStore::read_stream`] for a decision that appends to `stream` at the exact tip
    /// this read gives. A backend may answer from a copy that has not seen the newest
    /// events yet (saving the round trip that asks the stream's leader): an append at a
    /// stale tip is refused (`WrongExpectedVersion`), and the caller reads again with
    /// [`EventStore::read_stream`] before it decides again. Never use it for a stream that
    /// is only read. By default the same as `read_stream`.
    fn read_stream_to_append(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.read_stream(stream, after, max)
    }

    /// Reads up to `max` events whose position is after `after`, in position order.
    fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Every event after `after`, in position order: first what is stored (catch-up),
    /// then each new event as it is appended (live), by whatever process. Nothing is
    /// skipped and nothing comes twice.
    fn subscribe_all(&self, after: Position) -> LogStream;

    /// The position of the newest event now ([`Position::ORIGIN`] for an empty log).
    fn last_position(&self) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// What this backend can do beyond the contract.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Appends to several streams at once, atomically: every part lands, each at its
    /// expected version, or none does. Optional: a backend without it
    /// ([`Capabilities::multi_stream_append`] false) refuses and writes nothing.
    fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
    ) -> impl Future<Output = Result<Vec<Appended>, StoreError>> + Send {
        let streams: Vec<String> = appends.into_iter().map(|a| a.stream).collect();
        async move {
            Err(StoreError::InvalidAppend(format!(
                "this backend cannot append to several streams atomically ({}); append to each stream on its own",
                streams.join(", ")
            )))
        }
    }
}
