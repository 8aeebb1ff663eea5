//! Which store a job works on (`--store`), opening it, its views and its key vault, and the
//! clock a job runs on.
//!
//! `--store` names the log: `sqlite:PATH` (or a bare path: the embedded default),
//! `jetstream:URL[,URL...][?stream=NAME&replicas=N&monitor=URL]` or `kurrentdb:URL`
//! (docs/STORES.md). Every job works on every backend through [`Log`], one type that is
//! whichever backend the flag named.
//!
//! Why two ways to open: only the jobs meant to create a store (`demo`, `apply`, `import`,
//! `serve`) may create one; every reader refuses a missing, empty or foreign SQLite file,
//! so a mistyped `--store` is an error instead of a new, empty and "healthy" store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dealreg_clock::{ControlledClock, SharedClock, SystemClock};
use dealreg_events::{
    Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamTip,
};
use dealreg_store_sqlite::{OpenError, SqliteCheckpoints, SqliteOptions, SqliteStore, SqliteVault};
use dealreg_vault::{KeyMaterial, KeyVault};

/// The operator's cap on the store file, in database pages (`PRAGMA max_page_count`; pages
/// are 4 KiB). Appends that would grow the file past it fail as on a full disk and are
/// counted as store failures.
pub const MAX_PAGES_ENV: &str = "DEALREG_SQLITE_MAX_PAGES";

/// What `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded SQLite file at this path.
    Sqlite(PathBuf),
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("--store is empty; give a path (the embedded SQLite store), sqlite:PATH, jetstream:URL or kurrentdb:URL".into());
        }
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSpec::Sqlite(path.into())),
            Some((kind, _)) if is_scheme(kind) && !Path::new(text).exists() => Err(format!(
                "`{kind}:` is not a store this build knows; use sqlite:PATH (or a bare path), jetstream:URL or kurrentdb:URL (docs/STORES.md)"
            )),
            _ => Ok(StoreSpec::Sqlite(text.into())),
        }
    }
}

/// Whether `word` looks like a URL scheme rather than the start of a file name.
fn is_scheme(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 16
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+')
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => write!(f, "{}", path.display()),
        }
    }
}

impl StoreSpec {
    /// The SQLite file, for the jobs and checks only the embedded store has.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreSpec::Sqlite(path) => Some(path),
        }
    }
}

/// The log of whichever backend `--store` named.
#[derive(Clone)]
pub enum Log {
    Sqlite(SqliteStore),
}

impl Log {
    /// The SQLite store, for what only it has (its writer's figures, its records).
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Log::Sqlite(store) => Some(store),
        }
    }
}

impl EventStore for Log {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        match self {
            Log::Sqlite(s) => s.append(stream, expected, events).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Log::Sqlite(s) => s.read_stream(stream, after, max).await,
        }
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Log::Sqlite(s) => s.read_all(after, max).await,
        }
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        match self {
            Log::Sqlite(s) => s.subscribe_all(after),
        }
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        match self {
            Log::Sqlite(s) => s.last_position().await,
        }
    }

    fn capabilities(&self) -> Capabilities {
        match self {
            Log::Sqlite(s) => s.capabilities(),
        }
    }
}

/// Opens the store, creating it when missing (`demo`, `apply`, `import`, `serve`), with
/// its views.
pub async fn create_or_open(spec: &StoreSpec) -> Result<(Log, SqliteCheckpoints), String> {
    open_as(spec, SqliteOptions::create())
}

/// Opens the store, which must already be one (every job that writes views or commands
/// but may not create the store), with its views.
pub async fn open_existing(spec: &StoreSpec) -> Result<(Log, SqliteCheckpoints), String> {
    open_as(spec, SqliteOptions::existing())
}

/// Opens the store for reading only (every job that only reads: events, verify, history,
/// replay, views as of a moment, forget's scan): nothing is written to it or beside it,
/// so an auditor's read-only copy works.
pub async fn open_read(spec: &StoreSpec) -> Result<Log, String> {
    match spec {
        StoreSpec::Sqlite(path) => SqliteStore::open_read_only(path)
            .map(Log::Sqlite)
            .map_err(|e| refusal(path, &e)),
    }
}

fn open_as(spec: &StoreSpec, options: SqliteOptions) -> Result<(Log, SqliteCheckpoints), String> {
    let options = match max_pages()? {
        Some(pages) => options.max_pages(pages),
        None => options,
    };
    match spec {
        StoreSpec::Sqlite(path) => {
            let store = SqliteStore::open_with(path, &options).map_err(|e| refusal(path, &e))?;
            let checkpoints = SqliteCheckpoints::open_with(path, &options)
                .map_err(|e| format!("cannot open the views of {}: {e}", path.display()))?;
            Ok((Log::Sqlite(store), checkpoints))
        }
    }
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

/// The key vault of the store (beside a SQLite store, `<store>-keys`), created when
/// missing: every job that executes commands seals contacts with it.
pub async fn vault(spec: &StoreSpec, material: KeyMaterial) -> Result<Arc<dyn KeyVault>, String> {
    match spec {
        StoreSpec::Sqlite(path) => SqliteVault::open(path, material)
            .map(|v| Arc::new(v) as Arc<dyn KeyVault>)
            .map_err(|e| e.to_string()),
    }
}

/// Whether the store has a key vault yet (a store without one never sealed a contact).
pub async fn has_vault(spec: &StoreSpec) -> bool {
    match spec {
        StoreSpec::Sqlite(path) => dealreg_store_sqlite::vault_path(path).exists(),
    }
}

/// The key vault of the store, read-only, for the jobs that show events to a person:
/// `None` when there is none (contacts are then shown sealed).
pub async fn read_vault(spec: &StoreSpec) -> Option<Arc<dyn KeyVault>> {
    let opened = match spec {
        StoreSpec::Sqlite(path) => {
            SqliteVault::open_read_only(path).map(|v| v.map(|v| Arc::new(v) as Arc<dyn KeyVault>))
        }
    };
    match opened {
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

/// Removes a SQLite store this process created and must not leave behind (an import
/// refused after it was written): the file, its WAL, and the views and keys beside it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_named_by_a_path_or_a_url() {
        assert_eq!(
            "./dealreg.db".parse(),
            Ok(StoreSpec::Sqlite("./dealreg.db".into()))
        );
        assert_eq!(
            "sqlite:/var/lib/dealreg.db".parse(),
            Ok(StoreSpec::Sqlite("/var/lib/dealreg.db".into()))
        );
        let unknown = "postgres://db/dealreg".parse::<StoreSpec>();
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("`postgres:`")),
            "{unknown:?}"
        );
        assert!("".parse::<StoreSpec>().is_err());
    }
}
