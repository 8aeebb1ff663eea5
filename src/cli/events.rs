//! `dealreg events`: prints the log as JSON lines, in global order, for auditors and tools.

use std::io::Write;
use std::process::ExitCode;

use dealreg_engine::{decode_event, personal};
use dealreg_events::{LogPages, Position, RecordedEvent};
use serde::Serialize;

/// One printed line: the stored event with its payload and metadata as JSON, not bytes.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    position: Position,
    stream: &'a str,
    revision: u64,
    event_id: String,
    event_type: &'a str,
    event: serde_json::Value,
    metadata: serde_json::Value,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> EventLine<'a> {
    fn new(recorded: &'a RecordedEvent) -> Self {
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

/// `dealreg events [--after POS] [--stream S] [--reveal]`.
pub async fn run(
    spec: &super::store::StoreSpec,
    after: u64,
    stream: Option<String>,
    reveal: bool,
) -> Result<ExitCode, String> {
    let store = super::store::open_read(spec).await?;
    let vault = if reveal {
        super::store::read_vault(spec).await
    } else {
        None
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut pages = LogPages::new(&store, Position::at(after))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for recorded in &page {
            if stream.as_deref().is_some_and(|s| s != recorded.stream) {
                continue;
            }
            let mut line = EventLine::new(recorded);
            if reveal && recorded.event_type == "registration_submitted" {
                // Decoded (older schemas upcast), the contact opened where a key exists.
                let mut event = decode_event(recorded).map_err(|e| e.to_string())?;
                if let Some(vault) = &vault {
                    personal::reveal(&mut event, vault.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                line.event = serde_json::to_value(&event).map_err(|e| e.to_string())?;
            }
            serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
