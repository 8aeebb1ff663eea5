//! The embedded default backend: one SQLite file an auditor can open with `sqlite3`.
//!
//! Durability and speed come from one design: a single writer thread owns the write
//! connection and commits in groups. It blocks for the first waiting append, takes every
//! other append already queued (up to [`MAX_GROUP`]), runs each in its own SAVEPOINT inside
//! one transaction, commits once (`synchronous=FULL`: that commit is the fsync), and only
//! then answers every caller. An append whose expected version fails rolls back its own
//! savepoint and gets its error; the others in the group still commit. An append to
//! several streams at once ([`EventStore::append_streams`]) is one savepoint too.
//!
//! Reads use their own read-only connections (WAL lets them run beside the writer), on
//! tokio's blocking pool.
//!
//! Failures inside a group are answered with the truth. A statement that fails with a full
//! disk (SQLITE_FULL) or an I/O error may roll back the whole transaction, not only its
//! savepoint; the writer checks after every step whether the transaction is still open,
//! and once it is gone, no later append of the group runs (it would run in a transaction
//! of its own and commit on `RELEASE`). When `COMMIT` itself fails, the writer reads back
//! what committed and answers each append accordingly ([`StoreError::NotWritten`],
//! [`StoreError::OutcomeUnknown`]).
//!
//! Opening is safe when several processes open one new file at once: the busy timeout is
//! set first, the switch to WAL (for which SQLite does not call the busy handler) is
//! retried with a bounded backoff, and the schema is created inside `BEGIN IMMEDIATE`.
//! Only [`SqliteStore::open`] and [`SqliteOptions::create`] create a file; readers use
//! [`SqliteStore::open_existing`], which refuses a missing, empty or foreign file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{oneshot, watch};

use dealreg_events::chain::link;
use dealreg_events::subscription::{polling, Polling};
use dealreg_events::{
    check_expected, validate, Appended, Capabilities, EventStore, ExpectedVersion, LogStream,
    NewEvent, Position, RecordedEvent, StoreError, StreamAppend, StreamRevision, StreamTip,
};

pub mod audit;
mod checkpoints;
mod open;
mod vault;

pub use checkpoints::{views_path, SqliteCheckpoints};
pub use open::{OpenError, SqliteOptions, StoreSettings};
pub use vault::{vault_path, SqliteVault};

/// Most appends committed in one transaction. Large enough to absorb bursts, small enough
/// that one commit never holds replies back for long.
pub const MAX_GROUP: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    event_id   TEXT    NOT NULL UNIQUE,
    event_type TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    metadata   BLOB    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    log_hash   TEXT    NOT NULL DEFAULT '',
    UNIQUE (stream, revision)
);
CREATE TABLE IF NOT EXISTS store_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    log_hash TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    stream        TEXT PRIMARY KEY,
    last_revision INTEGER NOT NULL,
    last_hash     TEXT    NOT NULL
) WITHOUT ROWID;
";

/// What the writer did: how much grouping it achieved (`jobs / commits` appends per
/// fsync) and whether every acknowledgement was covered by a durable commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions whose `COMMIT` returned success. The store only opens with
    /// `synchronous=FULL` in WAL mode, so each one synced the WAL before any reply.
    pub commits: u64,
    /// Groups that did not commit: a statement lost the transaction, or `COMMIT` failed.
    pub failed_groups: u64,
    /// Appends the writer answered, whatever the answer.
    pub jobs: u64,
    /// Appends answered `Ok`.
    pub acknowledged: u64,
    /// Appends answered `Ok` by a group whose `COMMIT` returned success. Equal to
    /// `acknowledged` unless a `COMMIT` failed and reading back found some appends
    /// committed anyway.
    pub acknowledged_by_commit: u64,
}

#[derive(Default)]
struct Counters {
    /// The last position of each committed group, when the options ask for it.
    marks: Option<Mutex<Vec<u64>>>,
    commits: AtomicU64,
    failed_groups: AtomicU64,
    jobs: AtomicU64,
    acknowledged: AtomicU64,
    acknowledged_by_commit: AtomicU64,
}

