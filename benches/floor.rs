//! The floor: the same rows the engine wrote, written again with raw SQLite statements into
//! a store of the same schema (same tables, same indexes, WAL, synchronous=FULL), in
//! transactions of exactly the engine's group commits. Nothing the engine does can write
//! those rows faster on the same disk, so the engine is reported against it.
//!
//! What the floor does per append of a group: insert its event rows (the stored bytes,
//! hashes included; the idempotency key is in their metadata), upsert the tip of each
//! stream it wrote; one `COMMIT` per group. What it does not do: parse, decide, hash, serialise, or wait for
//! anyone; no savepoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

pub struct FloorResult {
    pub rows: usize,
    pub appends: usize,
    pub commits: usize,
    pub elapsed: Duration,
}

impl FloorResult {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// One stored event, as read back from the engine's file.
struct Row {
    position: i64,
    stream: String,
    revision: i64,
    event_id: String,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    prev_hash: String,
    hash: String,
    command_id: String,
}

fn rows(engine: &Connection, after: i64) -> rusqlite::Result<Vec<Row>> {
    let mut query = engine.prepare(
        "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash
         FROM events WHERE position > ?1 ORDER BY position",
    )?;
    let rows = query.query_map([after], |r| {
        let metadata: Vec<u8> = r.get(6)?;
        let command_id = serde_json::from_slice::<serde_json::Value>(&metadata)
            .ok()
            .and_then(|m| m["command_id"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Row {
            position: r.get(0)?,
            stream: r.get(1)?,
            revision: r.get(2)?,
            event_id: r.get(3)?,
            event_type: r.get(4)?,
            data: r.get(5)?,
            metadata,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
            command_id,
        })
    })?;
    rows.collect()
}

const INSERT_EVENT: &str = "INSERT INTO events (position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const UPSERT_TIP: &str = "INSERT INTO streams (stream, last_revision, last_hash) VALUES (?1, ?2, ?3)
     ON CONFLICT(stream) DO UPDATE SET last_revision = excluded.last_revision, last_hash = excluded.last_hash";

/// Writes `rows` (with their tips) in `conn`'s current transaction. (The idempotency
/// keys are in the events' metadata: the store keeps no table of them.)
fn write(conn: &Connection, rows: &[Row]) -> rusqlite::Result<usize> {
    let mut insert = conn.prepare_cached(INSERT_EVENT)?;
    let mut tip = conn.prepare_cached(UPSERT_TIP)?;
    let mut appends = 0;
    let mut i = 0;
    while i < rows.len() {
        // One append: the consecutive rows of one command.
        let mut j = i;
        while j < rows.len() && rows[j].command_id == rows[i].command_id {
            let r = &rows[j];
            insert.execute(params![
                r.position,
                r.stream,
                r.revision,
                r.event_id,
                r.event_type,
                r.data,
                r.metadata,
                r.prev_hash,
                r.hash
            ])?;
            j += 1;
        }
        let mut last: BTreeMap<&str, &Row> = BTreeMap::new();
        for r in &rows[i..j] {
            last.insert(r.stream.as_str(), r);
        }
        for r in last.values() {
            tip.execute(params![r.stream, r.revision, r.hash])?;
        }
        appends += 1;
        i = j;
    }
    Ok(appends)
}

/// Replays what the engine wrote to `engine_db` after position `after`, in the groups that
/// `marks` (the last position of each of the engine's commits) delimit, into a new store
/// file at `floor_db`; the rows up to `after` are copied first, untimed, so both files
/// hold the same indexes.
pub fn replay_engine_rows(
    engine_db: &Path,
    after: u64,
    marks: &[u64],
    floor_db: &Path,
) -> rusqlite::Result<FloorResult> {
    let engine = Connection::open_with_flags(engine_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let setup = rows(&engine, 0)?;
    let mut schema = Vec::new();
    {
        let mut q = engine.prepare(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
             AND tbl_name IN ('events', 'streams') ORDER BY rowid",
        )?;
        for sql in q.query_map([], |r| r.get::<_, String>(0))? {
            schema.push(sql?);
        }
    }
    drop(engine);
    let (before, timed): (Vec<Row>, Vec<Row>) =
        setup.into_iter().partition(|r| r.position <= after as i64);

    let conn = Connection::open(floor_db)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode, "wal", "the floor runs in WAL mode like the store");
    conn.pragma_update(None, "synchronous", "FULL")?;
    for sql in &schema {
        conn.execute_batch(sql)?;
    }
    let tx = conn.unchecked_transaction()?;
    write(&tx, &before)?;
    tx.commit()?;

    let marks: Vec<i64> = marks
        .iter()
        .map(|m| *m as i64)
        .filter(|m| *m > after as i64)
        .collect();
    let start = Instant::now();
    let (mut appends, mut commits, mut from) = (0, 0, 0usize);
    for mark in &marks {
        let to = from
            + timed[from..]
                .iter()
                .take_while(|r| r.position <= *mark)
                .count();
        if to == from {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        appends += write(&tx, &timed[from..to])?;
        tx.commit()?;
        commits += 1;
        from = to;
    }
    assert_eq!(
        from,
        timed.len(),
        "every row the engine wrote lies in one of its commits"
    );
    Ok(FloorResult {
        rows: timed.len(),
        appends,
        commits,
        elapsed: start.elapsed(),
    })
}
