//! The log as portable JSON lines (`dealreg export`), and back into an empty store of any
//! backend (`dealreg import`).
//!
//! One line each, in this order: a header, every event in log order (its exact stored
//! bytes and both hashes), the signed checkpoints, and an end line that counts what came
//! before (a cut file is refused). Why `data` and `metadata` are strings: they are the
//! exact bytes the hashes cover; a JSON value would be written back with other spacing or
//! key order, and every hash after it would break.
//!
//! Why an import goes through the store's append and not a copy of rows: the target
//! assigns its own positions (a KurrentDB log has others than the SQLite file it came
//! from) and chains every event itself, so an imported log is one the store wrote; that it
//! equals the export (every hash, in the same order) is then checked, not assumed. Signed
//! checkpoints sign the log chain after a number of events, which does not depend on
//! positions, so they verify on the target too.
//!
//! Format 1 (written before positions became tokens) also listed the store's idempotency
//! records; they are read and skipped (the engine now finds a command's key in its
//! events' metadata).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{LogChain, SignedCheckpoint};
use crate::chain::{event_hash, GENESIS_HASH};
use crate::{
    EventStore, ExpectedVersion, LogPages, NewEvent, Position, StoreError, StreamRevision,
    StreamTip,
};

/// The format this build writes. It reads this one and format 1.
pub const EXPORT_FORMAT: u32 = 2;

/// One line of a portable log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    Header {
        format: u32,
        exported_at: DateTime<Utc>,
    },
    Event {
        /// Where the event sat in the exporting store (informative: an import assigns the
        /// target's own).
        position: Position,
        stream: String,
        revision: StreamRevision,
        event_id: String,
        event_type: String,
        data: String,
        metadata: String,
        prev_hash: String,
        hash: String,
        /// The log chain after this event.
        log_hash: String,
    },
    /// Format 1 only: read and skipped.
    Idempotency {
        key: String,
        fingerprint: String,
        outcome: String,
    },
    Checkpoint(SignedCheckpoint),
    End {
        events: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency: Option<u64>,
        checkpoints: u64,
        log_hash: String,
    },
}

/// Why an export or an import did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PortableError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the export cannot be written: {0}")]
    Write(String),
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    Diverged(String),
}

/// Writes the log of `store` as a portable log to `out`, with `checkpoints`; gives the
/// number of events. Reads the log up to its head when the export starts.
pub async fn export<S: EventStore>(
    store: &S,
    checkpoints: &[SignedCheckpoint],
    now: DateTime<Utc>,
    out: &mut dyn std::io::Write,
) -> Result<u64, PortableError> {
    let mut line = |value: &ExportLine| -> Result<(), PortableError> {
        let text = serde_json::to_string(value).map_err(|e| PortableError::Write(e.to_string()))?;
        writeln!(out, "{text}").map_err(|e| PortableError::Write(e.to_string()))
    };
    line(&ExportLine::Header {
        format: EXPORT_FORMAT,
        exported_at: now,
    })?;
    let mut chain = LogChain::new();
    let mut pages = LogPages::new(store, Position::ORIGIN).await?;
    while let Some(page) = pages.next_page().await? {
        for e in page {
            let text = |bytes: Vec<u8>, what: &str| {
                String::from_utf8(bytes).map_err(|err| {
                    PortableError::Unreadable(format!(
                        "the {what} of the event at position {} are not UTF-8 ({err}); a dealreg log holds JSON only: run `dealreg audit verify`",
                        e.position
                    ))
                })
            };
            let log_hash = chain.observe(&e).to_string();
            line(&ExportLine::Event {
                position: e.position,
                stream: e.stream.clone(),
                revision: e.revision,
                event_id: e.event_id.to_string(),
                event_type: e.event_type.clone(),
                data: text(e.data.clone(), "data")?,
                metadata: text(e.metadata.clone(), "metadata")?,
                prev_hash: e.prev_hash.clone(),
                hash: e.hash.clone(),
                log_hash,
            })?;
        }
    }
    for checkpoint in checkpoints {
        line(&ExportLine::Checkpoint(checkpoint.clone()))?;
    }
    line(&ExportLine::End {
        events: chain.events(),
        idempotency: None,
        checkpoints: checkpoints.len() as u64,
        log_hash: chain.hash().to_string(),
    })?;
    out.flush()
        .map_err(|e| PortableError::Write(e.to_string()))?;
    Ok(chain.events())
}

