//! Opening a store file: who may create one, what makes a file a store, and the settings
//! every acknowledged append relies on.
//!
//! Why so careful: a mistyped path must not pass for a new, empty and healthy store; several
//! processes opening one new file at once must all succeed; and "acknowledged means
//! durable" (docs/ARCHITECTURE.md, invariant 5) holds only with WAL and `synchronous=FULL`,
//! so the store reads both back and refuses to open without them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use dealreg_events::StoreError;

use crate::SCHEMA;

/// How long any connection waits for another one's lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at the switch to WAL. SQLite does not call the busy handler for it, so a
/// process that opens a new file while another creates it retries by itself.
const WAL_ATTEMPTS: u32 = 40;

/// The longest pause between two attempts; with doubling from 1 ms, the attempts span a
/// few seconds, well inside [`BUSY_TIMEOUT`].
const WAL_MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How to open a store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    create: bool,
    max_pages: Option<u64>,
    record_commits: bool,
    check: bool,
}

impl SqliteOptions {
    /// Create the file and its schema when missing: for the jobs meant to create a store.
    pub fn create() -> SqliteOptions {
        SqliteOptions {
            create: true,
            max_pages: None,
            record_commits: false,
            check: false,
        }
    }

    /// Whether these options create a store that is missing.
    pub fn creates(&self) -> bool {
        self.create
    }

    /// The file must already be a dealreg store; nothing is created.
    pub fn existing() -> SqliteOptions {
        SqliteOptions {
            create: false,
            max_pages: None,
            record_commits: false,
            check: false,
        }
    }

    /// Caps the file at `pages` database pages (`PRAGMA max_page_count`; SQLite never sets
    /// it below the current size). An append that would grow the file past it fails as on
    /// a full disk (SQLITE_FULL). For tests that need a full store without a full disk, and
    /// for operators who cap the file.
    pub fn max_pages(mut self, pages: u64) -> SqliteOptions {
        self.max_pages = Some(pages);
        self
    }

    /// Remembers the last position of every committed group ([`crate::SqliteStore::commit_marks`]),
    /// so a benchmark can replay exactly the engine's group commits against raw inserts.
    /// Grows by one number per commit: for benchmarks, not for services.
    pub fn record_commits(mut self) -> SqliteOptions {
        self.record_commits = true;
        self
    }

    /// Runs SQLite's quick check on an existing file before anything is written to it, and
    /// refuses a damaged file ([`OpenError::Damaged`]). Why: a file whose pages were
    /// overwritten opens, and appends that touch only sound pages commit, until one meets a
    /// damaged page; a run would have made durable commits into a broken store before it
    /// stopped. The check reads the whole file once (seconds per GB from a cold cache), so
    /// it is for the jobs that write, at their start.
    pub fn check_integrity(mut self) -> SqliteOptions {
        self.check = true;
        self
    }

    pub(crate) fn page_cap(&self) -> Option<u64> {
        self.max_pages
    }

    pub(crate) fn records_commits(&self) -> bool {
        self.record_commits
    }
}

/// The durability settings of the writer connection, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `wal` (the only mode the store opens with).
    pub journal_mode: String,
    /// `full` (the only level the store opens with): each commit syncs the WAL.
    pub synchronous: String,
    /// The size cap in pages (`PRAGMA max_page_count`).
    pub max_pages: u64,
}

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("there is no store at {}", path.display())]
    Missing { path: PathBuf },
    #[error("{} is empty: it holds no dealreg store", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a dealreg store: {reason}", path.display())]
    NotAStore { path: PathBuf, reason: String },
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} runs with journal_mode={journal_mode} and synchronous={synchronous}; dealreg needs WAL and FULL so that an acknowledged append is on disk: put the store on a local disk", path.display())]
    NotDurable {
        path: PathBuf,
        journal_mode: String,
        synchronous: String,
    },
    #[error("cannot {action} in {}: {source}; check the path and its permissions", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{} is damaged, and nothing was written to it (SQLite's quick check: {}); run `dealreg verify` to see what is affected, and restore the store from a backup or an export (`dealreg import`)", path.display(), findings.join("; "))]
    Damaged {
        path: PathBuf,
        /// The first problems the check names.
        findings: Vec<String>,
    },
}

