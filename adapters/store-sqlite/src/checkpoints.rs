//! Read-model checkpoints in the views file beside the store: one `projection_state` row
//! per projection holding its meta, the position it covers and the version of the fold
//! that wrote it, and its rows in a table of its own, `rows_<view>` (key, scope, the
//! position of the save that wrote them, bytes).
//!
//! Why a table per view: a save upserts into one b-tree keyed by the row's key (plus the
//! scope index), not into a shared table and two indexes that all carry the view's name;
//! and forgetting a view (a rebuild) empties its table whole instead of deleting its rows
//! one by one out of everyone's.
//!
//! Why one transaction: the checkpoint and the rows of a save are written together, so
//! they can only change together; a runner killed at any moment resumes from the last
//! saved checkpoint with exactly the rows saved with it. A published save also writes its
//! feed outbox entries (`feed_outbox`) in that transaction, so a crash between a save and
//! its publication loses nothing. `leases` says which process writes the views when
//! several share the file; a handle made with [`SqliteCheckpoints::fenced`] checks in every
//! save's transaction that its process still holds the lease.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dealreg_events::Position;
use dealreg_views::{
    Checkpoint, CheckpointStore, FeedEntry, Leases, RowWrite, RowsAt, StoredRow, ViewsError,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::open::{self, SqliteOptions};

/// The `projection_state` table of a store file. Clones share one connection.
#[derive(Clone)]
pub struct SqliteCheckpoints {
    conn: Arc<Mutex<Connection>>,
    /// (lease, holder): saves are refused unless `holder` holds `lease`.
    fence: Option<Arc<(String, String)>>,
    wal: Arc<WalCheckpointer>,
    /// Views reset by this process whose fold from the origin has not caught up yet: their
    /// row tables are written without the scope index, which [`CheckpointStore::caught_up`]
    /// builds once. Why: keeping the index up to date row by row was ~40 % of the time
    /// to insert a rebuild's 333k rows; one `CREATE INDEX` over the finished table sorts
    /// them once. Queries by scope in between are answered right, by a scan.
    bulk: Arc<Mutex<HashSet<String>>>,
}

/// Copies the views file's WAL into the file on a connection of its own, after saves.
///
/// Why not SQLite's automatic checkpoint: that one runs inside the `COMMIT` of the save
/// that crossed the threshold, so the save (and the fold waiting for it) also waited for
/// the copy and its fsync: a third of a big save's time in a profiled rebuild. A passive
/// checkpoint on another connection copies while the next save is being written. Why not
/// after every save: each checkpoint syncs the file, and `serve` saves its views every
/// 50 ms; a checkpoint per save put dozens of fsyncs a second beside the appends' own.
struct WalCheckpointer {
    conn: Mutex<Connection>,
    running: AtomicBool,
    /// Bytes saved since the last checkpoint started.
    written: AtomicU64,
    /// When the last checkpoint started.
    last: Mutex<Instant>,
}

/// A checkpoint starts once this much was saved since the last one...
const CHECKPOINT_BYTES: u64 = 4 << 20;
/// ...or this long after the last one, when anything was saved since.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

impl WalCheckpointer {
    /// Counts a save of about `bytes`, and starts a passive checkpoint on the blocking
    /// pool when enough was saved or enough time passed (and none is running).
    fn saved(self: &Arc<Self>, bytes: u64) {
        let written = self.written.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let due = written >= CHECKPOINT_BYTES || {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            last.elapsed() >= CHECKPOINT_EVERY
        };
        if !due || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.written.store(0, Ordering::Release);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let wal = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = wal.conn.lock().unwrap_or_else(PoisonError::into_inner);
            // PASSIVE: copies what no reader still needs, never waits for a lock, and
            // never blocks a save; what it could not copy, the next one does.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "a checkpoint of the views file's WAL failed; a later save tries again");
            }
            drop(conn);
            wal.running.store(false, Ordering::Release);
        });
    }
}