/// An event of a portable log, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortableEvent {
    pub position: Position,
    pub stream: String,
    pub revision: StreamRevision,
    pub event: NewEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// A portable log read back and checked: every line parsed, both chains recomputed, the
/// end line's counts matched.
#[derive(Debug, Default)]
pub struct ReadExport {
    pub format: u32,
    pub events: Vec<PortableEvent>,
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The log chain's hash after the last event.
    pub log_hash: String,
}

/// Reads and checks a portable log; `Err` names the first bad line (1-based) and what is
/// wrong.
pub fn read_export(text: &str) -> Result<ReadExport, String> {
    let mut read = ReadExport {
        log_hash: GENESIS_HASH.to_string(),
        ..ReadExport::default()
    };
    let mut streams: HashMap<String, (u64, String)> = HashMap::new();
    let mut chain = LogChain::new();
    let mut last: Option<Position> = None;
    let mut header = false;
    let mut records = 0u64;
    let mut ended = false;
    for (index, raw) in text.lines().enumerate() {
        let n = index + 1;
        let bad = |why: String| {
            format!("line {n}: {why}; the export is damaged, make it again with `dealreg export`")
        };
        if raw.trim().is_empty() {
            continue;
        }
        if ended {
            return Err(bad("a line after the end line".into()));
        }
        let line: ExportLine =
            serde_json::from_str(raw).map_err(|e| bad(format!("not an export line ({e})")))?;
        match line {
            ExportLine::Header { format, .. } => {
                if header || n != 1 {
                    return Err(bad("a header that is not the first line".into()));
                }
                if format != EXPORT_FORMAT && format != 1 {
                    return Err(bad(format!(
                        "format {format}; this build reads formats 1 and {EXPORT_FORMAT}"
                    )));
                }
                read.format = format;
                header = true;
            }
            _ if !header => return Err(bad("the first line is not the export's header".into())),
            ExportLine::Event {
                position,
                stream,
                revision,
                event_id,
                event_type,
                data,
                metadata,
                prev_hash,
                hash,
                log_hash: stored_log,
            } => {
                if records > 0 || !read.checkpoints.is_empty() {
                    return Err(bad("an event after the records or checkpoints".into()));
                }
                if last.is_some_and(|last| position <= last) {
                    return Err(bad(format!(
                        "position {position} does not come after position {}",
                        last.unwrap_or_default()
                    )));
                }
                let (expected_revision, expected_prev) = streams
                    .get(&stream)
                    .map(|(r, h)| (r + 1, h.clone()))
                    .unwrap_or((0, GENESIS_HASH.to_string()));
                if revision != expected_revision || prev_hash != expected_prev {
                    return Err(bad(format!(
                        "revision {revision} of `{stream}` does not follow its stream"
                    )));
                }
                let id =
                    uuid::Uuid::parse_str(&event_id).map_err(|e| bad(format!("event id: {e}")))?;
                let recomputed = event_hash(
                    &prev_hash,
                    &stream,
                    revision,
                    &id,
                    &event_type,
                    data.as_bytes(),
                    metadata.as_bytes(),
                );
                if recomputed != hash {
                    return Err(bad(format!(
                        "the event at position {position} does not match its hash: it was changed"
                    )));
                }
                let event = PortableEvent {
                    position,
                    stream: stream.clone(),
                    revision,
                    event: NewEvent {
                        event_id: id,
                        event_type,
                        data: data.into_bytes(),
                        metadata: metadata.into_bytes(),
                    },
                    prev_hash,
                    hash: hash.clone(),
                };
                let chained = chain.observe(&crate::RecordedEvent {
                    stream: stream.clone(),
                    revision,
                    position,
                    event_id: id,
                    event_type: String::new(),
                    data: Vec::new(),
                    metadata: Vec::new(),
                    prev_hash: String::new(),
                    hash: hash.clone(),
                });
                if chained != stored_log {
                    return Err(bad(format!("the log chain breaks at position {position}")));
                }
                last = Some(position);
                streams.insert(stream, (revision, hash));
                read.events.push(event);
            }
            ExportLine::Idempotency { .. } => {
                if !read.checkpoints.is_empty() {
                    return Err(bad("an idempotency record after the checkpoints".into()));
                }
                records += 1;
            }
            ExportLine::Checkpoint(checkpoint) => read.checkpoints.push(checkpoint),
            ExportLine::End {
                events,
                idempotency,
                checkpoints,
                log_hash: end_log,
            } => {
                if events != read.events.len() as u64
                    || idempotency.unwrap_or(0) != records
                    || checkpoints != read.checkpoints.len() as u64
                {
                    return Err(bad(format!(
                        "the end line counts {events} events, {} records and {checkpoints} checkpoints; the file has {}, {records} and {}",
                        idempotency.unwrap_or(0),
                        read.events.len(),
                        read.checkpoints.len()
                    )));
                }
                if end_log != chain.hash() {
                    return Err(bad("the end line's log hash is not the last event's".into()));
                }
                ended = true;
            }
        }
    }
    if !ended {
        return Err(
            "the export has no end line: it was cut off; make it again with `dealreg export`"
                .into(),
        );
    }
    read.log_hash = chain.hash().to_string();
    Ok(read)
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub events: u64,
    pub appends: u64,
}