impl OpenError {
    pub(crate) fn sqlite(path: &Path, action: &'static str, source: rusqlite::Error) -> OpenError {
        OpenError::Sqlite {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

impl From<OpenError> for dealreg_views::ViewsError {
    fn from(e: OpenError) -> dealreg_views::ViewsError {
        dealreg_views::ViewsError::Backend(e.to_string())
    }
}

/// Opens a read-write connection to `path` as `options` say, checked to be a store, in
/// WAL mode with `synchronous=FULL`, its schema in place and its cap set.
pub(crate) fn writer_connection(
    path: &Path,
    options: &SqliteOptions,
) -> Result<(Connection, StoreSettings), OpenError> {
    let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let conn = connect(path, options)?;
    if options.check && existed {
        quick_check(&conn, path)?;
    }
    // Every statement the writer runs stays prepared (rusqlite's default cache holds 16).
    conn.set_prepared_statement_cache_capacity(64);
    switch_to_wal(&conn, path)?;
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(|e| OpenError::sqlite(path, "set synchronous=FULL", e))?;
    if options.create {
        in_immediate_transaction(&conn, SCHEMA)
            .map_err(|e| OpenError::sqlite(path, "create the schema", e))?;
    }
    migrate_log_head(&conn).map_err(|e| OpenError::sqlite(path, "record the log's head", e))?;
    name_the_store(&conn).map_err(|e| OpenError::sqlite(path, "name the store", e))?;
    if let Some(pages) = options.max_pages {
        set_max_pages(&conn, pages).map_err(|e| OpenError::sqlite(path, "cap the file size", e))?;
    }
    let settings =
        read_settings(&conn).map_err(|e| OpenError::sqlite(path, "read the settings", e))?;
    if settings.journal_mode != "wal" || settings.synchronous != "full" {
        return Err(OpenError::NotDurable {
            path: path.to_path_buf(),
            journal_mode: settings.journal_mode,
            synchronous: settings.synchronous,
        });
    }
    Ok((conn, settings))
}

/// The most problems a refusal names (the check stops looking after them).
const FINDINGS: u32 = 5;

/// SQLite's quick check of the whole file (b-trees, page and cell sizes, free list; not
/// the indexes' agreement with their tables, which `integrity_check` adds at several times
/// the cost). A file too damaged for the check to run is damaged too.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let damaged = |findings: Vec<String>| OpenError::Damaged {
        path: path.to_path_buf(),
        findings,
    };
    let findings: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA quick_check({FINDINGS})"))
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect()
        });
    match findings {
        Ok(findings) if findings.len() == 1 && findings[0] == "ok" => Ok(()),
        Ok(findings) => Err(damaged(findings)),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ) =>
        {
            Err(damaged(vec![e.to_string()]))
        }
        Err(e) => Err(OpenError::sqlite(path, "check the file", e)),
    }
}

/// How long a busy connection sleeps before it tries the lock again.
const BUSY_RETRY: Duration = Duration::from_micros(250);

/// Waits for a lock held by another connection for up to [`BUSY_TIMEOUT`], trying again
/// every [`BUSY_RETRY`]. Why not `busy_timeout`: SQLite's own handler backs off to sleeps
/// of 25 to 100 ms, so an append that meets a view save (a few ms of lock) waited tens of
/// milliseconds: the p99 of one command in flight over NATS was 40 ms for that alone.
pub(crate) fn wait_when_busy(conn: &Connection) -> rusqlite::Result<()> {
    fn retry(attempt: i32) -> bool {
        let waited = BUSY_RETRY.saturating_mul(attempt.max(0) as u32);
        if waited >= BUSY_TIMEOUT {
            return false;
        }
        std::thread::sleep(BUSY_RETRY);
        true
    }
    conn.busy_handler(Some(retry))
}