trait Db<T> {
    fn db(self) -> Result<T, ViewsError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, ViewsError> {
        self.map_err(backend)
    }
}

fn backend(e: rusqlite::Error) -> ViewsError {
    ViewsError::Backend(format!(
        "checkpoint storage failed: {e}; check the store file and its permissions"
    ))
}

/// Makes the views file belong to the store `store_id`: views saved for another store (a
/// store file replaced, a views file copied from elsewhere) are dropped, so they are
/// rebuilt from this store's log instead of being served at positions of another log.
fn belong_to(conn: &Connection, store_id: &str) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS views_of (
                 id       INTEGER PRIMARY KEY CHECK (id = 1),
                 store_id TEXT NOT NULL
             )",
        )?;
        let owner: Option<String> = conn
            .query_row("SELECT store_id FROM views_of WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        if owner.as_deref() != Some(store_id) {
            if owner.is_some() {
                tracing::warn!(views_of = ?owner, store = store_id, "the views file belonged to another store; its views are rebuilt from this store's log");
            }
            drop_rows_tables(conn)?;
            conn.execute_batch("DELETE FROM projection_state; DELETE FROM feed_outbox;")?;
            conn.execute(
                "INSERT OR REPLACE INTO views_of (id, store_id) VALUES (1, ?1)",
                params![store_id],
            )?;
        }
        Ok(())
    })();
    match done.and_then(|()| conn.execute_batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// The table holding the rows of `view`: `rows_` and the name with every byte but `a-z`
/// and `0-9` written `_xx` (hex), so that any name (checkpoint names such as
/// `reactor/follow-ups` too) maps to its own table, and the table's name holds only
/// `a-z`, `0-9` and `_`: nothing in a view's name is ever read as SQL.
fn rows_table(view: &str) -> String {
    let mut table = String::with_capacity(view.len() + 8);
    table.push_str("rows_");
    for b in view.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            table.push(char::from(b));
        } else {
            table.push_str(&format!("_{b:02x}"));
        }
    }
    table
}

/// The scope index of the row table `table`.
fn scope_index(table: &str) -> String {
    format!("{table}_by_scope")
}

/// Creates the row table of a view when it is missing, and its scope index unless the
/// view is being written in bulk (see `SqliteCheckpoints::bulk`).
fn ensure_rows_table(conn: &Connection, table: &str, indexed: bool) -> rusqlite::Result<()> {
    // WITHOUT ROWID: the key is the table's own b-tree, so an upsert finds and writes the
    // row in one tree; rows of one partner are read through the scope index.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             key      TEXT PRIMARY KEY,
             scope    TEXT,
             position INTEGER NOT NULL,
             row      BLOB    NOT NULL
         ) WITHOUT ROWID;"
    ))?;
    if indexed {
        ensure_scope_index(conn, table)?;
    }
    Ok(())
}

/// Creates the scope index of the row table `table` when it is missing.
fn ensure_scope_index(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    let index = scope_index(table);
    conn.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (scope, key) WHERE scope IS NOT NULL;"
    ))
}

/// The position view `name`'s checkpoint covers ([`Position::ORIGIN`]: none saved), read in
/// the caller's transaction so that rows read beside it are of the same save.
fn saved_position(conn: &Connection, name: &str) -> rusqlite::Result<Position> {
    Ok(conn
        .query_row(
            "SELECT position FROM projection_state WHERE name = ?1",
            params![name],
            |r| position_at(r, 0),
        )
        .optional()?
        .unwrap_or(Position::ORIGIN))
}

/// Whether the table `name` exists (a view never saved has no row table: no rows).
fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists(params![name])
}

/// Drops the tables whose names match the `LIKE` pattern `pattern` (`\\` escapes).
fn drop_tables_like(conn: &Connection, pattern: &str) -> rusqlite::Result<()> {
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1 ESCAPE '\\'",
        )?
        .query_map(params![pattern], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for table in tables {
        // Quoted: a retired table's name holds `~`.
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
    }
    Ok(())
}

