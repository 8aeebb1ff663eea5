//! The auditor's check of a store file: every chain, every record the store keeps beside
//! the events, and signed checkpoints kept outside the file.
//!
//! Why all three: a stream's hash chain shows an edited event, but not a stream whose last
//! event was deleted, events moved between positions, or a cut global tail; the log chain
//! (every event commits to the one before it in global order, position included) shows
//! those. Neither shows a file regenerated with fresh, consistent chains: only a log hash
//! signed earlier with a key the store never held can. And the records beside the events
//! (stream tips, the highest position assigned, idempotency keys) must agree with them,
//! or the engine misbehaves on a file that "verifies": a tip ahead of its stream makes
//! every command on the account contend, a dropped idempotency key pays a retry twice.
//!
//! Everything here reads the file read-only and writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use dealreg_events::chain::{event_hash, log_hash, GENESIS_HASH};
use dealreg_events::hex::{decode as unhex, encode as hex};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

/// What went wrong reading the file (not what is wrong in it: that is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read {path}: {reason}; check the path, and that it is a dealreg store")]
    Unreadable { path: String, reason: String },
    #[error("a signing key must be 32 bytes as 64 hex digits: {0}")]
    BadKey(String),
}

/// A log hash at a position, signed with a key kept outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub position: u64,
    pub log_hash: String,
    pub signed_at: DateTime<Utc>,
    /// The verifying key, hex.
    pub public_key: String,
    /// Ed25519 over [`SignedCheckpoint::message`], hex.
    pub signature: String,
}

impl SignedCheckpoint {
    /// The bytes signed: versioned, one field a line.
    pub fn message(position: u64, log_hash: &str, signed_at: &DateTime<Utc>) -> Vec<u8> {
        format!(
            "dealreg-checkpoint-v1\n{position}\n{log_hash}\n{}",
            signed_at.to_rfc3339()
        )
        .into_bytes()
    }
}