/// Sets up a connection as every connection of a store (events, views, vault) runs:
/// waiting on busy locks ([`wait_when_busy`]) and with stable plans ([`stable_plans`]).
pub(crate) fn set_up(conn: &Connection) -> rusqlite::Result<()> {
    wait_when_busy(conn)?;
    stable_plans(conn)
}

/// Turns on SQLite's query planner stability guarantee for the connection. Why: without
/// it, a statement whose plan may depend on a bound value (this build of SQLite has STAT4;
/// a `LIMIT ?1`, a bound column compared with an indexed one) is marked expired whenever
/// that parameter is bound again, and the next step parses and plans the whole statement
/// again: every page of `read_stream` and `read_all` was compiled twice, 10 % of the
/// service's CPU under load. With it, a cached statement is planned once and stays so.
pub(crate) fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

/// Opens a connection with the busy handler set before anything else, refusing a file that
/// is not a store (and, unless `options` may create one, a missing or empty file).
pub(crate) fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, OpenError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if options.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else {
        check_file(path)?;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| OpenError::sqlite(path, "open the file", e))?;
    set_up(&conn).map_err(|e| OpenError::sqlite(path, "set up the connection", e))?;
    check_tables(&conn, path, options.create)?;
    Ok(conn)
}

/// Opens a store read-only, as an auditor's tools do: refuses exactly what [`connect`]
/// refuses, and writes nothing (no WAL switch, no table, no `-views`). A copy whose WAL
/// mode needs a `-shm` that cannot be created (a read-only directory) is opened as
/// immutable: nothing else writes a copy an auditor holds. Gives the connection and
/// whether it is immutable (every further connection must be opened the same way).
pub(crate) fn read_only_connection(path: &Path) -> Result<(Connection, bool), OpenError> {
    check_file(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let plain = Connection::open_with_flags(path, flags).and_then(|conn| {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map(|()| conn)
    });
    let (conn, immutable) = match plain {
        Ok(conn) => (conn, false),
        Err(_) => {
            let conn = Connection::open_with_flags(immutable_uri(path), flags)
                .map_err(|e| OpenError::sqlite(path, "open the file read-only", e))?;
            (conn, true)
        }
    };
    set_up(&conn).map_err(|e| OpenError::sqlite(path, "set up the connection", e))?;
    check_tables(&conn, path, false)?;
    Ok((conn, immutable))
}

/// `file:<path>?immutable=1`, with the characters a URI reserves escaped.
pub(crate) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(b)),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Refuses a missing, empty or non-regular file before SQLite opens (and so creates) it.
fn check_file(path: &Path) -> Result<(), OpenError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(OpenError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !metadata.is_file() {
        return Err(OpenError::NotAStore {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    if metadata.len() == 0 {
        return Err(OpenError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// A store has an `events` table. A database with other tables and no `events` is
/// someone else's and is refused even by jobs that may create a store; one with no table
/// at all is empty, which only those jobs accept.
fn check_tables(conn: &Connection, path: &Path, may_create: bool) -> Result<(), OpenError> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut q| q.query_map([], |row| row.get(0))?.collect())
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotAStore {
                path: path.to_path_buf(),
                reason: "it is not a SQLite database".into(),
            },
            _ => OpenError::sqlite(path, "read the list of tables", e),
        })?;
    if tables.iter().any(|t| t == "events") {
        return Ok(());
    }
    if tables.is_empty() {
        return if may_create {
            Ok(())
        } else {
            Err(OpenError::Empty {
                path: path.to_path_buf(),
            })
        };
    }
    Err(OpenError::NotAStore {
        path: path.to_path_buf(),
        reason: format!(
            "it is a SQLite database without an `events` table (it has {})",
            tables.join(", ")
        ),
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// `PRAGMA journal_mode=WAL`, retried with a bounded, jittered backoff while another
/// connection holds the lock it needs (SQLite answers SQLITE_BUSY at once there instead of
/// waiting).
pub(crate) fn switch_to_wal(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let mut pause = Duration::from_millis(1);
    let mut attempt = 1;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(OpenError::NotDurable {
                    path: path.to_path_buf(),
                    journal_mode: mode.to_ascii_lowercase(),
                    synchronous: "unchecked".into(),
                })
            }
            Err(e) if is_busy(&e) && attempt < WAL_ATTEMPTS => {
                tracing::debug!(attempt, path = %path.display(), "the switch to WAL is busy; retrying");
                let jitter = u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos()),
                ) % 1000;
                std::thread::sleep(pause + Duration::from_micros(jitter));
                pause = (pause * 2).min(WAL_MAX_BACKOFF);
                attempt += 1;
            }
            Err(e) => return Err(OpenError::sqlite(path, "switch to WAL journaling", e)),
        }
    }
}