/// Drops every view's row table, live or retired.
fn drop_rows_tables(conn: &Connection) -> rusqlite::Result<()> {
    drop_tables_like(conn, "rows\\_%")
}

/// The file the views of the store at `path` live in, beside it: `<store>-views`.
///
/// Why a file of their own: views are folds of the log, saved without an fsync each, and
/// in the store's file their writes shared its write lock and its WAL with the appends.
/// Every append's `COMMIT` (which syncs the WAL) then also synced what the views had
/// written, and waited for their saves: appends of one command in flight over NATS took
/// 5 to 28 ms instead of well under one while the lease holder folded the views. The
/// events' file holds the events and their records only; the views, the feed outbox and
/// the leases are in this one, and it can be deleted: every view is rebuilt from the log.
pub fn views_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-views");
    std::path::PathBuf::from(name)
}

/// Creates the shared tables of a views file, and moves a file of the earlier layout (all
/// views' rows in one `view_rows` table) to this one: its views are derived, so they are
/// dropped with their checkpoints and outbox entries and rebuilt from the log by the next
/// fold (a feed publishes their rows again, at the positions of that fold).
fn make_tables(conn: &Connection) -> rusqlite::Result<()> {
    if has_table(conn, "leases")? && !has_table(conn, "view_rows")? {
        return Ok(());
    }
    // Inside BEGIN IMMEDIATE, so processes opening one file at once take turns.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    if has_table(conn, "view_rows")? {
        tracing::info!("the views file has the one-table layout of earlier builds; its views are rebuilt from the log into a table each");
        conn.execute_batch(
            "DROP TABLE view_rows; DELETE FROM projection_state; DROP TABLE IF EXISTS feed_outbox;",
        )?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS feed_outbox (
             seq            INTEGER PRIMARY KEY AUTOINCREMENT,
             view           TEXT    NOT NULL,
             key            TEXT    NOT NULL,
             scope          TEXT,
             previous_scope TEXT,
             position       INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS leases (
             name       TEXT PRIMARY KEY,
             holder     TEXT    NOT NULL,
             expires_ms INTEGER NOT NULL
         ) WITHOUT ROWID;
         COMMIT;",
    )
}

