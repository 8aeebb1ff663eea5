//! What the SQLite file keeps beside its events, held against the log an auditor walked
//! ([`dealreg_events::audit::verify`]): the stream tips the writer checks expectations
//! against, and the highest position it assigned.
//!
//! Why they matter: a tip ahead of its stream makes every command on the account contend;
//! a tip behind it, or a log that ends before the highest position assigned, is the trace
//! of events deleted from the file; an event beyond that position was written outside the
//! engine. The backend-neutral walk cannot see any of this, since the records are this
//! backend's own.
//!
//! Everything here reads the file read-only and writes nothing.

use std::collections::HashSet;
use std::path::Path;

use dealreg_events::audit::{Damage, Finding, Report};
use dealreg_events::Position;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// Why the records could not be read (not what is wrong in them: that is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {reason}; check the path, and that it is a dealreg store")]
pub struct RecordsError {
    path: String,
    reason: String,
}

/// Opens `path` read-only: a copy an auditor made read-only opens too.
fn read_only(path: &Path) -> Result<Connection, RecordsError> {
    let unreadable = |e: rusqlite::Error| RecordsError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if !path.exists() {
        return Err(RecordsError {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let plain = Connection::open_with_flags(path, flags).and_then(|c| {
        c.query_row("SELECT count(*) FROM events", [], |_| Ok(()))
            .map(|()| c)
    });
    let conn = match plain {
        Ok(conn) => conn,
        // A WAL file on a read-only copy without its -shm cannot be opened as usual; as
        // immutable it can (nothing else writes a copy an auditor holds).
        Err(_) => {
            let conn = Connection::open_with_flags(crate::open::immutable_uri(path), flags)
                .map_err(unreadable)?;
            conn.query_row("SELECT count(*) FROM events", [], |_| Ok(()))
                .map_err(unreadable)?;
            conn
        }
    };
    crate::open::stable_plans(&conn).map_err(unreadable)?;
    Ok(conn)
}

/// The file's records against what the walk in `report` found.
pub fn records(path: &Path, report: &Report) -> Result<Vec<Finding>, RecordsError> {
    let conn = read_only(path)?;
    let unreadable = |e: rusqlite::Error| RecordsError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut findings = Vec::new();
    let last_position = report.head_position.commit();

    // The stream tips.
    let tips: Vec<(String, i64, String)> = conn
        .prepare("SELECT stream, last_revision, last_hash FROM streams ORDER BY stream")
        .and_then(|mut q| {
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(unreadable)?;
    let mut tipped = HashSet::new();
    for (stream, tip_revision, tip_hash) in &tips {
        tipped.insert(stream.clone());
        let tip_revision = *tip_revision as u64;
        let base = |damage, detail: String| Finding {
            stream: Some(stream.clone()),
            revision: Some(tip_revision),
            ..Finding::of(damage, detail)
        };
        match report.tips.get(stream) {
            None => findings.push(base(
                Damage::Removed,
                format!("the stream's tip says revision {tip_revision}, and the log has no event of it: the stream was deleted"),
            )),
            Some(seen) if seen.revision < tip_revision => findings.push(base(
                Damage::Truncated,
                format!("the stream's tip says revision {tip_revision}, its last event in the log is revision {}: its last events were removed, or the tip was raised (every command on it would now fail with `contention`)", seen.revision),
            )),
            Some(seen) if seen.revision > tip_revision => findings.push(base(
                Damage::Records,
                format!("the stream's tip says revision {tip_revision}, the log has revision {}: the tip table was edited", seen.revision),
            )),
            Some(seen) if seen.hash != *tip_hash => findings.push(base(
                Damage::Records,
                "the stream's tip names another hash than its last event's: the tip table was edited".into(),
            )),
            _ => {}
        }
    }
    for stream in report.tips.keys().filter(|s| !tipped.contains(*s)) {
        findings.push(Finding {
            stream: Some(stream.clone()),
            ..Finding::of(
                Damage::Records,
                "the stream has events and no tip: the tip table was edited".into(),
            )
        });
    }

    // The highest position ever assigned.
    let head: Option<i64> = conn
        .query_row("SELECT position FROM log_head WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(unreadable)?;
    let sequence: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .unwrap_or(None);
    let assigned = head
        .map(|p| p as u64)
        .into_iter()
        .chain(sequence.map(|s| s as u64))
        .max()
        .unwrap_or(0);
    if assigned > last_position {
        findings.push(Finding {
            position: Some(Position::at(last_position + 1)),
            ..Finding::of(
                Damage::Truncated,
                format!("positions up to {assigned} were assigned and the log ends at {last_position}: its tail was removed"),
            )
        });
    }
    match head {
        None if report.events > 0 => findings.push(Finding::of(
            Damage::Records,
            "the log head record is missing".into(),
        )),
        Some(head) => {
            // Events beyond the highest position the writer assigned: it never wrote them.
            let beyond: Vec<(i64, String, i64)> = conn
                .prepare(
                    "SELECT position, stream, revision FROM events WHERE position > ?1 ORDER BY position",
                )
                .and_then(|mut q| {
                    q.query_map(params![head], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(unreadable)?;
            for (position, stream, revision) in beyond {
                findings.push(Finding {
                    damage: Damage::Inserted,
                    stream: Some(stream),
                    revision: Some(revision as u64),
                    position: Some(Position::at(position as u64)),
                    checkpoint: None,
                    detail: format!(
                        "the writer assigned positions up to {head} only: this event was written outside the engine"
                    ),
                });
            }
        }
        None => {}
    }
    Ok(findings)
}