/// Runs `sql` inside `BEGIN IMMEDIATE`, so two processes creating tables at once take
/// turns through the busy handler instead of one failing.
pub(crate) fn in_immediate_transaction(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match conn
        .execute_batch(sql)
        .and_then(|()| conn.execute_batch("COMMIT"))
    {
        Ok(()) => Ok(()),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// Sets `PRAGMA max_page_count` and returns the cap SQLite put in force.
pub(crate) fn set_max_pages(conn: &Connection, pages: u64) -> rusqlite::Result<u64> {
    let pages = i64::try_from(pages).unwrap_or(i64::MAX);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|p| p.max(0) as u64)
}

fn read_settings(conn: &Connection) -> rusqlite::Result<StoreSettings> {
    let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    let max_pages: i64 = conn.query_row("PRAGMA max_page_count", [], |row| row.get(0))?;
    let synchronous = match synchronous {
        0 => "off",
        1 => "normal",
        2 => "full",
        3 => "extra",
        _ => "unknown",
    };
    Ok(StoreSettings {
        journal_mode: journal_mode.to_ascii_lowercase(),
        synchronous: synchronous.into(),
        max_pages: max_pages.max(0) as u64,
    })
}

/// A store written before the writer recorded the highest position it assigned gets that
/// record (`log_head`), in one transaction: an auditor tells a cut tail by it.
fn migrate_log_head(conn: &Connection) -> rusqlite::Result<()> {
    let ready = |conn: &Connection| -> rusqlite::Result<bool> {
        let head = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_head'")?
            .exists([])?;
        let events = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")?
            .exists([])?;
        Ok(!events || head)
    };
    if ready(conn)? {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        if ready(conn)? {
            return Ok(());
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log_head (
                 id       INTEGER PRIMARY KEY CHECK (id = 1),
                 position INTEGER NOT NULL,
                 log_hash TEXT    NOT NULL
             );
             INSERT INTO log_head (id, position, log_hash)
                 SELECT 1, max(position), '' FROM events WHERE position IS NOT NULL
                 HAVING count(*) > 0;",
        )
    })();
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Gives the store an id of its own, once: its views file records it, so views of
/// another store (this file replaced) are never served for this one.
fn name_the_store(conn: &Connection) -> rusqlite::Result<()> {
    let named = conn
        .query_row("SELECT 1 FROM store_meta WHERE id = 1", [], |_| Ok(()))
        .optional();
    if matches!(named, Ok(Some(()))) {
        return Ok(());
    }
    in_immediate_transaction(
        conn,
        &format!(
            "CREATE TABLE IF NOT EXISTS store_meta (
                 id       INTEGER PRIMARY KEY CHECK (id = 1),
                 store_id TEXT    NOT NULL
             );
             INSERT OR IGNORE INTO store_meta (id, store_id) VALUES (1, '{}');",
            uuid::Uuid::now_v7()
        ),
    )
}