/// A signing key from its 64 hex digits.
pub fn signing_key(hex_seed: &str) -> Result<SigningKey, AuditError> {
    let bytes: [u8; 32] = unhex(hex_seed)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditError::BadKey("not 64 hex digits".into()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A verifying key from its 64 hex digits.
pub fn verifying_key(hex_key: &str) -> Result<VerifyingKey, AuditError> {
    let bytes: [u8; 32] = unhex(hex_key)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditError::BadKey("not 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| AuditError::BadKey(e.to_string()))
}

/// The hex of a key's public half.
pub fn public_hex(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

/// Opens `path` read-only: a copy an auditor made read-only opens too.
fn read_only(path: &Path) -> Result<Connection, AuditError> {
    let unreadable = |e: rusqlite::Error| AuditError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if !path.exists() {
        return Err(AuditError::Unreadable {
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
            let uri = format!("file:{}?immutable=1", path.display());
            let conn = Connection::open_with_flags(uri, flags).map_err(unreadable)?;
            conn.query_row("SELECT count(*) FROM events", [], |_| Ok(()))
                .map_err(unreadable)?;
            conn
        }
    };
    crate::open::stable_plans(&conn).map_err(unreadable)?;
    Ok(conn)
}

/// Signs the log's head now: its position and log hash.
pub fn sign_head(
    path: &Path,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> Result<SignedCheckpoint, AuditError> {
    let conn = read_only(path)?;
    let (position, log): (i64, String) = conn
        .query_row(
            "SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| AuditError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .unwrap_or((0, GENESIS_HASH.to_string()));
    let position = position as u64;
    let signature = key.sign(&SignedCheckpoint::message(position, &log, &now));
    Ok(SignedCheckpoint {
        position,
        log_hash: log,
        signed_at: now,
        public_key: public_hex(key),
        signature: hex(&signature.to_bytes()),
    })
}

/// What kind of damage a finding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// Stored bytes differ from what their hash committed to.
    Altered,
    /// An event the chains never committed to.
    Inserted,
    /// Events missing: positions or revisions skipped, a stream gone.
    Removed,
    /// Events at other positions than the log committed them to.
    Reordered,
    /// The end cut off: of the log, or of a stream.
    Truncated,
    /// The log differs from a signed checkpoint: rewritten after it was signed.
    Rewritten,
    /// A record beside the events (tips, head, idempotency keys) disagrees with them.
    Records,
    /// A checkpoint whose signature does not verify, or signed by another key.
    Signature,
}

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub damage: Damage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Which checkpoint (1-based, in the file's order), for `rewritten` and `signature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<usize>,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let damage = serde_json::to_value(self.damage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{damage}")?;
        if let Some(n) = self.checkpoint {
            write!(f, " (checkpoint {n})")?;
        }
        if let Some(stream) = &self.stream {
            write!(f, " stream {stream}")?;
        }
        if let Some(revision) = self.revision {
            write!(f, " revision {revision}")?;
        }
        if let Some(position) = self.position {
            write!(f, " position {position}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub events: u64,
    pub streams: usize,
    pub head_position: u64,
    pub head_log_hash: String,
    pub checkpoints: usize,
    pub findings: Vec<Finding>,
}

fn finding(damage: Damage, detail: String) -> Finding {
    Finding {
        damage,
        stream: None,
        revision: None,
        position: None,
        checkpoint: None,
        detail,
    }
}

struct Seen {
    revision: u64,
    hash: String,
}

/// Checks the store at `path`: both chains over every event, the stream tips, the highest
/// position assigned, every idempotency key an event's metadata names (`record_key` turns
/// an event's metadata into the key its record is stored under, or `None`), and every
/// checkpoint (signed by `pinned` when given, else by the key it names).
pub fn verify(
    path: &Path,
    checkpoints: &[SignedCheckpoint],
    pinned: Option<&VerifyingKey>,
    record_key: &dyn Fn(&[u8]) -> Option<String>,
) -> Result<Report, AuditError> {
    let conn = read_only(path)?;
    let unreadable = |e: rusqlite::Error| AuditError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut findings = Vec::new();
    let wanted: HashSet<u64> = checkpoints.iter().map(|c| c.position).collect();
    let mut log_at: HashMap<u64, String> = HashMap::new();
    let mut streams: BTreeMap<String, Seen> = BTreeMap::new();
    let mut keys: Vec<(String, u64)> = Vec::new();
    let mut last_position = 0u64;
    let mut prev_log = GENESIS_HASH.to_string();
    let mut events = 0u64;
    let mut query = conn
        .prepare(
            "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash, log_hash
             FROM events ORDER BY position",
        )
        .map_err(unreadable)?;
    let mut rows = query.query([]).map_err(unreadable)?;
    while let Some(row) = rows.next().map_err(unreadable)? {
        let position: i64 = row.get(0).map_err(unreadable)?;
        let position = position as u64;
        let stream: String = row.get(1).map_err(unreadable)?;
        let revision = row.get::<_, i64>(2).map_err(unreadable)? as u64;
        let event_id: String = row.get(3).map_err(unreadable)?;
        let event_type: String = row.get(4).map_err(unreadable)?;
        let data: Vec<u8> = row.get(5).map_err(unreadable)?;
        let metadata: Vec<u8> = row.get(6).map_err(unreadable)?;
        let prev_hash: String = row.get(7).map_err(unreadable)?;
        let hash: String = row.get(8).map_err(unreadable)?;
        let stored_log: String = row.get(9).map_err(unreadable)?;
        events += 1;
        let at = |damage, detail: String| Finding {
            damage,
            stream: Some(stream.clone()),
            revision: Some(revision),
            position: Some(position),
            checkpoint: None,
            detail,
        };
        if position > last_position + 1 {
            findings.push(Finding {
                position: Some(last_position + 1),
                ..finding(
                    Damage::Removed,
                    format!(
                        "positions {}..={} are missing from the log",
                        last_position + 1,
                        position - 1
                    ),
                )
            });
        }
        // The stream's chain.
        let recomputed = uuid::Uuid::parse_str(&event_id).ok().map(|id| {
            event_hash(
                &prev_hash,
                &stream,
                revision,
                &id,
                &event_type,
                &data,
                &metadata,
            )
        });
        if recomputed.as_deref() != Some(hash.as_str()) {
            findings.push(at(
                Damage::Altered,
                "the stored bytes differ from the event's hash: the event was edited".into(),
            ));
        }
        match streams.get(&stream) {
            None if revision != 0 => findings.push(at(
                Damage::Removed,
                format!("the stream starts at revision {revision}: its first events are missing"),
            )),
            None if prev_hash != GENESIS_HASH => findings.push(at(
                Damage::Inserted,
                "the stream's first event does not chain from the genesis hash".into(),
            )),
            Some(seen) if revision <= seen.revision => findings.push(at(
                Damage::Reordered,
                format!(
                    "revision {revision} comes after revision {} in the log",
                    seen.revision
                ),
            )),
            Some(seen) if revision > seen.revision + 1 => findings.push(at(
                Damage::Removed,
                format!(
                    "revisions {}..={} of the stream are missing",
                    seen.revision + 1,
                    revision - 1
                ),
            )),
            Some(seen) if prev_hash != seen.hash => findings.push(at(
                Damage::Inserted,
                "the event does not chain from the stream's previous event".into(),
            )),
            _ => {}
        }
        streams.insert(
            stream.clone(),
            Seen {
                revision,
                hash: hash.clone(),
            },
        );
        // The log's chain, position included.
        let expected_log = log_hash(&prev_log, position, &hash);
        if stored_log != expected_log {
            let detail = if stored_log.is_empty() {
                "the event carries no log hash: it was written outside the engine".to_string()
            } else {
                "the log's chain breaks here: this is not the event the log committed to at this position (moved, swapped, inserted or edited)".to_string()
            };
            let damage = if stored_log.is_empty() {
                Damage::Inserted
            } else {
                Damage::Reordered
            };
            findings.push(at(damage, detail));
        }
        prev_log = stored_log.clone();
        if wanted.contains(&position) {
            log_at.insert(position, stored_log);
        }
        if let Some(key) = record_key(&metadata) {
            keys.push((key, position));
        }
        last_position = position;
    }
    drop(rows);
    drop(query);

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
            damage,
            stream: Some(stream.clone()),
            revision: Some(tip_revision),
            position: None,
            checkpoint: None,
            detail,
        };
        match streams.get(stream) {
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
    for stream in streams.keys().filter(|s| !tipped.contains(*s)) {
        findings.push(Finding {
            stream: Some(stream.clone()),
            ..finding(
                Damage::Records,
                "the stream has events and no tip: the tip table was edited".into(),
            )
        });
    }

    // The highest position ever assigned.
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT position, log_hash FROM log_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
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
        .as_ref()
        .map(|(p, _)| *p as u64)
        .into_iter()
        .chain(sequence.map(|s| s as u64))
        .max()
        .unwrap_or(0);
    if assigned > last_position {
        findings.push(Finding {
            position: Some(last_position + 1),
            ..finding(
                Damage::Truncated,
                format!("positions up to {assigned} were assigned and the log ends at {last_position}: its tail was removed"),
            )
        });
    } else if let Some((p, h)) = &head {
        if *p as u64 == last_position && *h != prev_log {
            findings.push(Finding {
                position: Some(last_position),
                ..finding(
                    Damage::Records,
                    "the log head's hash is not the last event's: the head record was edited"
                        .into(),
                )
            });
        }
    } else if events > 0 {
        findings.push(finding(
            Damage::Records,
            "the log head record is missing".into(),
        ));
    }

    // Idempotency keys the events name.
    let mut lookup = conn
        .prepare("SELECT 1 FROM idempotency WHERE key = ?1")
        .map_err(unreadable)?;
    let mut reported = HashSet::new();
    for (key, position) in &keys {
        let present = lookup.exists(params![key]).map_err(unreadable)?;
        if !present && reported.insert(key.clone()) {
            findings.push(Finding {
                position: Some(*position),
                ..finding(
                    Damage::Records,
                    format!("the idempotency key `{key}` of the command that wrote this event has no record: a retry of that command would apply it again"),
                )
            });
        }
    }

    // Signed checkpoints.
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        let number = index + 1;
        let named = |damage, detail: String| Finding {
            damage,
            stream: None,
            revision: None,
            position: Some(checkpoint.position),
            checkpoint: Some(number),
            detail,
        };
        let key = match verifying_key(&checkpoint.public_key) {
            Ok(key) => key,
            Err(e) => {
                findings.push(named(
                    Damage::Signature,
                    format!("the checkpoint's key cannot be read: {e}"),
                ));
                continue;
            }
        };
        if pinned.is_some_and(|p| *p != key) {
            findings.push(named(
                Damage::Signature,
                "the checkpoint is signed by another key than the one given".into(),
            ));
            continue;
        }
        let signature = unhex(&checkpoint.signature)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        let message = SignedCheckpoint::message(
            checkpoint.position,
            &checkpoint.log_hash,
            &checkpoint.signed_at,
        );
        if signature.is_none_or(|s| key.verify(&message, &s).is_err()) {
            findings.push(named(
                Damage::Signature,
                "the signature does not verify: the checkpoint was altered".into(),
            ));
            continue;
        }
        if checkpoint.position > last_position {
            findings.push(named(
                Damage::Truncated,
                format!(
                    "the checkpoint signed position {}, the log ends at {last_position}",
                    checkpoint.position
                ),
            ));
        } else if checkpoint.position > 0 {
            match log_at.get(&checkpoint.position) {
                Some(hash) if *hash == checkpoint.log_hash => {}
                Some(_) => findings.push(named(
                    Damage::Rewritten,
                    format!("the log's hash at position {} is not the one signed on {}: the log was rewritten after this checkpoint", checkpoint.position, checkpoint.signed_at.to_rfc3339()),
                )),
                None => findings.push(named(
                    Damage::Removed,
                    format!("the event at the signed position {} is missing", checkpoint.position),
                )),
            }
        }
    }
    Ok(Report {
        events,
        streams: streams.len(),
        head_position: last_position,
        head_log_hash: prev_log,
        checkpoints: checkpoints.len(),
        findings,
    })
}

/// One line of a portable log (`dealreg export`): JSON lines, in this order: a header,
/// every event in position order, every idempotency record, the signed checkpoints, and
/// an end line that counts what came before (a cut file is refused).
///
/// Why `data` and `metadata` are strings: they are the exact bytes the hashes cover; a
/// JSON value would be written back with other spacing or key order, and every hash after
/// it would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    Header {
        format: u32,
        exported_at: DateTime<Utc>,
    },
    Event {
        position: u64,
        stream: String,
        revision: u64,
        event_id: String,
        event_type: String,
        data: String,
        metadata: String,
        prev_hash: String,
        hash: String,
        log_hash: String,
    },
    Idempotency {
        key: String,
        fingerprint: String,
        outcome: String,
    },
    Checkpoint(SignedCheckpoint),
    End {
        events: u64,
        idempotency: u64,
        checkpoints: u64,
        log_hash: String,
    },
}

/// The format this build writes and reads.
pub const EXPORT_FORMAT: u32 = 1;

/// Writes the store at `path` as a portable log to `out`, with `checkpoints`; returns the
/// number of events. Reads the file read-only.
pub fn export(
    path: &Path,
    checkpoints: &[SignedCheckpoint],
    now: DateTime<Utc>,
    out: &mut dyn std::io::Write,
) -> Result<u64, AuditError> {
    let conn = read_only(path)?;
    let unreadable = |e: rusqlite::Error| AuditError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let written = |e: std::io::Error| AuditError::Unreadable {
        path: "the export".into(),
        reason: format!("cannot be written: {e}"),
    };
    let mut line = |value: &ExportLine| -> Result<(), AuditError> {
        let text = serde_json::to_string(value).map_err(|e| AuditError::Unreadable {
            path: "the export".into(),
            reason: e.to_string(),
        })?;
        writeln!(out, "{text}").map_err(written)
    };
    line(&ExportLine::Header {
        format: EXPORT_FORMAT,
        exported_at: now,
    })?;
    let mut events = 0u64;
    let mut last_log = GENESIS_HASH.to_string();
    {
        let mut query = conn
            .prepare(
                "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash, log_hash
                 FROM events ORDER BY position",
            )
            .map_err(unreadable)?;
        let mut rows = query.query([]).map_err(unreadable)?;
        while let Some(row) = rows.next().map_err(unreadable)? {
            let text = |i: usize| -> Result<String, AuditError> {
                let bytes: Vec<u8> = row.get(i).map_err(unreadable)?;
                String::from_utf8(bytes).map_err(|e| AuditError::Unreadable {
                    path: path.display().to_string(),
                    reason: format!("an event's bytes are not UTF-8: {e}"),
                })
            };
            let log_hash: String = row.get(9).map_err(unreadable)?;
            last_log = log_hash.clone();
            line(&ExportLine::Event {
                position: row.get::<_, i64>(0).map_err(unreadable)? as u64,
                stream: row.get(1).map_err(unreadable)?,
                revision: row.get::<_, i64>(2).map_err(unreadable)? as u64,
                event_id: row.get(3).map_err(unreadable)?,
                event_type: row.get(4).map_err(unreadable)?,
                data: text(5)?,
                metadata: text(6)?,
                prev_hash: row.get(7).map_err(unreadable)?,
                hash: row.get(8).map_err(unreadable)?,
                log_hash,
            })?;
            events += 1;
        }
    }
    let records: Vec<(String, String, String)> = conn
        .prepare("SELECT key, fingerprint, outcome FROM idempotency ORDER BY key")
        .and_then(|mut q| {
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(unreadable)?;
    for (key, fingerprint, outcome) in &records {
        line(&ExportLine::Idempotency {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            outcome: outcome.clone(),
        })?;
    }
    for checkpoint in checkpoints {
        line(&ExportLine::Checkpoint(checkpoint.clone()))?;
    }
    line(&ExportLine::End {
        events,
        idempotency: records.len() as u64,
        checkpoints: checkpoints.len() as u64,
        log_hash: last_log,
    })?;
    out.flush().map_err(written)?;
    Ok(events)
}

/// A portable log read back and checked: every line parsed, both chains recomputed, the
/// end line's counts matched. The first line that is wrong is named (1-based).
#[derive(Debug, Default)]
pub struct ReadExport {
    pub events: Vec<ExportLine>,
    pub idempotency: Vec<(String, String, String)>,
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// Reads and checks a portable log; `Err` names the first bad line and what is wrong.
pub fn read_export(text: &str) -> Result<ReadExport, String> {
    let mut read = ReadExport::default();
    let mut streams: HashMap<String, (u64, String)> = HashMap::new();
    let mut log = GENESIS_HASH.to_string();
    let mut position = 0u64;
    let mut header = false;
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
        match &line {
            ExportLine::Header { format, .. } => {
                if header || n != 1 {
                    return Err(bad("a header that is not the first line".into()));
                }
                if *format != EXPORT_FORMAT {
                    return Err(bad(format!(
                        "format {format}; this build reads format {EXPORT_FORMAT}"
                    )));
                }
                header = true;
            }
            _ if !header => return Err(bad("the first line is not the export's header".into())),
            ExportLine::Event {
                position: p,
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
                if !read.idempotency.is_empty() || !read.checkpoints.is_empty() {
                    return Err(bad("an event after the idempotency records".into()));
                }
                if *p != position + 1 {
                    return Err(bad(format!("position {p} follows position {position}")));
                }
                let (expected_revision, expected_prev) = streams
                    .get(stream)
                    .map(|(r, h)| (r + 1, h.clone()))
                    .unwrap_or((0, GENESIS_HASH.to_string()));
                if *revision != expected_revision || *prev_hash != expected_prev {
                    return Err(bad(format!(
                        "revision {revision} of `{stream}` does not follow its stream"
                    )));
                }
                let id =
                    uuid::Uuid::parse_str(event_id).map_err(|e| bad(format!("event id: {e}")))?;
                let recomputed = event_hash(
                    prev_hash,
                    stream,
                    *revision,
                    &id,
                    event_type,
                    data.as_bytes(),
                    metadata.as_bytes(),
                );
                if recomputed != *hash {
                    return Err(bad(format!(
                        "the event at position {p} does not match its hash: it was changed"
                    )));
                }
                let next_log = log_hash(&log, *p, hash);
                if next_log != *stored_log {
                    return Err(bad(format!("the log chain breaks at position {p}")));
                }
                log = next_log;
                position = *p;
                streams.insert(stream.clone(), (*revision, hash.clone()));
                read.events.push(line);
            }
            ExportLine::Idempotency {
                key,
                fingerprint,
                outcome,
            } => {
                if !read.checkpoints.is_empty() {
                    return Err(bad("an idempotency record after the checkpoints".into()));
                }
                read.idempotency
                    .push((key.clone(), fingerprint.clone(), outcome.clone()));
            }
            ExportLine::Checkpoint(checkpoint) => read.checkpoints.push(checkpoint.clone()),
            ExportLine::End {
                events,
                idempotency,
                checkpoints,
                log_hash: end_log,
            } => {
                if *events != read.events.len() as u64
                    || *idempotency != read.idempotency.len() as u64
                    || *checkpoints != read.checkpoints.len() as u64
                {
                    return Err(bad(format!(
                        "the end line counts {events} events, {idempotency} records and {checkpoints} checkpoints; the file has {}, {} and {}",
                        read.events.len(),
                        read.idempotency.len(),
                        read.checkpoints.len()
                    )));
                }
                if *end_log != log {
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
    Ok(read)
}
