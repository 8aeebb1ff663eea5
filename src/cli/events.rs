//! `dealreg events`: prints the log as JSON lines, in global order, for auditors and tools.

use std::io::Write;

use dealreg_store::{EventStore, GlobalPosition, LogPages, RecordedEvent};
use serde::Serialize;

/// One printed line: the stored event with its payload and metadata as JSON, not bytes.
#[derive(Debug, Serialize)]
pub struct EventLine<'a> {
    pub position: GlobalPosition,
    pub stream: &'a str,
    pub revision: u64,
    pub event_id: String,
    pub event_type: &'a str,
    pub event: serde_json::Value,
    pub metadata: serde_json::Value,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

impl<'a> EventLine<'a> {
    pub fn new(recorded: &'a RecordedEvent) -> Self {
        let parse = |bytes: &[u8]| {
            serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            })
        };
        EventLine {
            position: recorded.position,
            stream: &recorded.stream,
            revision: recorded.revision,
            event_id: recorded.event_id.to_string(),
            event_type: &recorded.event_type,
            event: parse(&recorded.data),
            metadata: parse(&recorded.metadata),
            prev_hash: &recorded.prev_hash,
            hash: &recorded.hash,
        }
    }
}

/// Writes every event after `after` (optionally only those of `stream`). Returns the count.
pub async fn print_events<S: EventStore, W: Write>(
    store: &S,
    after: GlobalPosition,
    stream: Option<&str>,
    output: &mut W,
) -> Result<u64, crate::EngineError> {
    let mut count = 0u64;
    let mut pages = LogPages::new(store, after, 1024);
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            if stream.is_some_and(|s| s != recorded.stream) {
                continue;
            }
            serde_json::to_writer(&mut *output, &EventLine::new(recorded))
                .map_err(|e| crate::EngineError::Encode(e.to_string()))?;
            output
                .write_all(b"\n")
                .map_err(|e| crate::EngineError::Encode(e.to_string()))?;
            count += 1;
        }
    }
    Ok(count)
}
