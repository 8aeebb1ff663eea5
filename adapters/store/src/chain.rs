//! Per-stream hash chains: how an auditor proves nothing was altered, inserted or removed.
//!
//! Each event's hash covers the previous event's hash and every stored byte of the event
//! (stream, revision, id, type, data, metadata), each length-prefixed so that bytes cannot
//! be moved from one field to the next without changing the hash.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::RecordedEvent;

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

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// What is wrong where a chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// The event's bytes no longer match its hash.
    Altered,
    /// A revision is missing before this event.
    Removed,
    /// An event sits where an earlier revision was expected, or links to the wrong parent.
    InsertedOrReordered,
}

/// A broken chain: which stream, which revision, and what is wrong, so an auditor knows
/// where to look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash chain of `{stream}` breaks at revision {revision} ({kind:?}): {detail}")]
pub struct ChainBreak {
    pub stream: String,
    pub revision: u64,
    pub kind: BreakKind,
    pub detail: String,
}

/// Checks that `events` are one stream's events from revision 0, each linked to the one
/// before and each matching its own hash.
pub fn verify_stream(events: &[RecordedEvent]) -> Result<(), ChainBreak> {
    let mut expected_prev = GENESIS_HASH.to_string();
    for (index, e) in events.iter().enumerate() {
        let index = index as u64;
        let fail = |kind, detail: String| ChainBreak {
            stream: e.stream.clone(),
            revision: e.revision,
            kind,
            detail,
        };
        if e.revision > index {
            let later = events
                .iter()
                .skip(index as usize + 1)
                .any(|l| l.revision == index);
            return Err(if later {
                fail(
                    BreakKind::InsertedOrReordered,
                    format!("revision {index} appears later: events were reordered"),
                )
            } else {
                fail(BreakKind::Removed, format!("revision {index} is missing"))
            });
        }
        if e.revision < index {
            return Err(fail(
                BreakKind::InsertedOrReordered,
                format!("revision {} appears where {index} was expected", e.revision),
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
            return Err(fail(
                BreakKind::Altered,
                "stored bytes do not match the hash".into(),
            ));
        }
        if e.prev_hash != expected_prev {
            return Err(fail(
                BreakKind::InsertedOrReordered,
                "prev_hash does not link to the previous event".into(),
            ));
        }
        expected_prev = e.hash.clone();
    }
    Ok(())
}
