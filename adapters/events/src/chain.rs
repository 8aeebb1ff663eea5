//! Per-stream hash chains: how an auditor proves nothing was altered, inserted or removed,
//! and the one check of them ([`ChainWalk`]) that `dealreg verify` and the conformance
//! suite both run.
//!
//! Each event's hash covers the previous event's hash and every stored byte of the event
//! (stream, revision, id, type, data, metadata), each length-prefixed so that bytes cannot
//! be moved from one field to the next without changing the hash.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{EventStore, LogPages, NewEvent, Position, RecordedEvent, StoreError, StreamRevision};

/// The `prev_hash` of the first event of every stream.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one event, as stored in [`RecordedEvent::hash`].
pub fn event_hash(
    prev_hash: &str,
    stream: &str,
    revision: u64,
    event_id: &Uuid,
    event_type: &str,
    data: &[u8],
    metadata: &[u8],
) -> String {
    let mut hasher = Sha256::new();
    let revision = revision.to_be_bytes();
    let parts: [&[u8]; 7] = [
        prev_hash.as_bytes(),
        stream.as_bytes(),
        &revision,
        event_id.as_bytes(),
        event_type.as_bytes(),
        data,
        metadata,
    ];
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    to_hex(&hasher.finalize())
}

/// An event's place in its stream's chain, computed before it is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub revision: StreamRevision,
    pub prev_hash: String,
    pub hash: String,
}

