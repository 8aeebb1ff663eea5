//! `dealreg apply FILE.jsonl`: applies commands from a file, one JSON command a line, and
//! prints one JSON reply a line, in order.
//!
//! Why it never stops on a bad line: a file from another system will contain mistakes; each
//! gets a structured error line (with its line number) and the rest still applies.
//!
//! Why store failures are counted apart and change the exit code: a line the store could
//! not write (full disk, read-only file) is not the input's fault, and a run that wrote
//! none of them must not look complete to a script ([`EXIT_STORE_FAILED`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dealreg_clock::Clock;
use dealreg_domain::Policy;
use dealreg_engine::envelope::MAX_COMMAND_BYTES;
use dealreg_engine::{Engine, RefusalBody, ReplyLine};
use dealreg_events::EventStore;
use dealreg_host::reactor;
use dealreg_host::tail::LogTail;

/// How often the reactor looks for appends by other processes.
const REACTOR_POLL: Duration = Duration::from_millis(500);

/// Exit code of a run in which the store failed to write at least one command: the run
/// did not complete, and those lines can be applied again (with their idempotency keys).
pub const EXIT_STORE_FAILED: u8 = 3;

/// Engine error codes that mean the store failed, not the input.
const STORE_FAILURE_CODES: [&str; 2] = ["store_failed", "store_unavailable"];

/// Refusals of a readable command by a rule of the engine, counted with the decisions
/// the domain rejected: a command dated before the log (time never runs backwards), an
/// idempotency key reused for another command, no approval policy configured.
const RULE_REFUSAL_CODES: [&str; 3] = ["time_before_log", "idempotency_key_reused", "no_policy"];

