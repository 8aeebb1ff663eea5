//! `dealreg export` and `dealreg import`: the log as portable JSON lines, and back.
//!
//! Why import goes through the store's append and not a copy of rows: the store assigns
//! positions and computes both hashes itself, so an imported log is one the store wrote;
//! that it equals the export (every position and hash) is then checked, not assumed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dealreg_engine::EventMetadata;
use dealreg_events::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Idempotency, NewEvent, StreamWrite,
};
use dealreg_store_sqlite::audit::{self, ExportLine};

/// `dealreg export [--out FILE] [--checkpoints FILE]`.
pub fn export(
    path: &Path,
    out: Option<PathBuf>,
    checkpoints: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let checkpoints = match &checkpoints {
        Some(file) => super::audit::read_checkpoints(file)?,
        None => Vec::new(),
    };
    let now = chrono::Utc::now();
    let events = match &out {
        Some(file) => {
            let mut writer = std::io::BufWriter::new(
                std::fs::File::create(file)
                    .map_err(|e| format!("cannot create {}: {e}", file.display()))?,
            );
            let events =
                audit::export(path, &checkpoints, now, &mut writer).map_err(|e| e.to_string())?;
            writer
                .into_inner()
                .map_err(|e| e.to_string())?
                .sync_all()
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            events
        }
        None => {
            let stdout = std::io::stdout();
            let mut writer = std::io::BufWriter::new(stdout.lock());
            audit::export(path, &checkpoints, now, &mut writer).map_err(|e| e.to_string())?
        }
    };
    eprintln!("exported {events} events");
    Ok(ExitCode::SUCCESS)
}

struct Imported {
    position: u64,
    stream: String,
    revision: u64,
    event: NewEvent,
    metadata: EventMetadata,
    hash: String,
}

/// `dealreg import FILE`: into an empty store only.
pub async fn import(path: &Path, file: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let read = audit::read_export(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let (store, _) = super::store::create_or_open(path)?;
    let head = store.head().borrow().0;
    if head > 0 {
        return Err(format!(
            "{} already holds events up to position {head}; import only into an empty store (give a new --store path)",
            path.display()
        ));
    }
    let mut events = Vec::with_capacity(read.events.len());
    for line in &read.events {
        if let ExportLine::Event {
            position,
            stream,
            revision,
            event_id,
            event_type,
            data,
            metadata,
            hash,
            ..
        } = line
        {
            let parsed: EventMetadata = serde_json::from_str(metadata).map_err(|e| {
                format!("the event at position {position} has unreadable metadata: {e}")
            })?;
            events.push(Imported {
                position: *position,
                stream: stream.clone(),
                revision: *revision,
                event: NewEvent {
                    event_id: uuid::Uuid::parse_str(event_id).map_err(|e| e.to_string())?,
                    event_type: event_type.clone(),
                    data: data.clone().into_bytes(),
                    metadata: metadata.clone().into_bytes(),
                },
                metadata: parsed,
                hash: hash.clone(),
            });
        }
    }
    let mut records: HashMap<&str, (&str, &str)> = read
        .idempotency
        .iter()
        .map(|(k, f, o)| (k.as_str(), (f.as_str(), o.as_str())))
        .collect();
    // One append per command: its events are consecutive and share the command's id.
    let mut start = 0;
    let mut appends = 0u64;
    while start < events.len() {
        let command = events[start].metadata.command_id;
        let end = events[start..]
            .iter()
            .position(|e| e.metadata.command_id != command)
            .map_or(events.len(), |n| start + n);
        let group = &events[start..end];
        let first = &group[0];
        let record_key = first
            .metadata
            .idempotency_key
            .as_deref()
            .map(|k| dealreg_engine::engine::idempotency_record_key(&first.metadata.actor, k));
        let record = record_key
            .as_deref()
            .and_then(|k| records.remove(k).map(|r| (k, r)));
        // The stream order of the original append: its recorded outcome when there is one
        // (with the streams it only checked), else the order the events came in.
        let mut order: Vec<String> = Vec::new();
        if let Some((_, (_, outcome))) = &record {
            if let Ok(outcome) = serde_json::from_str::<AppendOutcome>(outcome) {
                order = outcome.writes.iter().map(|w| w.stream.clone()).collect();
            }
        }
        for event in group {
            if !order.contains(&event.stream) {
                order.push(event.stream.clone());
            }
        }
        let writes = order
            .iter()
            .map(|stream| {
                let mine: Vec<&Imported> = group.iter().filter(|e| &e.stream == stream).collect();
                let expected = match mine.first() {
                    None => ExpectedVersion::Any,
                    Some(e) if e.revision == 0 => ExpectedVersion::NoStream,
                    Some(e) => ExpectedVersion::Exact(e.revision - 1),
                };
                StreamWrite {
                    stream: stream.clone(),
                    expected,
                    events: mine.iter().map(|e| e.event.clone()).collect(),
                }
            })
            .collect();
        let request = AppendRequest {
            idempotency: record.map(|(key, (fingerprint, _))| Idempotency {
                key: key.to_string(),
                fingerprint: fingerprint.to_string(),
            }),
            writes,
        };
        let outcome = store
            .append(request)
            .await
            .map_err(|e| format!("importing the events at positions {}..={}: {e}; nothing after position {} was imported", first.position, group[group.len() - 1].position, first.position - 1))?;
        let mut landed: Vec<u64> = outcome
            .writes
            .iter()
            .flat_map(|w| w.positions.iter().map(|p| p.0))
            .collect();
        landed.sort_unstable();
        let wanted: Vec<u64> = group.iter().map(|e| e.position).collect();
        if landed != wanted {
            return Err(format!(
                "the import diverged: events exported at positions {wanted:?} landed at {landed:?}"
            ));
        }
        appends += 1;
        start = end;
    }
    // Every hash is the store's own now: it must be the export's.
    let stored = store
        .read_all(dealreg_events::GlobalPosition::ORIGIN, events.len() + 1)
        .await
        .map_err(|e| e.to_string())?;
    for (event, recorded) in events.iter().zip(&stored) {
        if recorded.hash != event.hash || recorded.position.0 != event.position {
            return Err(format!(
                "the imported event at position {} differs from the export's",
                event.position
            ));
        }
    }
    drop(store);
    let report = audit::verify(path, &read.checkpoints, None, &super::audit::record_key)
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        let _ = writeln!(out, "{finding}");
    }
    eprintln!(
        "imported {} events in {appends} appends, {} idempotency records ({} left without events), {} checkpoints verified",
        events.len(),
        read.idempotency.len() - records.len(),
        records.len(),
        read.checkpoints.len()
    );
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::audit::EXIT_FINDINGS)
    })
}