/// Chains `events` onto a stream whose last event is `tip` (revision and hash; `None`:
/// the stream has no events yet): the one place the stream chain is computed, before the
/// append, by whoever appends. An exact expectation on the append guarantees that `tip`
/// is still the stream's last event when the events land, so the chain holds.
pub fn link(stream: &str, tip: Option<(StreamRevision, &str)>, events: &[NewEvent]) -> Vec<Link> {
    let (mut revision, mut prev) = match tip {
        Some((revision, hash)) => (revision + 1, hash.to_string()),
        None => (0, GENESIS_HASH.to_string()),
    };
    let mut links = Vec::with_capacity(events.len());
    for e in events {
        let hash = event_hash(
            &prev,
            stream,
            revision,
            &e.event_id,
            &e.event_type,
            &e.data,
            &e.metadata,
        );
        links.push(Link {
            revision,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
        revision += 1;
    }
    links
}

/// The hash of the log after its `n`-th event (counting from 1): it covers the hash of
/// the log before it, the event's place in the order and the event's own (stream chain)
/// hash. Why a second chain: a stream's chain cannot show that its last event was deleted,
/// that events moved in the order, or that the global tail was cut; a chain over the
/// global order can, and a signed log hash pins everything up to it. It counts events
/// rather than hashing positions so that it holds on every backend the log is moved to
/// (see [`crate::audit`]).
pub fn log_hash(prev_log_hash: &str, n: u64, event_hash: &str) -> String {
    let mut hasher = Sha256::new();
    let n = n.to_be_bytes();
    for part in [prev_log_hash.as_bytes(), &n, event_hash.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    to_hex(&hasher.finalize())
}

pub use crate::hex::encode as to_hex;

/// What is wrong where a chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The event's bytes no longer match its hash.
    Altered,
    /// A revision is missing before this event.
    Removed,
    /// An event sits where an earlier revision was expected, or links to the wrong parent.
    InsertedOrReordered,
}

/// A broken chain: which stream, which revision at which position, and what is wrong, so
/// an auditor knows where to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("hash chain of `{stream}` breaks at revision {revision} (position {position}, {kind:?}): {problem}")]
pub struct ChainBreak {
    pub stream: String,
    pub revision: u64,
    pub position: Position,
    pub kind: BreakKind,
    pub problem: String,
}

/// What a walk over the log found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub events: u64,
    pub streams: usize,
    pub breaks: Vec<ChainBreak>,
}

/// The one chain check: fed events in order (a stream's, or the whole log's), it holds
/// each stream's tip and records every place a chain does not hold.
///
/// Why a walker and not a function over a slice: `dealreg verify` checks a log far bigger
/// than memory one page at a time, and the per-stream check of the conformance suite must
/// be the same code, so that the two can never disagree.
#[derive(Debug, Default)]
pub struct ChainWalk {
    /// Stream -> (last revision seen, its hash, revisions found missing -> their fault).
    tips: HashMap<String, Tip>,
    events: u64,
    breaks: Vec<ChainBreak>,
}

#[derive(Debug)]
struct Tip {
    revision: u64,
    hash: String,
    missing: HashMap<u64, usize>,
}

impl ChainWalk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one event against its stream's tip, then makes it the tip.
    pub fn observe(&mut self, e: &RecordedEvent) {
        self.events += 1;
        let (expected_revision, expected_prev) = match self.tips.get(&e.stream) {
            Some(tip) => (tip.revision + 1, tip.hash.as_str()),
            None => (0, GENESIS_HASH),
        };
        let mut found = Vec::new();
        if e.revision > expected_revision {
            found.push((
                BreakKind::Removed,
                format!(
                    "revision {expected_revision} is missing before this event: events were removed"
                ),
            ));
        } else if e.revision < expected_revision {
            found.push((
                BreakKind::InsertedOrReordered,
                format!(
                    "revision {} appears where {expected_revision} was expected: events were inserted or reordered",
                    e.revision
                ),
            ));
        }
        let recomputed = event_hash(
            &e.prev_hash,
            &e.stream,
            e.revision,
            &e.event_id,
            &e.event_type,
            &e.data,
            &e.metadata,
        );
        if recomputed != e.hash {
            found.push((
                BreakKind::Altered,
                "the stored bytes do not match the hash: the event was altered".into(),
            ));
        } else if e.prev_hash != expected_prev && e.revision == expected_revision {
            found.push((
                BreakKind::InsertedOrReordered,
                "prev_hash does not link to the previous event's hash: the chain was cut or relinked"
                    .into(),
            ));
        }
        let tip = self.tips.entry(e.stream.clone()).or_insert_with(|| Tip {
            revision: 0,
            hash: String::new(),
            missing: HashMap::new(),
        });
        // A revision once reported missing that turns up later was moved, not removed.
        if let Some(index) = tip.missing.remove(&e.revision) {
            if let Some(earlier) = self.breaks.get_mut(index) {
                earlier.kind = BreakKind::InsertedOrReordered;
                earlier.problem = format!(
                    "revision {} appears later in the log: events were reordered",
                    e.revision
                );
            }
        }
        for (kind, problem) in found {
            if kind == BreakKind::Removed {
                for missing in expected_revision..e.revision.min(expected_revision + 1024) {
                    tip.missing.insert(missing, self.breaks.len());
                }
            }
            self.breaks.push(ChainBreak {
                stream: e.stream.clone(),
                revision: e.revision,
                position: e.position,
                kind,
                problem,
            });
        }
        if e.revision >= expected_revision || tip.hash.is_empty() {
            tip.revision = e.revision;
            tip.hash = e.hash.clone();
        }
    }

    pub fn finish(self) -> ChainReport {
        ChainReport {
            events: self.events,
            streams: self.tips.len(),
            breaks: self.breaks,
        }
    }
}

/// Checks that `events` are one stream's events from revision 0, each linked to the one
/// before and each matching its own hash; the first break found, if any.
pub fn verify_stream(events: &[RecordedEvent]) -> Result<(), ChainBreak> {
    let mut walk = ChainWalk::new();
    for e in events {
        walk.observe(e);
    }
    match walk.finish().breaks.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// Walks the whole log through the trait (an auditor's check must not trust the backend
/// it checks, and must work the same on every backend) and checks every stream's chain.
pub async fn verify_log<S: EventStore>(store: &S) -> Result<ChainReport, StoreError> {
    let mut walk = ChainWalk::new();
    let mut pages = LogPages::new(store, Position::ORIGIN).await?;
    while let Some(page) = pages.next_page().await? {
        for e in &page {
            walk.observe(e);
        }
    }
    Ok(walk.finish())
}
