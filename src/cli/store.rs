//! Opening the embedded store and its checkpoints, and the clock a job runs on.

use std::path::Path;

use chrono::{DateTime, Utc};
use dealreg_clock::{ControlledClock, SharedClock, SystemClock};
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};

pub fn open(path: &Path) -> Result<(SqliteStore, SqliteCheckpoints), String> {
    let store = SqliteStore::open(path)
        .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
    let checkpoints = SqliteCheckpoints::open(path)
        .map_err(|e| format!("cannot open the views of {}: {e}", path.display()))?;
    Ok((store, checkpoints))
}

/// The system clock, or a fixed controllable one at `at` (for replays and repeatable runs).
pub fn clock(at: Option<DateTime<Utc>>) -> SharedClock {
    match at {
        Some(at) => SharedClock::new(ControlledClock::starting_at(at)),
        None => SharedClock::new(SystemClock),
    }
}
