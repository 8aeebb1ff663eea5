//! The floor: raw batched inserts into SQLite with the same settings as the store
//! (WAL, synchronous=FULL), rows of the same shape and size as the engine's events.
//! Nothing can be faster than this on the same disk, so the engine is reported against it.

use std::path::Path;
use std::time::{Duration, Instant};

pub struct FloorResult {
    pub rows: usize,
    pub elapsed: Duration,
}

impl FloorResult {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Inserts `rows` rows of `payload` bytes in transactions of `batch` rows.
pub fn raw_sqlite_inserts(
    path: &Path,
    rows: usize,
    batch: usize,
    payload: &[u8],
    metadata: &[u8],
) -> rusqlite::Result<FloorResult> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL, revision INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL, data BLOB NOT NULL, metadata BLOB NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE(stream, revision));",
    )?;
    let hash = "0".repeat(64);
    let start = Instant::now();
    let mut written = 0usize;
    while written < rows {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (stream, revision, event_id, event_type, data, metadata, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for _ in 0..batch.min(rows - written) {
                let stream = format!("account-floor-{}.com", written / 3);
                insert.execute(rusqlite::params![
                    stream,
                    (written % 3) as i64,
                    uuid::Uuid::now_v7().to_string(),
                    "registration_submitted",
                    payload,
                    metadata,
                    hash,
                    hash
                ])?;
                written += 1;
            }
        }
        tx.commit()?;
    }
    Ok(FloorResult {
        rows,
        elapsed: start.elapsed(),
    })
}