impl SqliteCheckpoints {
    /// Opens the views of the store at `path`: its views file (created, with its tables,
    /// when missing). `path` must already be a store: open it with
    /// [`crate::SqliteStore`] first.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteCheckpoints, ViewsError> {
        Self::open_with(path, &SqliteOptions::existing())
    }

    /// Like [`SqliteCheckpoints::open`], with the size cap of `options` on the views file
    /// too. The store's file is never created here, whatever `options` say.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &SqliteOptions,
    ) -> Result<SqliteCheckpoints, ViewsError> {
        let path = path.as_ref();
        let mut existing = SqliteOptions::existing();
        if let Some(pages) = options.page_cap() {
            existing = existing.max_pages(pages);
        }
        // The store must be one: refused exactly as every reader refuses it.
        let store_id = {
            let store = open::connect(path, &existing)?;
            store
                .query_row("SELECT store_id FROM store_meta WHERE id = 1", [], |r| {
                    r.get::<_, String>(0)
                })
                .ok()
        };
        Self::open_views(&views_path(path), store_id.as_deref(), &existing)
    }

    /// The views of a log kept elsewhere (JetStream, KurrentDB) in the file `views`,
    /// created (with its directory) when missing. `store_id` names the log: views saved
    /// from another log's events are dropped and rebuilt.
    pub fn open_file(
        views: impl AsRef<Path>,
        store_id: &str,
    ) -> Result<SqliteCheckpoints, ViewsError> {
        let views = views.as_ref();
        if let Some(dir) = views.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ViewsError::Backend(format!(
                    "cannot create the directory of the views file {}: {e}",
                    views.display()
                ))
            })?;
        }
        Self::open_views(views, Some(store_id), &SqliteOptions::existing())
    }

    fn open_views(
        views: &Path,
        store_id: Option<&str>,
        existing: &SqliteOptions,
    ) -> Result<SqliteCheckpoints, ViewsError> {
        let views = views.to_path_buf();
        let conn = Connection::open_with_flags(
            &views,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            ViewsError::Backend(format!(
                "cannot open the views file {}: {e}; check the directory's permissions",
                views.display()
            ))
        })?;
        open::set_up(&conn).map_err(backend)?;
        open::switch_to_wal(&conn, &views).map_err(|e| ViewsError::Backend(e.to_string()))?;
        // Views are folds of the log: a save lost to a power failure (WAL with NORMAL can
        // roll the last transactions back, never corrupt) takes its checkpoint back with
        // its rows and outbox entries, and the next fold writes them again (the feed's
        // message ids are the same, so JetStream drops repeats it still remembers). So
        // saves need no fsync each; the events' connection keeps FULL.
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(backend)?;
        if let Some(pages) = existing.page_cap() {
            open::set_max_pages(&conn, pages).map_err(backend)?;
        }
        // The fold version came after the table; stores written before it read as
        // version 0, which no projection declares, so their states are rebuilt once.
        let has_version = |conn: &Connection| {
            conn.prepare(
                "SELECT 1 FROM pragma_table_info('projection_state') WHERE name = 'version'",
            )
            .and_then(|mut q| q.exists([]))
        };
        if !has_version(&conn).map_err(backend)? {
            // Inside BEGIN IMMEDIATE, so processes opening one store at once take turns:
            // the second finds the table and the column the first made.
            conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
            let made = conn
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS projection_state (
                        name     TEXT PRIMARY KEY,
                        position INTEGER NOT NULL,
                        state    BLOB    NOT NULL
                    ) WITHOUT ROWID;",
                )
                .and_then(|()| has_version(&conn))
                .and_then(|present| {
                    if present {
                        Ok(())
                    } else {
                        conn.execute_batch(
                            "ALTER TABLE projection_state ADD COLUMN version INTEGER NOT NULL DEFAULT 0;",
                        )
                    }
                })
                .and_then(|()| conn.execute_batch("COMMIT"));
            if let Err(e) = made {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                return Err(backend(e));
            }
        }
        // A larger page cache keeps a view's b-tree of keys in memory during a big save.
        conn.execute_batch("PRAGMA cache_size = -65536;")
            .map_err(backend)?;
        make_tables(&conn).map_err(|e| {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            backend(e)
        })?;
        if let Some(store_id) = store_id {
            belong_to(&conn, store_id).map_err(backend)?;
        }
        // Saves do not checkpoint the WAL in their commits; the checkpointer does it beside
        // them (a process that only reads the views never writes, so it never needs to).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(backend)?;
        let checkpointer = Connection::open_with_flags(
            &views,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.execute_batch("PRAGMA synchronous=NORMAL;").map(|()| c))
        .map_err(backend)?;
        Ok(SqliteCheckpoints {
            conn: Arc::new(Mutex::new(conn)),
            fence: None,
            wal: Arc::new(WalCheckpointer {
                conn: Mutex::new(checkpointer),
                running: AtomicBool::new(false),
                written: AtomicU64::new(0),
                last: Mutex::new(Instant::now()),
            }),
            bulk: Arc::default(),
        })
    }

    /// This handle, with every save refused (`ViewsError::LeaseLost`, nothing written)
    /// unless `holder` holds `lease` when the save's transaction runs.
    pub fn fenced(&self, lease: &str, holder: &str) -> SqliteCheckpoints {
        SqliteCheckpoints {
            conn: Arc::clone(&self.conn),
            fence: Some(Arc::new((lease.to_string(), holder.to_string()))),
            wal: Arc::clone(&self.wal),
            bulk: Arc::clone(&self.bulk),
        }
    }

    async fn run_checked<T, F>(&self, f: F) -> Result<T, ViewsError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ViewsError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|e| ViewsError::Backend(format!("checkpoint task failed: {e}")))?
    }

    async fn write(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
        published: bool,
    ) -> Result<(), ViewsError> {
        let name = name.to_string();
        let table = rows_table(&name);
        let fence = self.fence.clone();
        let indexed = !self.in_bulk(&name);
        // What the save adds to the WAL, roughly: its bytes, and a page for its meta.
        let bytes = 4096
            + checkpoint.state.len() as u64
            + rows
                .iter()
                .map(|w| (w.key.len() + w.row.as_ref().map_or(0, Vec::len)) as u64)
                .sum::<u64>();
        self.run_checked(move |conn| {
            // IMMEDIATE: the write lock is taken (waiting through the busy timeout) before
            // the first read. A deferred transaction that reads the fence first and then
            // writes fails at once with SQLITE_BUSY when another connection (the event
            // writer) committed in between: SQLite cannot wait for that upgrade.
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .db()?;
            if let Some(fence) = fence {
                let (lease, holder) = (&fence.0, &fence.1);
                let current: Option<String> = tx
                    .query_row(
                        "SELECT holder FROM leases WHERE name = ?1",
                        params![lease],
                        |r| r.get(0),
                    )
                    .optional()
                    .db()?;
                if current.as_deref() != Some(holder.as_str()) {
                    return Err(ViewsError::LeaseLost {
                        lease: lease.clone(),
                    });
                }
            }
            let position = checkpoint.position.to_string();
            if !rows.is_empty() {
                ensure_rows_table(&tx, &table, indexed).db()?;
                let mut upsert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO {table} (key, scope, position, row) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(key) DO UPDATE SET scope = excluded.scope,
                             position = excluded.position, row = excluded.row"
                    ))
                    .db()?;
                let mut delete = tx
                    .prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1"))
                    .db()?;
                let mut outbox = tx
                    .prepare_cached(&format!(
                        "INSERT INTO feed_outbox (view, key, scope, previous_scope, position)
                         VALUES (?1, ?2, ?3, (SELECT scope FROM {table} WHERE key = ?2), ?4)"
                    ))
                    .db()?;
                for write in &rows {
                    if published {
                        let scope = write.row.as_ref().and(write.scope.as_ref());
                        outbox.execute(params![name, write.key, scope, position]).db()?;
                    }
                    match &write.row {
                        Some(row) => {
                            upsert
                                .execute(params![write.key, write.scope, position, row])
                                .db()?;
                        }
                        None => {
                            delete.execute(params![write.key]).db()?;
                        }
                    }
                }
            }
            tx.execute(
                "INSERT INTO projection_state (name, position, version, state) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET position = excluded.position,
                     version = excluded.version, state = excluded.state",
                params![name, position, checkpoint.version, checkpoint.state],
            )
            .db()?;
            tx.commit().db()
        })
        .await?;
        self.wal.saved(bytes);
        Ok(())
    }

    async fn run<T, F>(&self, f: F) -> Result<T, ViewsError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn).map_err(backend)
        })
        .await
        .map_err(|e| ViewsError::Backend(format!("checkpoint task failed: {e}")))?
    }
}