/// The command that wrote an event, from its metadata (`command_id`): the events of one
/// command to one stream were one append and are imported as one.
fn command_of(event: &NewEvent) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&event.metadata).ok()?;
    value.get("command_id")?.as_str().map(str::to_string)
}

/// Appends `read`'s events to `store`, which must hold no events: one append per command
/// and stream, in the log's order, each at the exact tip the previous one left; then
/// checks that every stored event has the exported hash in the exported order. A refused
/// or diverging append stops the import; what it wrote is named in the error.
pub async fn import<S: EventStore>(
    store: &S,
    read: &ReadExport,
) -> Result<Imported, PortableError> {
    let head = store.last_position().await?;
    if head != Position::ORIGIN {
        return Err(PortableError::Diverged(format!(
            "the store already holds events (up to position {head}); import only into an empty store"
        )));
    }
    let mut tips: HashMap<&str, StreamTip> = HashMap::new();
    let mut appends = 0u64;
    let mut start = 0;
    let events = &read.events;
    while start < events.len() {
        let first = &events[start];
        let command = command_of(&first.event);
        let end = events[start..]
            .iter()
            .position(|e| e.stream != first.stream || command_of(&e.event) != command)
            .map_or(events.len(), |n| start + n);
        let group = &events[start..end];
        let expected = ExpectedVersion::after(tips.get(first.stream.as_str()));
        let appended = store
            .append(
                &first.stream,
                expected,
                group.iter().map(|e| e.event.clone()).collect(),
            )
            .await
            .map_err(|e| {
                PortableError::Diverged(format!(
                    "importing the events exported at positions {}..={}: {e}; the events before them were imported",
                    first.position,
                    group[group.len() - 1].position
                ))
            })?;
        if appended.tip.hash != group[group.len() - 1].hash
            || appended.revisions.first() != Some(&first.revision)
        {
            return Err(PortableError::Diverged(format!(
                "the import diverged: the events exported at positions {}..={} were chained differently by the store",
                first.position,
                group[group.len() - 1].position
            )));
        }
        tips.insert(first.stream.as_str(), appended.tip);
        appends += 1;
        start = end;
    }
    // Every stored event, in the store's order, must be the export's.
    let mut stored = 0usize;
    let mut pages = LogPages::new(store, Position::ORIGIN).await?;
    while let Some(page) = pages.next_page().await? {
        for e in page {
            let Some(exported) = events.get(stored) else {
                return Err(PortableError::Diverged(format!(
                    "the store holds more events than the export (one at position {})",
                    e.position
                )));
            };
            if e.hash != exported.hash {
                return Err(PortableError::Diverged(format!(
                    "the imported event at position {} is not the export's event {} (exported at position {})",
                    e.position,
                    stored + 1,
                    exported.position
                )));
            }
            stored += 1;
        }
    }
    if stored != events.len() {
        return Err(PortableError::Diverged(format!(
            "the store holds {stored} events, the export {}",
            events.len()
        )));
    }
    Ok(Imported {
        events: stored as u64,
        appends,
    })
}