/// One append: one stream's part, or several streams' parts written atomically.
struct Job {
    parts: Vec<StreamAppend>,
    reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

/// What the writer thread is asked to do.
enum Message {
    Append(Job),
    /// Change `PRAGMA max_page_count` on the writer connection; answers the cap in force.
    SetMaxPages {
        pages: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

struct Inner {
    path: PathBuf,
    /// Opened by [`SqliteStore::open_read_only`]: no writer, readers opened as immutable
    /// when the copy needs it.
    read_only: Option<ReadOnly>,
    settings: StoreSettings,
    jobs: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    head: Arc<watch::Sender<Position>>,
    counters: Arc<Counters>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop after it has answered what it holds.
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// How a read-only store opens its readers.
#[derive(Debug, Clone, Copy)]
struct ReadOnly {
    immutable: bool,
}

/// The SQLite event store. Clones share one writer and one reader pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its schema when missing. For jobs
    /// that are meant to create a store; readers use [`SqliteStore::open_existing`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Ok(Self::open_with(path, &SqliteOptions::create())?)
    }

    /// Opens a store that must already exist: a missing file, an empty one, or a file
    /// without the `events` table is refused and nothing is created, so a mistyped path
    /// cannot pass for a new, empty and healthy store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        Self::open_with(path, &SqliteOptions::existing())
    }

