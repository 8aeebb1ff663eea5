//! Opening the embedded store and its checkpoints, and the clock a job runs on.
//!
//! Why two ways to open: only the jobs meant to create a store (`demo`, `apply`) may
//! create the file; every reader refuses a missing, empty or foreign file, so a mistyped
//! `--store` is an error instead of a new, empty and "healthy" store.

use std::path::Path;

use chrono::{DateTime, Utc};
use dealreg_clock::{ControlledClock, SharedClock, SystemClock};
use dealreg_store_sqlite::{OpenError, SqliteCheckpoints, SqliteOptions, SqliteStore, SqliteVault};

/// The operator's cap on the store file, in database pages (`PRAGMA max_page_count`; pages
/// are 4 KiB). Appends that would grow the file past it fail as on a full disk and are
/// counted as store failures.
pub const MAX_PAGES_ENV: &str = "DEALREG_SQLITE_MAX_PAGES";

/// Opens the store at `path`, creating it when missing (`demo`, `apply`).
pub fn create_or_open(path: &Path) -> Result<(SqliteStore, SqliteCheckpoints), String> {
    open_as(path, SqliteOptions::create())
}

/// Opens the store at `path`, which must already be one (every reader).
pub fn open_existing(path: &Path) -> Result<(SqliteStore, SqliteCheckpoints), String> {
    open_as(path, SqliteOptions::existing())
}

/// Opens the store at `path` for reading only (every job that only reads: events,
/// verify, history, replay, views as of a moment, forget's scan): nothing is written to
/// the file or beside it, so an auditor's read-only copy works.
pub fn open_read(path: &Path) -> Result<SqliteStore, String> {
    SqliteStore::open_read_only(path).map_err(|e| refusal(path, &e))
}

fn open_as(
    path: &Path,
    options: SqliteOptions,
) -> Result<(SqliteStore, SqliteCheckpoints), String> {
    let options = match max_pages()? {
        Some(pages) => options.max_pages(pages),
        None => options,
    };
    let store = SqliteStore::open_with(path, &options).map_err(|e| refusal(path, &e))?;
    let checkpoints = SqliteCheckpoints::open_with(path, &options)
        .map_err(|e| format!("cannot open the views of {}: {e}", path.display()))?;
    Ok((store, checkpoints))
}

/// The message for a store that cannot be opened, saying what to do next.
fn refusal(path: &Path, e: &OpenError) -> String {
    match e {
        OpenError::Missing { .. } | OpenError::Empty { .. } | OpenError::NotAStore { .. } => {
            format!(
                "{e}; create a store with `dealreg --store {} demo` or `dealreg --store {} apply FILE`, or check `--store`",
                path.display(),
                path.display()
            )
        }
        _ => format!("cannot open the store {}: {e}", path.display()),
    }
}

fn max_pages() -> Result<Option<u64>, String> {
    match std::env::var(MAX_PAGES_ENV) {
        Ok(value) => value.trim().parse::<u64>().map(Some).map_err(|e| {
            format!("{MAX_PAGES_ENV}={value:?} is not a number of pages ({e}); unset it or give a positive integer")
        }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{MAX_PAGES_ENV} cannot be read: {e}")),
    }
}

/// The key vault beside the store at `path` (`<store>-keys`), created when missing: every
/// job that executes commands seals contacts with it.
pub fn vault(
    path: &Path,
    material: dealreg_vault::KeyMaterial,
) -> Result<std::sync::Arc<SqliteVault>, String> {
    SqliteVault::open(path, material)
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())
}

/// The key vault beside the store at `path`, read-only, for the jobs that show events to
/// a person: `None` when there is none (contacts are then shown sealed).
pub fn read_vault(path: &Path) -> Option<SqliteVault> {
    match SqliteVault::open_read_only(path) {
        Ok(vault) => vault,
        Err(e) => {
            tracing::warn!(%e, "contacts are shown sealed: the key vault cannot be read");
            None
        }
    }
}

/// The system clock, or a fixed controllable one at `at` (for replays and repeatable runs).
pub fn clock(at: Option<DateTime<Utc>>) -> SharedClock {
    match at {
        Some(at) => SharedClock::new(ControlledClock::starting_at(at)),
        None => SharedClock::new(SystemClock),
    }
}

/// Removes a store this process created and must not leave behind (an import refused
/// after it was written): the file, its WAL, and the views and keys beside it.
pub fn remove_store_files(path: &Path) {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    let views = dealreg_store_sqlite::views_path(path);
    let keys = dealreg_store_sqlite::vault_path(path);
    for base in [views, keys] {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = base.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
    }
    for file in files {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %file.display(), error = %e, "could not remove a file of the refused import");
            }
        }
    }
}
