//! `dealreg verify`: walks the whole log and checks every stream's hash chain.
//!
//! Why it reads through the trait rather than a backend's own query: an auditor's check
//! must not trust the backend it is checking, and must work the same on every backend.

use std::collections::HashMap;

use dealreg_store::chain::{event_hash, GENESIS_HASH};
use dealreg_store::{EventStore, GlobalPosition, LogPages};
use serde::Serialize;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub events: u64,
    pub streams: usize,
    pub breaks: Vec<ChainFault>,
}

/// One place where a chain does not hold, with what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainFault {
    pub stream: String,
    pub revision: u64,
    pub position: GlobalPosition,
    pub problem: String,
}

pub async fn verify_chains<S: EventStore>(store: &S) -> Result<ChainReport, crate::EngineError> {
    let mut last: HashMap<String, (u64, String)> = HashMap::new();
    let mut report = ChainReport {
        events: 0,
        streams: 0,
        breaks: Vec::new(),
    };
    let mut pages = LogPages::new(store, GlobalPosition::ORIGIN, 2048);
    while let Some(page) = pages.next_page().await? {
        for e in page {
            report.events += 1;
            let (expected_revision, expected_prev) = match last.get(&e.stream) {
                Some((revision, hash)) => (revision + 1, hash.as_str()),
                None => (0, GENESIS_HASH),
            };
            let mut fault = |problem: String| {
                report.breaks.push(ChainFault {
                    stream: e.stream.clone(),
                    revision: e.revision,
                    position: e.position,
                    problem,
                })
            };
            if e.revision != expected_revision {
                fault(format!(
                    "expected revision {expected_revision}: events were removed, inserted or reordered"
                ));
            }
            if e.prev_hash != expected_prev {
                fault(
                    "prev_hash does not match the previous event's hash: the chain was cut".into(),
                );
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
                fault("hash does not match the stored bytes: the event was altered".into());
            }
            last.insert(e.stream.clone(), (e.revision, e.hash.clone()));
        }
    }
    report.streams = last.len();
    Ok(report)
}