    /// Opens the store at `path` as `options` say (create or not, a size cap).
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &SqliteOptions,
    ) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref().to_path_buf();
        let (conn, settings) = open::writer_connection(&path, options)?;
        let last: Option<i64> = conn
            .query_row("SELECT max(position) FROM events", [], |row| row.get(0))
            .map_err(|e| OpenError::sqlite(&path, "read the head of the log", e))?;
        let head_position = Position::at(last.map_or(0, |p| p as u64));
        let (head, _) = watch::channel(head_position);
        let head = Arc::new(head);
        let counters = Arc::new(Counters {
            marks: options.records_commits().then(|| Mutex::new(Vec::new())),
            ..Counters::default()
        });
        let (sender, receiver) = mpsc::channel::<Message>();
        let writer = {
            let head = Arc::clone(&head);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name("dealreg-sqlite-writer".into())
                .spawn(move || writer_loop(conn, receiver, &head, &counters))
                .map_err(OpenError::Thread)?
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                read_only: None,
                settings,
                jobs: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                head,
                counters,
            }),
        })
    }

    /// Opens an existing store for reading only, as every job that only reads does (an
    /// auditor's read-only copy opens too): refused as [`SqliteStore::open_existing`]
    /// refuses, and not one byte is written to the file or beside it; appends are refused
    /// (`StoreError::Backend`, saying the store was opened read-only).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref().to_path_buf();
        let (conn, immutable) = open::read_only_connection(&path)?;
        let last: Option<i64> = conn
            .query_row("SELECT max(position) FROM events", [], |row| row.get(0))
            .map_err(|e| OpenError::sqlite(&path, "read the head of the log", e))?;
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, String>(0))
                .unwrap_or_default()
        };
        let settings = StoreSettings {
            journal_mode: pragma("journal_mode").to_ascii_lowercase(),
            synchronous: "read-only".into(),
            max_pages: 0,
        };
        let (head, _) = watch::channel(Position::at(last.map_or(0, |p| p as u64)));
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                read_only: Some(ReadOnly { immutable }),
                settings,
                jobs: Mutex::new(None),
                writer: Mutex::new(None),
                readers: Mutex::new(vec![conn]),
                head: Arc::new(head),
                counters: Arc::new(Counters::default()),
            }),
        })
    }

    /// The durability settings read back from the writer connection at open. The store
    /// refuses to open unless they are WAL and FULL, so this is for tests and operators
    /// who want to see it.
    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    /// Changes the size cap (`PRAGMA max_page_count`) of the writer connection and returns
    /// the cap in force (SQLite never sets it below the file's current size). For tests
    /// that fill a store and free it again, and for operators who cap the file.
    pub async fn set_max_pages(&self, pages: u64) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::SetMaxPages { pages, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, message: Message) -> Result<(), StoreError> {
        let jobs = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.read_only.is_some() {
            return Err(StoreError::Backend(format!(
                "{} was opened read-only and cannot be written; open it with a job that writes (`dealreg apply`)",
                self.inner.path.display()
            )));
        }
        let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
        sender.send(message).map_err(|_| StoreError::Closed)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The last position of every group committed so far, in order, when the store was
    /// opened with [`SqliteOptions::record_commits`] (empty otherwise).
    pub fn commit_marks(&self) -> Vec<u64> {
        self.inner
            .counters
            .marks
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// Appends, commits and acknowledgements so far (for benchmarks and tests).
    pub fn stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            failed_groups: c.failed_groups.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            acknowledged_by_commit: c.acknowledged_by_commit.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` on a pooled read-only connection on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI;
                    let conn = match inner.read_only {
                        Some(ReadOnly { immutable: true }) => {
                            Connection::open_with_flags(open::immutable_uri(&inner.path), flags)
                        }
                        _ => Connection::open_with_flags(&inner.path, flags),
                    }
                    .map_err(backend)?;
                    open::set_up(&conn).map_err(backend)?;
                    conn
                }
            };
            let result = f(&conn).map_err(backend);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < 8 {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Sends `parts` to the writer and waits for the durable answer.
    async fn write(&self, parts: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Append(Job { parts, reply }))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// How often a subscription reads the file again when this process appended nothing:
/// other processes' appends are seen within it.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Events per page of a subscription: a rebuild reads in pages this large (and the next
/// one while it folds this one).
const SUBSCRIPTION_PAGE: usize = 4096;

/// One page of a stream, from a revision on.
const READ_STREAM: &str =
    "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash
     FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision LIMIT ?3";

/// One page of the whole log, after a position.
const READ_ALL: &str =
    "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash
     FROM events WHERE position > ?1 ORDER BY position LIMIT ?2";

impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        validate(stream, &events)?;
        let part = StreamAppend {
            stream: stream.to_string(),
            expected,
            events,
        };
        self.write(vec![part])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("the writer answered no outcome".into()))
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from: StreamRevision = after.map_or(0, |t| t.revision + 1);
        let stream = stream.to_string();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(READ_STREAM)?;
            let rows = query.query_map(params![stream, from, limit], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let after = i64::try_from(after.commit()).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(READ_ALL)?;
            let rows = query.query_map(params![after, limit], row_to_event)?;
            rows.collect()
        })
        .await
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        polling(
            self.clone(),
            self.inner.head.subscribe(),
            after,
            Polling {
                page: SUBSCRIPTION_PAGE,
                poll: POLL,
            },
        )
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let last: Option<i64> = self
            .read(|conn| {
                conn.prepare_cached("SELECT max(position) FROM events")?
                    .query_row([], |row| row.get(0))
            })
            .await?;
        Ok(Position::at(last.map_or(0, |p| p as u64)))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dense_positions: true,
            multi_stream_append: true,
            capacity_in_one_append: true,
        }
    }

    async fn append_streams(&self, parts: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        for (i, part) in parts.iter().enumerate() {
            validate(&part.stream, &part.events)?;
            if parts[..i].iter().any(|p| p.stream == part.stream) {
                return Err(StoreError::InvalidAppend(format!(
                    "stream `{}` appears twice in one append; put its events in one part",
                    part.stream
                )));
            }
        }
        if parts.is_empty() {
            return Err(StoreError::InvalidAppend(
                "an append needs at least one stream".into(),
            ));
        }
        self.write(parts).await
    }
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let event_id: String = row.get(3)?;
    let event_id = uuid::Uuid::parse_str(&event_id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(RecordedEvent {
        position: Position::at(row.get::<_, i64>(0)? as u64),
        stream: row.get(1)?,
        revision: row.get::<_, i64>(2)? as u64,
        event_id,
        event_type: row.get(4)?,
        data: stored_bytes(row, 5)?,
        metadata: stored_bytes(row, 6)?,
        prev_hash: row.get(7)?,
        hash: row.get(8)?,
    })
}

/// The stored bytes of a payload column. Written as BLOB; read as bytes whatever the
/// storage class, so a row edited by hand (SQL string functions turn BLOBs into TEXT)
/// still reads, and the hash chain reports it as altered instead of the read failing.
fn stored_bytes(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    match row.get_ref(index)? {
        ValueRef::Blob(b) => Ok(b.to_vec()),
        ValueRef::Text(t) => Ok(t.to_vec()),
        ValueRef::Null => Ok(Vec::new()),
        ValueRef::Integer(i) => Ok(i.to_string().into_bytes()),
        ValueRef::Real(r) => Ok(r.to_string().into_bytes()),
    }
}

fn writer_loop(
    conn: Connection,
    receiver: mpsc::Receiver<Message>,
    head: &watch::Sender<Position>,
    counters: &Counters,
) {
    while let Ok(first) = receiver.recv() {
        let mut group = Vec::new();
        let mut control = Vec::new();
        match first {
            Message::Append(job) => group.push(job),
            Message::SetMaxPages { pages, reply } => control.push((pages, reply)),
        }
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Message::Append(job)) => group.push(job),
                Ok(Message::SetMaxPages { pages, reply }) => control.push((pages, reply)),
                Err(_) => break,
            }
        }
        // Between groups, so a cap never changes in the middle of a transaction.
        for (pages, reply) in control {
            let _ = reply.send(open::set_max_pages(&conn, pages).map_err(backend));
        }
        if group.is_empty() {
            continue;
        }
        let settled = commit_group(&conn, &group);
        if settled.committed {
            counters.commits.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.failed_groups.fetch_add(1, Ordering::Relaxed);
        }
        let acknowledged = settled.results.iter().filter(|r| r.is_ok()).count() as u64;
        counters
            .jobs
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        counters
            .acknowledged
            .fetch_add(acknowledged, Ordering::Relaxed);
        if settled.committed {
            counters
                .acknowledged_by_commit
                .fetch_add(acknowledged, Ordering::Relaxed);
        }
        let newest = settled
            .results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.iter().flat_map(|w| w.positions.iter().copied()))
            .max();
        if let (true, Some(newest), Some(marks)) = (settled.committed, newest, &counters.marks) {
            let mut marks = marks.lock().unwrap_or_else(PoisonError::into_inner);
            if marks.last().is_none_or(|last| newest.commit() > *last) {
                marks.push(newest.commit());
            }
        }
        // The head moves only after the commit, so a subscriber woken by it finds the
        // events on disk.
        if let Some(newest) = newest {
            head.send_if_modified(|current| {
                if newest > *current {
                    *current = newest;
                    true
                } else {
                    false
                }
            });
        }
        for (job, result) in group.into_iter().zip(settled.results) {
            let _ = job.reply.send(result);
        }
    }
    tracing::debug!("sqlite writer stopped: the store was closed");
}

/// The answers of one group and whether its `COMMIT` succeeded.
struct Settled {
    results: Vec<Result<Vec<Appended>, StoreError>>,
    committed: bool,
}

/// The highest position the writer assigned, recorded beside the events: an auditor tells
/// a cut tail by it (positions are assigned explicitly, so a rolled-back append leaves none
/// behind).
fn read_log_head(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT position FROM log_head WHERE id = 1")?
        .query_row([], |row| Ok(row.get::<_, i64>(0)? as u64))
        .optional()?
        .unwrap_or(0))
}

/// What running one append in its savepoint did to the group's transaction.
enum Step {
    /// The transaction is still open; this is the append's own result.
    Done(Result<Vec<Appended>, StoreError>),
    /// The transaction is gone (SQLite rolled it back, or the writer had to): nothing of
    /// the group so far is written.
    Lost(String),
}

/// Runs one of the writer's transaction statements through the connection's statement
/// cache: they run several times per group, and parsing them again each time showed up as
/// a fifth of the writer's time in the profile.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs a group of appends in one transaction. Returns one result per job, in order;
/// an `Ok` is only returned for an append that is in the committed log.
fn commit_group(conn: &Connection, group: &[Job]) -> Settled {
    // A transaction left open by a failure SQLite did not clean up would make every later
    // BEGIN fail; end it so the store stays usable once the cause is gone.
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "could not roll back a transaction left open");
        }
    }
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let reason = format!("cannot start a write transaction: {e}");
        return Settled {
            results: group.iter().map(|_| Err(not_written(&reason))).collect(),
            committed: false,
        };
    }
    // The highest position assigned, read once per group and carried from append to
    // append; an append whose savepoint is rolled back leaves it as it was.
    let mut head = match read_log_head(conn) {
        Ok(head) => head,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let reason = format!("cannot read the log's head: {e}");
            return Settled {
                results: group.iter().map(|_| Err(not_written(&reason))).collect(),
                committed: false,
            };
        }
    };
    let start = head;
    let mut results: Vec<Result<Vec<Appended>, StoreError>> = Vec::with_capacity(group.len());
    for job in group {
        let mut next = head;
        match step(conn, &job.parts, &mut next) {
            Step::Done(result) => {
                if result.is_ok() {
                    head = next;
                }
                results.push(result)
            }
            Step::Lost(reason) => {
                tracing::warn!(%reason, appends = group.len(), "a write transaction was lost; its group is answered as not written");
                // Everything this group did went with the transaction.
                for earlier in &mut results {
                    if earlier.is_ok() {
                        *earlier = Err(not_written(&format!(
                            "the group's transaction was rolled back ({reason})"
                        )));
                    }
                }
                results.push(Err(not_written(&reason)));
                // Later appends would run outside any transaction (each SAVEPOINT would
                // open one and its RELEASE commit it), so they are not attempted.
                while results.len() < group.len() {
                    results.push(Err(not_written(&format!(
                        "not attempted: an earlier append of its group lost the transaction ({reason})"
                    ))));
                }
                return Settled {
                    results,
                    committed: false,
                };
            }
        }
    }
    if head != start {
        let written = conn
            .prepare_cached(
                "INSERT INTO log_head (id, position, log_hash) VALUES (1, ?1, '')
                 ON CONFLICT(id) DO UPDATE SET position = excluded.position, log_hash = ''",
            )
            .and_then(|mut q| q.execute(params![head as i64]));
        if let Err(e) = written {
            let _ = conn.execute_batch("ROLLBACK");
            let reason = format!("cannot record the log's head: {e}");
            return Settled {
                results: group.iter().map(|_| Err(not_written(&reason))).collect(),
                committed: false,
            };
        }
    }
    match control(conn, "COMMIT") {
        Ok(()) => Settled {
            results,
            committed: true,
        },
        Err(e) => {
            tracing::warn!(error = %e, appends = group.len(), "commit failed; reading back what committed");
            Settled {
                results: settle_failed_commit(conn, group, results, &e.to_string()),
                committed: false,
            }
        }
    }
}

fn not_written(reason: &str) -> StoreError {
    StoreError::NotWritten {
        reason: reason.to_string(),
    }
}

/// One append in its own savepoint, checking after every statement that the group's
/// transaction is still open.
fn step(conn: &Connection, parts: &[StreamAppend], head: &mut u64) -> Step {
    if conn.is_autocommit() {
        return Step::Lost("the transaction ended before the append".into());
    }
    if let Err(e) = control(conn, "SAVEPOINT append") {
        return if conn.is_autocommit() {
            Step::Lost(format!("cannot open a savepoint: {e}"))
        } else {
            Step::Done(Err(not_written(&format!("cannot open a savepoint: {e}"))))
        };
    }
    let result = apply(conn, parts, head);
    if conn.is_autocommit() {
        let why = match &result {
            Err(e) => e.to_string(),
            Ok(_) => "the transaction ended during the append".into(),
        };
        return Step::Lost(why);
    }
    let end = if result.is_ok() {
        control(conn, "RELEASE append")
    } else {
        control(conn, "ROLLBACK TO append").and_then(|()| control(conn, "RELEASE append"))
    };
    if let Err(e) = end {
        // The savepoint's state is unknown; end the whole transaction so nothing of it
        // can commit later.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Step::Lost(format!("cannot end the append's savepoint: {e}"));
    }
    if conn.is_autocommit() {
        return Step::Lost("the transaction ended with the append's savepoint".into());
    }
    Step::Done(result)
}

/// After a failed `COMMIT`: rolls back what may still be open, then reads which appends
/// committed anyway. Those keep their `Ok`; the others are not written; when even the
/// check fails, the outcome is unknown.
fn settle_failed_commit(
    conn: &Connection,
    group: &[Job],
    results: Vec<Result<Vec<Appended>, StoreError>>,
    commit_error: &str,
) -> Vec<Result<Vec<Appended>, StoreError>> {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "rollback after a failed commit failed");
        }
    }
    let stuck = !conn.is_autocommit();
    group
        .iter()
        .zip(results)
        .map(|(job, result)| {
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(other) => return Err(other),
            };
            let check = if stuck {
                Err("the transaction could not be rolled back".to_string())
            } else {
                committed(conn, &job.parts, &outcome)
            };
            match check {
                Ok(true) => Ok(outcome),
                Ok(false) => Err(not_written(&format!("the commit failed ({commit_error})"))),
                Err(why) => Err(StoreError::OutcomeUnknown {
                    reason: format!(
                        "the commit failed ({commit_error}) and reading back what committed failed too ({why})"
                    ),
                }),
            }
        })
        .collect()
}

/// Whether `outcome`, answered inside a transaction whose commit failed, is in the
/// committed log: its first event at the position answered.
fn committed(
    conn: &Connection,
    parts: &[StreamAppend],
    outcome: &[Appended],
) -> Result<bool, String> {
    let first = parts.iter().zip(outcome).find_map(|(part, answered)| {
        Some((part.events.first()?, answered.positions.first().copied()?))
    });
    let Some((event, answered)) = first else {
        return Err("an append answered without events".into());
    };
    let stored: Option<i64> = conn
        .query_row(
            "SELECT position FROM events WHERE event_id = ?1",
            params![event.event_id.to_string()],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    match stored {
        None => Ok(false),
        Some(p) if Position::at(p as u64) == answered => Ok(true),
        Some(p) => Err(format!(
            "event {} is stored at position {p}, not at {answered} as answered",
            event.event_id
        )),
    }
}

/// One append (its parts, one stream each) inside its savepoint: each part's expectation
/// is checked against the stream's tip, its events are chained from that tip
/// ([`link`]) and take the next positions explicitly.
fn apply(
    conn: &Connection,
    parts: &[StreamAppend],
    head: &mut u64,
) -> Result<Vec<Appended>, StoreError> {
    let mut tips = Vec::with_capacity(parts.len());
    for part in parts {
        validate(&part.stream, &part.events)?;
        let tip: Option<(i64, String)> = conn
            .prepare_cached("SELECT last_revision, last_hash FROM streams WHERE stream = ?1")
            .and_then(|mut q| {
                q.query_row(params![part.stream], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        check_expected(
            &part.stream,
            &part.expected,
            tip.as_ref().map(|t| t.0 as u64),
        )?;
        if let (ExpectedVersion::Exact(expected), Some((_, hash))) = (&part.expected, &tip) {
            if expected.hash != *hash {
                return Err(StoreError::InvalidAppend(format!(
                    "the tip of `{}` the append expects has another hash than the stored one: the writer's copy of the stream is not this store's",
                    part.stream
                )));
            }
        }
        tips.push(tip);
    }
    let mut position = *head;
    let mut written = Vec::with_capacity(parts.len());
    for (part, tip) in parts.iter().zip(tips) {
        let links = link(
            &part.stream,
            tip.as_ref().map(|(r, h)| (*r as u64, h.as_str())),
            &part.events,
        );
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO events (position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(backend)?;
        let mut revisions = Vec::with_capacity(links.len());
        let mut positions = Vec::with_capacity(links.len());
        for (event, l) in part.events.iter().zip(&links) {
            position += 1;
            insert
                .execute(params![
                    position as i64,
                    part.stream,
                    l.revision as i64,
                    event.event_id.to_string(),
                    event.event_type,
                    event.data,
                    event.metadata,
                    l.prev_hash,
                    l.hash,
                ])
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        StoreError::InvalidAppend(format!(
                            "event id {} is already stored; every event needs a new id",
                            event.event_id
                        ))
                    }
                    other => backend(other),
                })?;
            revisions.push(l.revision);
            positions.push(Position::at(position));
        }
        let last = links
            .last()
            .ok_or_else(|| StoreError::InvalidAppend("an append needs an event".into()))?;
        conn.prepare_cached(
            "INSERT INTO streams (stream, last_revision, last_hash) VALUES (?1, ?2, ?3)
             ON CONFLICT(stream) DO UPDATE SET last_revision = excluded.last_revision, last_hash = excluded.last_hash",
        )
        .and_then(|mut q| q.execute(params![part.stream, last.revision as i64, last.hash]))
        .map_err(backend)?;
        written.push(Appended {
            stream: part.stream.clone(),
            tip: StreamTip {
                revision: last.revision,
                position: Position::at(position),
                hash: last.hash.clone(),
            },
            revisions,
            positions,
        });
    }
    *head = position;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_events::conformance::event;

    fn job(stream: &str, n: usize) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            parts: vec![StreamAppend {
                stream: stream.into(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("e", n)],
            }],
            reply,
        }
    }

    /// Every connection plans a cached statement once (`open::stable_plans`): the page
    /// queries were parsed and planned again each time their `LIMIT` was bound.
    #[tokio::test]
    async fn a_page_query_is_planned_once_however_often_it_is_bound() {
        use rusqlite::StatementStatus::RePrepare;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).expect("open");
        for n in 0..4 {
            store
                .write(job(&format!("account-{n}.example"), n).parts)
                .await
                .expect("append");
        }
        for page in 1..4 {
            let read = store.read_all(Position::ORIGIN, page).await;
            assert_eq!(read.expect("read").len(), page);
            let stream = store.read_stream("account-0.example", None, page).await;
            assert_eq!(stream.expect("read").len(), 1);
        }
        let conn = store
            .inner
            .readers
            .lock()
            .expect("the reader pool")
            .pop()
            .expect("a pooled reader");
        for sql in [READ_ALL, READ_STREAM] {
            let cached = conn.prepare_cached(sql).expect("cached");
            assert_eq!(cached.get_status(RePrepare), 0, "re-planned: {sql}");
        }
        // What the setting prevents: the same statement on a connection without it.
        let plain = rusqlite::Connection::open(&path).expect("open");
        let mut query = plain.prepare(READ_ALL).expect("prepare");
        for page in 1..3i64 {
            query
                .query_map(params![0, page], |_| Ok(()))
                .expect("query")
                .for_each(drop);
        }
        assert!(
            query.get_status(RePrepare) > 0,
            "SQLite no longer re-plans on a rebind"
        );
    }

    /// A `COMMIT` that fails cannot be provoked on demand, so this runs the settling step
    /// on a state it can produce: one append committed, one rolled back, both answered
    /// `Ok` inside their transactions.
    #[test]
    fn a_failed_commit_is_settled_by_reading_what_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conn, _) = open::writer_connection(&dir.path().join("s.db"), &SqliteOptions::create())
            .expect("open");
        let (a, b) = (job("account-a.example", 0), job("account-b.example", 1));
        let mut head = read_log_head(&conn).expect("the log's head");
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let answered_a = apply(&conn, &a.parts, &mut head);
        conn.execute_batch("COMMIT").expect("commit");
        let mut after_a = head;
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let answered_b = apply(&conn, &b.parts, &mut head);
        // Left open on purpose: settling rolls it back first.
        let group = [a, b];
        let settled =
            settle_failed_commit(&conn, &group, vec![answered_a, answered_b], "simulated");
        assert!(conn.is_autocommit(), "nothing is left open");
        let outcome = settled[0]
            .as_ref()
            .expect("the committed append keeps its Ok");
        assert_eq!(outcome[0].positions, vec![Position::at(1)]);
        assert!(
            matches!(settled[1], Err(StoreError::NotWritten { .. })),
            "{:?}",
            settled[1]
        );

        // When the check itself fails, the answer is "unknown, retry with the same key".
        let c = job("account-c.example", 2);
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let answered_c = apply(&conn, &c.parts, &mut after_a);
        conn.execute_batch("ROLLBACK; ALTER TABLE events RENAME TO moved")
            .expect("hide the table");
        let settled = settle_failed_commit(&conn, &[c], vec![answered_c], "simulated");
        assert!(
            matches!(settled[0], Err(StoreError::OutcomeUnknown { .. })),
            "{:?}",
            settled[0]
        );
    }
}