impl CheckpointStore for SqliteCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, ViewsError> {
        let name = name.to_string();
        self.run(move |conn| {
            conn.query_row(
                "SELECT position, version, state FROM projection_state WHERE name = ?1",
                params![name],
                |r| {
                    Ok(Checkpoint {
                        position: position_at(r, 0)?,
                        version: r.get(1)?,
                        state: r.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), ViewsError> {
        self.write(name, checkpoint, Vec::new(), false).await
    }

    async fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        self.write(name, checkpoint, rows, false).await
    }

    async fn save_published_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        self.write(name, checkpoint, rows, true).await
    }

    async fn rows_by_key(&self, name: &str, keys: Vec<String>) -> Result<RowsAt, ViewsError> {
        let name = name.to_string();
        let table = rows_table(&name);
        self.run(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let position = saved_position(&tx, &name)?;
            let rows = if has_table(&tx, &table)? {
                let mut query =
                    tx.prepare_cached(&format!("SELECT row FROM {table} WHERE key = ?1"))?;
                keys.iter()
                    .map(|key| {
                        query
                            .query_row(params![key], |r| r.get::<_, Vec<u8>>(0))
                            .optional()
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()?
            } else {
                vec![None; keys.len()]
            };
            tx.commit()?;
            Ok((position, rows))
        })
        .await
    }

    async fn feed_after(&self, after_seq: u64, limit: usize) -> Result<Vec<FeedEntry>, ViewsError> {
        self.run(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT seq, view, key, scope, previous_scope, position FROM feed_outbox
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let entries = query
                .query_map(params![after_seq as i64, limit as i64], |r| {
                    Ok(FeedEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        view: r.get(1)?,
                        key: r.get(2)?,
                        scope: r.get(3)?,
                        previous_scope: r.get(4)?,
                        position: position_at(r, 5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
        .await
    }

    async fn feed_published(&self, seq: u64) -> Result<(), ViewsError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM feed_outbox WHERE seq <= ?1",
                params![seq as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn feed_published_elsewhere(
        &self,
        view: &str,
        position: Position,
    ) -> Result<(), ViewsError> {
        let view = view.to_string();
        self.run(move |conn| {
            // Positions may be tokens (`c/p`) that SQL cannot order: compared here.
            let tx = conn.unchecked_transaction()?;
            let published = {
                let mut query =
                    tx.prepare_cached("SELECT seq, position FROM feed_outbox WHERE view = ?1")?;
                let entries = query
                    .query_map(params![view], |r| {
                        Ok((r.get::<_, i64>(0)?, position_at(r, 1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                entries
                    .into_iter()
                    .filter(|(_, at)| *at <= position)
                    .map(|(seq, _)| seq)
                    .collect::<Vec<_>>()
            };
            {
                let mut delete = tx.prepare_cached("DELETE FROM feed_outbox WHERE seq = ?1")?;
                for seq in published {
                    delete.execute(params![seq])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn swap_in(&self, name: &str, built: &str, publish: bool) -> Result<(), ViewsError> {
        let (name, built) = (name.to_string(), built.to_string());
        let (table, built_table) = (rows_table(&name), rows_table(&built));
        if self.load(&built).await?.is_none() {
            return Err(ViewsError::Backend(format!(
                "there is no view `{built}` to put in the place of `{name}`"
            )));
        }
        let swapped = name.clone();
        self.run(move |conn| {
            let tx = conn.unchecked_transaction()?;
            // The serving rows are retired as a reset retires them (dropped later); the
            // built ones take their place, with the scope index under the serving name.
            let retired = has_table(&tx, &table)?
                .then(|| format!("{table}{RETIRED}{}", uuid::Uuid::now_v7().simple()));
            if let Some(retired) = &retired {
                tx.execute_batch(&format!(
                    "DROP INDEX IF EXISTS {index}; ALTER TABLE {table} RENAME TO \"{retired}\";",
                    index = scope_index(&table)
                ))?;
            }
            if has_table(&tx, &built_table)? {
                tx.execute_batch(&format!(
                    "DROP INDEX IF EXISTS {index}; ALTER TABLE {built_table} RENAME TO {table};",
                    index = scope_index(&built_table)
                ))?;
                ensure_scope_index(&tx, &table)?;
            }
            tx.execute("DELETE FROM projection_state WHERE name = ?1", params![name])?;
            tx.execute(
                "UPDATE projection_state SET name = ?1 WHERE name = ?2",
                params![name, built],
            )?;
            if publish && has_table(&tx, &table)? {
                let position = "(SELECT position FROM projection_state WHERE name = ?1)";
                let previous = match &retired {
                    Some(retired) => format!("(SELECT r.scope FROM \"{retired}\" r WHERE r.key = n.key)"),
                    None => "NULL".into(),
                };
                tx.execute(
                    &format!(
                        "INSERT INTO feed_outbox (view, key, scope, previous_scope, position)
                         SELECT ?1, n.key, n.scope, {previous}, {position} FROM {table} n ORDER BY n.key"
                    ),
                    params![name],
                )?;
                if let Some(retired) = &retired {
                    tx.execute(
                        &format!(
                            "INSERT INTO feed_outbox (view, key, scope, previous_scope, position)
                             SELECT ?1, r.key, NULL, r.scope, {position} FROM \"{retired}\" r
                             WHERE NOT EXISTS (SELECT 1 FROM {table} n WHERE n.key = r.key)
                             ORDER BY r.key"
                        ),
                        params![name],
                    )?;
                }
            }
            tx.commit()
        })
        .await?;
        self.bulk_views().remove(&swapped);
        self.drop_retired();
        Ok(())
    }

    async fn load_rows(&self, name: &str) -> Result<Vec<StoredRow>, ViewsError> {
        let table = rows_table(name);
        self.run(move |conn| {
            if !has_table(conn, &table)? {
                return Ok(Vec::new());
            }
            let mut query =
                conn.prepare_cached(&format!("SELECT key, row FROM {table} ORDER BY key"))?;
            let rows = query
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<StoredRow>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn scoped_rows(
        &self,
        name: &str,
        scope: &str,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        let name = name.to_string();
        let table = rows_table(&name);
        let scope = scope.to_string();
        self.run(move |conn| {
            // One read transaction: the rows and the position they cover agree.
            let tx = conn.unchecked_transaction()?;
            let position = saved_position(&tx, &name)?;
            let rows = if has_table(&tx, &table)? {
                let mut query = tx.prepare_cached(&format!(
                    "SELECT key, row FROM {table} WHERE scope = ?1 ORDER BY key"
                ))?;
                let rows = query
                    .query_map(params![scope], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<StoredRow>>>()?;
                rows
            } else {
                Vec::new()
            };
            tx.commit()?;
            Ok((position, rows))
        })
        .await
    }

    async fn rows_after(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        scope: Option<&str>,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        let name = name.to_string();
        let table = rows_table(&name);
        // Keys from `prefix` up to (not including) the first key past every key that
        // begins with it: the prefix with its last byte raised (`registration/` ->
        // `registration0`).
        let start = after.map_or_else(|| prefix.to_string(), str::to_string);
        let inclusive = after.is_none();
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last = last.saturating_add(1);
        }
        let end = String::from_utf8_lossy(&end).into_owned();
        let scope = scope.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            // One read transaction: the rows and the position they cover agree.
            let tx = conn.unchecked_transaction()?;
            let position = saved_position(&tx, &name)?;
            let rows = if has_table(&tx, &table)? {
                let from = if inclusive { ">=" } else { ">" };
                let mut query = tx.prepare_cached(&format!(
                    "SELECT key, row FROM {table}
                     WHERE key {from} ?1 AND key < ?2 AND (?3 IS NULL OR scope = ?3)
                     ORDER BY key LIMIT ?4"
                ))?;
                let rows = query
                    .query_map(params![start, end, scope, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<StoredRow>>>()?;
                rows
            } else {
                Vec::new()
            };
            tx.commit()?;
            Ok((position, rows))
        })
        .await
    }

    async fn reset(&self, name: &str) -> Result<(), ViewsError> {
        let name = name.to_string();
        let table = rows_table(&name);
        let name = self
            .run(move |conn| {
                let tx = conn.unchecked_transaction()?;
                if has_table(&tx, &table)? {
                    // Forgotten at once, dropped later: the table is renamed aside (without
                    // its scope index, so the next save makes a new one) and dropped once
                    // no view of this process is being rebuilt (at the last `caught_up`).
                    // Why: dropping a table of 333k rows reads every page of it (1.5 s
                    // once); a rebuild waited for that before it folded its first event,
                    // and later its saves, which share this connection, waited for it.
                    let retired = format!("{table}{RETIRED}{}", uuid::Uuid::now_v7().simple());
                    tx.execute_batch(&format!(
                        "DROP INDEX IF EXISTS {index};
                     ALTER TABLE {table} RENAME TO \"{retired}\";",
                        index = scope_index(&table)
                    ))?;
                }
                tx.execute(
                    "DELETE FROM projection_state WHERE name = ?1",
                    params![&name],
                )?;
                tx.commit()?;
                Ok(name)
            })
            .await?;
        self.bulk_views().insert(name);
        Ok(())
    }

    async fn caught_up(&self, name: &str) -> Result<(), ViewsError> {
        if !self.in_bulk(name) {
            return Ok(());
        }
        let table = rows_table(name);
        self.run(move |conn| {
            if has_table(conn, &table)? {
                ensure_scope_index(conn, &table)?;
            }
            Ok(())
        })
        .await?;
        // Out of bulk only once the index is there: a failed build is tried again by the
        // next catch-up, and saves meanwhile still leave the index out.
        let rebuilding = {
            let mut bulk = self.bulk_views();
            bulk.remove(name);
            !bulk.is_empty()
        };
        if !rebuilding {
            self.drop_retired();
        }
        Ok(())
    }
}

/// Marks a row table renamed aside by a reset, to be dropped. `~` is never in the name of
/// a live row table ([`rows_table`] writes it `_7e`).
const RETIRED: &str = "~retired~";

impl SqliteCheckpoints {
    fn in_bulk(&self, name: &str) -> bool {
        self.bulk_views().contains(name)
    }

    /// The views being written in bulk. A poisoned lock still holds a sound set: every
    /// change to it is one insert or remove.
    fn bulk_views(&self) -> MutexGuard<'_, HashSet<String>> {
        self.bulk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the row tables resets renamed aside, on the blocking pool, holding the
    /// connection (a save waits for it). A process that stops first leaves them for the
    /// next view of any process to catch up after a reset, or for
    /// [`SqliteCheckpoints::drop_retired_now`].
    fn drop_retired(&self) {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = drop_tables_like(&conn, &format!("rows\\_%{RETIRED}%")) {
                tracing::warn!(error = %e, "a reset view's old rows could not be dropped yet; the next rebuild tries again");
            }
        });
    }

    /// Drops the row tables resets renamed aside (the rows of views since rebuilt), and
    /// returns once they are gone: `dealreg rebuild` frees them after the rebuilt views
    /// are complete, so the rebuild never waits for them.
    pub async fn drop_retired_now(&self) -> Result<(), ViewsError> {
        self.run(|conn| drop_tables_like(conn, &format!("rows\\_%{RETIRED}%")))
            .await
    }
}

impl Leases for SqliteCheckpoints {
    async fn try_acquire(
        &self,
        lease: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, ViewsError> {
        let (lease, holder) = (lease.to_string(), holder.to_string());
        let now_ms = now.timestamp_millis();
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.run(move |conn| {
            let changed = conn.execute(
                "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder,
                     expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4",
                params![lease, holder, until, now_ms],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, lease: &str, holder: &str) -> Result<(), ViewsError> {
        let (lease, holder) = (lease.to_string(), holder.to_string());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![lease, holder],
            )
            .map(|_| ())
        })
        .await
    }
}

/// A position as a views file stores it: the token as text (a column of INTEGER affinity
/// keeps a one-number token as an integer, and files written before positions were
/// tokens hold integers).
fn position_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Position> {
    use rusqlite::types::{Type, ValueRef};
    match row.get_ref(index)? {
        ValueRef::Integer(n) => u64::try_from(n).map(Position::at).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, Box::new(e))
        }),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))?
            .parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))),
        other => Err(rusqlite::Error::InvalidColumnType(
            index,
            "position".into(),
            other.data_type(),
        )),
    }
}
