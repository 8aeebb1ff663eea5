//! What a CRM adapter remembers between runs, in a SQLite file of its own: how far it has
//! read the view changes (per adapter), what it last wrote to each CRM record (a digest,
//! so a change sent again after a restart is not written twice), the dead-letter list, and
//! the inbound errors an operator must see.
//!
//! Why its own file: the CRM side is an independent consumer of the views; losing this
//! file costs one full re-push (idempotent upserts by external id), never a duplicate
//! record.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the CRM state file {path} cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the CRM state file cannot be written or read: {0}; nothing more is sent until it can"
    )]
    Sqlite(#[from] rusqlite::Error),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cursor (
    adapter  TEXT PRIMARY KEY,
    position TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record (
    target      TEXT NOT NULL,
    object      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    mapping     TEXT NOT NULL,
    crm_id      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    PRIMARY KEY (target, object, external_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_by_crm_id ON record (target, object, crm_id);
CREATE TABLE IF NOT EXISTS dead_letter (
    target            TEXT NOT NULL,
    object            TEXT NOT NULL,
    external_id       TEXT NOT NULL,
    external_id_field TEXT NOT NULL,
    mapping           TEXT NOT NULL,
    fields            TEXT NOT NULL,
    code              TEXT NOT NULL,
    message           TEXT NOT NULL,
    attempts          INTEGER NOT NULL,
    at                TEXT NOT NULL,
    PRIMARY KEY (target, object, external_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS polled (
    source TEXT NOT NULL,
    id     TEXT NOT NULL,
    stamp  TEXT NOT NULL,
    facts  TEXT,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound_event (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    source   TEXT NOT NULL,
    at       TEXT NOT NULL,
    event    TEXT NOT NULL,
    done     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbound_event_pending ON inbound_event (source, done, id);
CREATE TABLE IF NOT EXISTS inbound_error (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    at     TEXT NOT NULL,
    code   TEXT NOT NULL,
    error  TEXT NOT NULL,
    body   TEXT NOT NULL
);
";

/// A record the adapter wrote: the CRM's id and what it wrote last.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownRecord {
    pub mapping: String,
    pub external_id: String,
    pub crm_id: String,
    pub digest: String,
    pub fields: Map<String, Value>,
}

/// A record the CRM accepted, as [`SyncState::records_written`] notes it.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub target: &'a str,
    pub object: &'a str,
    pub external_id: &'a str,
    pub mapping: &'a str,
    pub crm_id: &'a str,
    pub digest: &'a str,
    pub fields: &'a Map<String, Value>,
}

/// A record the CRM kept refusing.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub target: String,
    pub object: String,
    pub external_id_field: String,
    pub external_id: String,
    pub mapping: String,
    pub fields: Map<String, Value>,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub at: String,
}

/// Bad input a CRM sent (a webhook), as an operator reads it in `dealreg crm status`.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundError {
    pub source: String,
    pub at: String,
    pub code: String,
    pub error: String,
    pub body: String,
}

/// The adapter's state file.
pub struct SyncState {
    conn: Mutex<Connection>,
}

impl SyncState {
    pub fn open(path: &Path) -> Result<SyncState, StateError> {
        let open_error = |e: rusqlite::Error| StateError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let conn = Connection::open(path).map_err(open_error)?;
        // WAL with synchronous NORMAL: a power loss may drop the last transactions, never
        // an earlier one while keeping a later one. The cursor moves in a transaction after
        // the records it covers, so losing a suffix moves the adapter back (it sends those
        // records again: upserts by external id, no duplicates), never past a change. An
        // fsync per CRM request would buy nothing but time.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(open_error)?;
        conn.execute_batch(SCHEMA).map_err(open_error)?;
        Ok(SyncState {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How far `adapter` has applied the view changes.
    pub fn cursor(&self, adapter: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT position FROM cursor WHERE adapter = ?1",
                params![adapter],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_cursor(&self, adapter: &str, position: &str) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO cursor (adapter, position) VALUES (?1, ?2)
             ON CONFLICT (adapter) DO UPDATE SET position = excluded.position",
            params![adapter, position],
        )?;
        Ok(())
    }

    pub fn record(
        &self,
        target: &str,
        object: &str,
        external_id: &str,
    ) -> Result<Option<KnownRecord>, StateError> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT mapping, external_id, crm_id, digest, fields FROM record
             WHERE target = ?1 AND object = ?2 AND external_id = ?3",
        )?;
        Ok(query
            .query_row(params![target, object, external_id], known_record)
            .optional()?)
    }

    /// The digest of what the adapter last wrote to a record; `None`: it never wrote it.
    pub fn digest(
        &self,
        target: &str,
        object: &str,
        external_id: &str,
    ) -> Result<Option<String>, StateError> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT digest FROM record WHERE target = ?1 AND object = ?2 AND external_id = ?3",
        )?;
        Ok(query
            .query_row(params![target, object, external_id], |r| r.get(0))
            .optional()?)
    }

    /// The record with the CRM's own id `crm_id` (a webhook names records so).
    pub fn record_by_crm_id(
        &self,
        target: &str,
        object: &str,
        crm_id: &str,
    ) -> Result<Option<KnownRecord>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT mapping, external_id, crm_id, digest, fields FROM record
                 WHERE target = ?1 AND object = ?2 AND crm_id = ?3",
                params![target, object, crm_id],
                known_record,
            )
            .optional()?)
    }

    /// Notes records the CRM accepted (merging each one's fields into what was written
    /// before) and drops their dead letters, in one transaction: one fsync per CRM
    /// request, not one per record.
    pub fn records_written(&self, written: &[Written<'_>]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut before = tx.prepare_cached(
                "SELECT fields FROM record WHERE target = ?1 AND object = ?2 AND external_id = ?3",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO record (target, object, external_id, mapping, crm_id, digest, fields)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (target, object, external_id) DO UPDATE SET
                   mapping = excluded.mapping, crm_id = excluded.crm_id,
                   digest = excluded.digest, fields = excluded.fields",
            )?;
            let mut forget_letter = tx.prepare_cached(
                "DELETE FROM dead_letter WHERE target = ?1 AND object = ?2 AND external_id = ?3",
            )?;
            for w in written {
                let previous: Option<String> = before
                    .query_row(params![w.target, w.object, w.external_id], |r| r.get(0))
                    .optional()?;
                let mut merged: Map<String, Value> = previous
                    .and_then(|b| serde_json::from_str(&b).ok())
                    .unwrap_or_default();
                for (k, v) in w.fields {
                    merged.insert(k.clone(), v.clone());
                }
                upsert.execute(params![
                    w.target,
                    w.object,
                    w.external_id,
                    w.mapping,
                    w.crm_id,
                    w.digest,
                    Value::Object(merged).to_string()
                ])?;
                forget_letter.execute(params![w.target, w.object, w.external_id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Puts a record on the dead-letter list (replacing an older letter of the same
    /// record: the list holds each record's latest state).
    pub fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO dead_letter (target, object, external_id, external_id_field, mapping,
                                      fields, code, message, attempts, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (target, object, external_id) DO UPDATE SET
               external_id_field = excluded.external_id_field, mapping = excluded.mapping,
               fields = excluded.fields, code = excluded.code, message = excluded.message,
               attempts = dead_letter.attempts + excluded.attempts, at = excluded.at",
            params![
                letter.target,
                letter.object,
                letter.external_id,
                letter.external_id_field,
                letter.mapping,
                Value::Object(letter.fields.clone()).to_string(),
                letter.code,
                letter.message,
                letter.attempts,
                letter.at
            ],
        )?;
        Ok(())
    }

    pub fn dead_letters(&self, target: &str) -> Result<Vec<DeadLetter>, StateError> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT target, object, external_id_field, external_id, mapping, fields, code,
                    message, attempts, at
             FROM dead_letter WHERE target = ?1 ORDER BY at, object, external_id",
        )?;
        let letters = query
            .query_map(params![target], |r| {
                let fields: String = r.get(5)?;
                Ok(DeadLetter {
                    target: r.get(0)?,
                    object: r.get(1)?,
                    external_id_field: r.get(2)?,
                    external_id: r.get(3)?,
                    mapping: r.get(4)?,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    code: r.get(6)?,
                    message: r.get(7)?,
                    attempts: r.get(8)?,
                    at: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(letters)
    }

    /// Records bad input from a CRM where `dealreg crm status` shows it; the body is kept
    /// to its first 2 KiB.
    pub fn inbound_error(
        &self,
        source: &str,
        at: &str,
        code: &str,
        error: &str,
        body: &[u8],
    ) -> Result<(), StateError> {
        let body: String = String::from_utf8_lossy(body).chars().take(2048).collect();
        self.conn().execute(
            "INSERT INTO inbound_error (source, at, code, error, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![source, at, code, error, body],
        )?;
        Ok(())
    }

    /// Keeps the events of one webhook delivery, in one transaction, to be processed
    /// after the delivery is answered ([`SyncState::pending_events`]).
    pub fn received_events(
        &self,
        source: &str,
        at: &str,
        events: &[String],
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT INTO inbound_event (source, at, event) VALUES (?1, ?2, ?3)")?;
            for event in events {
                insert.execute(params![source, at, event])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The first `limit` events received from `source` and not processed yet, oldest
    /// first: (its number, the event as received).
    pub fn pending_events(
        &self,
        source: &str,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StateError> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT id, event FROM inbound_event WHERE source = ?1 AND done = 0 ORDER BY id LIMIT ?2",
        )?;
        let events = query
            .query_map(
                params![source, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(events)
    }

    /// An event was processed (its command executed, or its bad input recorded): it
    /// leaves the file.
    pub fn event_processed(&self, id: i64) -> Result<(), StateError> {
        self.conn()
            .execute("DELETE FROM inbound_event WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// The latest `limit` inbound errors, newest first.
    pub fn inbound_errors(&self, limit: usize) -> Result<Vec<InboundError>, StateError> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT source, at, code, error, body FROM inbound_error ORDER BY id DESC LIMIT ?1",
        )?;
        let errors = query
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(InboundError {
                    source: r.get(0)?,
                    at: r.get(1)?,
                    code: r.get(2)?,
                    error: r.get(3)?,
                    body: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(errors)
    }

    /// What a poll last read of a CRM record: its modstamp, and the facts of the last
    /// command that record gave the engine (`None`: none was accepted yet).
    pub fn polled(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<(String, Option<String>)>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT stamp, facts FROM polled WHERE source = ?1 AND id = ?2",
                params![source, id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Notes a polled record's modstamp and the facts the engine accepted from it.
    pub fn set_polled(
        &self,
        source: &str,
        id: &str,
        stamp: &str,
        facts: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO polled (source, id, stamp, facts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, id) DO UPDATE SET stamp = excluded.stamp, facts = excluded.facts",
            params![source, id, stamp, facts],
        )?;
        Ok(())
    }

    /// How many records the adapter has written to `target`.
    pub fn record_count(&self, target: &str) -> Result<u64, StateError> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM record WHERE target = ?1",
            params![target],
            |r| r.get(0),
        )?)
    }
}

fn known_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnownRecord> {
    let fields: String = r.get(4)?;
    Ok(KnownRecord {
        mapping: r.get(0)?,
        external_id: r.get(1)?,
        crm_id: r.get(2)?,
        digest: r.get(3)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
    })
}