/// `dealreg apply FILE [--policy P] [--at T]`.
pub async fn run(
    spec: &super::store::StoreSpec,
    file: &Path,
    policy: Option<PathBuf>,
    at: Option<DateTime<Utc>>,
    state_cache_bytes: usize,
) -> Result<ExitCode, String> {
    let policy = match policy {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read policy {}: {e}", path.display()))?;
            Some(Policy::from_toml(&text).map_err(|e| format!("policy {}: {e}", path.display()))?)
        }
        None => None,
    };
    let (store, checkpoints) = super::store::create_or_open(spec).await?;
    let engine = Arc::new(
        Engine::open(store, super::store::clock(at), policy)
            .await
            .map_err(|e| e.to_string())?
            .with_cache_limit(state_cache_bytes)
            .with_vault(super::store::vault(spec, dealreg_vault::KeyMaterial::Random).await?),
    );
    // Follow-ups (an offboarded partner's releases) run beside the commands, off each
    // command's path; the reactor first finishes whatever a crashed run left.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let (engine, checkpoints) = (Arc::clone(&engine), checkpoints.clone());
        tokio::spawn(async move {
            // The reactor is the only reader here: it keeps no decoded events.
            let tail = LogTail::keeping(engine.store().clone(), 0).await?;
            reactor::follow(&*engine, &checkpoints, &tail, REACTOR_POLL, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let summary = if file.as_os_str() == "-" {
        apply(&engine, std::io::stdin().lock(), &mut out).await
    } else {
        let input = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        apply(&engine, BufReader::new(input), &mut out).await
    }
    .map_err(|e| format!("apply stopped on an I/O error: {e}"))?;
    let _ = stop.send(());
    // The summary is printed whatever the reactor does, so a failing store never hides
    // what the run did.
    let follow_ups = match follower.await {
        Ok(Ok(_)) => reactor::catch_up(&*engine, &checkpoints)
            .await
            .map(|_| ())
            .map_err(|e| format!("the follow-up reactor stopped: {e}")),
        Ok(Err(e)) => Err(format!("the follow-up reactor stopped: {e}")),
        Err(e) => Err(format!("the follow-up reactor failed: {e}")),
    };
    // The SQLite writer's figures: how many durable commits covered the acknowledgements.
    let writer = match engine.store().sqlite() {
        Some(sqlite) => {
            let w = sqlite.stats();
            format!(
                " ({} durable commits for {} acknowledged appends, {} acknowledged by a commit)",
                w.commits, w.acknowledged, w.acknowledged_by_commit
            )
        }
        None => String::new(),
    };
    eprintln!(
        "{} lines: {} applied, {} rejected by the rules, {} refused as unreadable, {} failed in the engine, {} not written (store failed), {} replayed; store {}{writer}",
        summary.lines,
        summary.applied,
        summary.rejected,
        summary.refused,
        summary.failed,
        summary.store_failed,
        summary.replayed,
        spec,
    );
    let (cached_bytes, cached_streams) = engine.cache_size();
    tracing::info!(
        cached_streams,
        cached_mib = cached_bytes >> 20,
        "state cache at the end of the run"
    );
    if summary.store_failed > 0 {
        if let Err(e) = follow_ups {
            eprintln!("error: {e}");
        }
        eprintln!(
            "error: the store could not write {} of {} lines; the run did not complete: free space or fix the store, then apply the file again (lines with idempotency keys apply once)",
            summary.store_failed, summary.lines
        );
        return Ok(ExitCode::from(EXIT_STORE_FAILED));
    }
    follow_ups?;
    Ok(ExitCode::SUCCESS)
}

/// Counts of what happened to the lines of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplySummary {
    pub lines: usize,
    pub applied: usize,
    /// Decisions the domain rejected, and readable commands an engine rule refused
    /// ([`RULE_REFUSAL_CODES`]).
    pub rejected: usize,
    /// Lines that are not a readable command (the envelope's input errors).
    pub refused: usize,
    /// Readable commands the engine could not complete (contention that outlasted its
    /// retries, an event it cannot read, an internal failure): retry them.
    pub failed: usize,
    /// Lines the store could not write (the engine answered `store_failed` or
    /// `store_unavailable`).
    pub store_failed: usize,
    pub replayed: usize,
}

/// Reads commands from `input` and writes one reply line per non-blank input line.
pub async fn apply<S, C, R, W>(
    engine: &Engine<S, C>,
    mut input: R,
    output: &mut W,
) -> std::io::Result<ApplySummary>
where
    S: EventStore + Clone,
    C: Clock,
    R: BufRead,
    W: Write,
{
    let mut summary = ApplySummary::default();
    let mut line_number = 0usize;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let (read, overflow) = read_bounded_line(&mut input, &mut buffer, MAX_COMMAND_BYTES)?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let trimmed = trim_ascii(&buffer);
        if trimmed.is_empty() && !overflow {
            continue;
        }
        summary.lines += 1;
        let mut line = if overflow {
            ReplyLine::Refused {
                ok: false,
                error: RefusalBody {
                    code: "payload_too_large".into(),
                    message: format!(
                        "line {line_number} is longer than {MAX_COMMAND_BYTES} bytes; split it or move large evidence elsewhere"
                    ),
                    details: serde_json::Value::Null,
                },
            }
        } else {
            engine.execute_line(trimmed).await
        };
        match &mut line {
            ReplyLine::Executed { replayed, .. } | ReplyLine::Partner { replayed, .. } => {
                if *replayed {
                    summary.replayed += 1;
                }
            }
            ReplyLine::Refused { .. } => {}
        }
        match &mut line {
            ReplyLine::Executed { .. } | ReplyLine::Partner { .. } => {
                if line.ok() {
                    summary.applied += 1;
                } else {
                    summary.rejected += 1;
                }
            }
            ReplyLine::Refused { error, .. } => {
                let code = error.code.as_str();
                if STORE_FAILURE_CODES.contains(&code) {
                    summary.store_failed += 1;
                } else if RULE_REFUSAL_CODES.contains(&code) {
                    summary.rejected += 1;
                } else if dealreg_engine::InputErrorCode::is_input_code(code) {
                    summary.refused += 1;
                } else {
                    summary.failed += 1;
                }
                if error.details.is_null() {
                    error.details = serde_json::json!({ "input_line": line_number });
                } else if let Some(map) = error.details.as_object_mut() {
                    map.insert("input_line".into(), serde_json::json!(line_number));
                }
            }
        }
        serde_json::to_writer(&mut *output, &line)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(summary)
}

/// Reads one line into `buffer`, keeping at most `limit + 1` bytes of it so a huge line
/// cannot exhaust memory. Returns the bytes consumed and whether the line was too long.
fn read_bounded_line<R: BufRead>(
    input: &mut R,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0usize;
    let mut overflow = false;
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, overflow));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let take = chunk.len();
        if !overflow {
            let room = (limit + 1).saturating_sub(buffer.len());
            buffer.extend_from_slice(&chunk[..take.min(room)]);
            if buffer.len() > limit
                && !(done && buffer.len() == limit + 1 && buffer.last() == Some(&b'\n'))
            {
                overflow = true;
            }
        }
        consumed += take;
        input.consume(take);
        if done {
            return Ok((consumed, overflow));
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reader_flags_long_lines_and_keeps_reading() {
        let text = b"short\n0123456789abcdef\nnext\n";
        let mut input = &text[..];
        let mut buffer = Vec::new();
        assert_eq!(
            read_bounded_line(&mut input, &mut buffer, 8).unwrap(),
            (6, false)
        );
        assert_eq!(buffer, b"short\n");
        buffer.clear();
        let (consumed, overflow) = read_bounded_line(&mut input, &mut buffer, 8).unwrap();
        assert_eq!((consumed, overflow), (17, true));
        buffer.clear();
        assert_eq!(
            read_bounded_line(&mut input, &mut buffer, 8).unwrap(),
            (5, false)
        );
        assert_eq!(buffer, b"next\n");
        buffer.clear();
        assert_eq!(
            read_bounded_line(&mut input, &mut buffer, 8).unwrap(),
            (0, false)
        );
    }
}
