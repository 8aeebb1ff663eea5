//! The embedded default backend: one SQLite file an auditor can open with `sqlite3`.
//!
//! Durability and speed come from one design: a single writer thread owns the write
//! connection and commits in groups. It blocks for the first waiting append, takes every
//! other append already queued (up to [`MAX_GROUP`]), runs each in its own SAVEPOINT inside
//! one transaction, commits once (`synchronous=FULL`: that commit is the fsync), and only
//! then answers every caller. An append whose expected version fails rolls back its own
//! savepoint and gets its error; the others in the group still commit. Idempotency keys are
//! checked and recorded inside the same savepoint as the events.
//!
//! Reads use their own read-only connections (WAL lets them run beside the writer), on
//! tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{oneshot, watch};

use dealreg_store::chain::{event_hash, GENESIS_HASH};
use dealreg_store::{
    check_expected, validate, AppendOutcome, AppendRequest, EventStore, GlobalPosition,
    RecordedEvent, StoreError, StreamRevision, WriteOutcome,
};

mod checkpoints;

pub use checkpoints::SqliteCheckpoints;

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
    UNIQUE (stream, revision)
);
CREATE TABLE IF NOT EXISTS streams (
    stream        TEXT PRIMARY KEY,
    last_revision INTEGER NOT NULL,
    last_hash     TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    outcome     TEXT NOT NULL
) WITHOUT ROWID;
";

/// How much grouping the writer achieved: `jobs / commits` appends per fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub commits: u64,
    pub jobs: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    head: Arc<watch::Sender<GlobalPosition>>,
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

/// The SQLite event store. Clones share one writer and one reader pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its schema when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|e| {
            StoreError::Backend(format!(
                "cannot open {}: {e}; check the path and its permissions",
                path.display()
            ))
        })?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} cannot use WAL journaling (got `{mode}`); put the store on a local disk",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let last: Option<i64> = conn
            .query_row("SELECT max(position) FROM events", [], |row| row.get(0))
            .map_err(backend)?;
        let head_position = GlobalPosition(last.map_or(0, |p| p as u64));
        let (head, _) = watch::channel(head_position);
        let head = Arc::new(head);
        let counters = Arc::new(Counters::default());
        let (sender, receiver) = mpsc::channel::<Job>();
        let writer = {
            let head = Arc::clone(&head);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name("dealreg-sqlite-writer".into())
                .spawn(move || writer_loop(conn, receiver, &head, &counters))
                .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                jobs: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                head,
                counters,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends and commits so far (for benchmarks and the group-commit test).
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.inner.counters.commits.load(Ordering::Relaxed),
            jobs: self.inner.counters.jobs.load(Ordering::Relaxed),
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
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    conn.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(backend)?;
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
}

impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        validate(&request)?;
        let (reply, answer) = oneshot::channel();
        {
            let jobs = self
                .inner
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Job { request, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: StreamRevision,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_string();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash
                 FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision LIMIT ?3",
            )?;
            let rows = query.query_map(params![stream, from, limit], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let after = i64::try_from(after.0).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(
                "SELECT position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash
                 FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = query.query_map(params![after, limit], row_to_event)?;
            rows.collect()
        })
        .await
    }

    fn head(&self) -> watch::Receiver<GlobalPosition> {
        self.inner.head.subscribe()
    }
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let event_id: String = row.get(3)?;
    let event_id = uuid::Uuid::parse_str(&event_id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(RecordedEvent {
        position: GlobalPosition(row.get::<_, i64>(0)? as u64),
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
    receiver: mpsc::Receiver<Job>,
    head: &watch::Sender<GlobalPosition>,
    counters: &Counters,
) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let results = commit_group(&conn, &group);
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .jobs
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let newest = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.writes.iter().flat_map(|w| w.positions.iter().copied()))
            .max();
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
        for (job, result) in group.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
    tracing::debug!("sqlite writer stopped: the store was closed");
}

/// Runs a group of appends in one transaction. Returns one result per job, in order;
/// results are only `Ok` when the commit itself succeeded.
fn commit_group(conn: &Connection, group: &[Job]) -> Vec<Result<AppendOutcome, StoreError>> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = format!("cannot start a write transaction: {e}");
        return group
            .iter()
            .map(|_| Err(StoreError::Backend(message.clone())))
            .collect();
    }
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let result = match conn.execute_batch("SAVEPOINT append") {
            Ok(()) => {
                let result = apply(conn, &job.request);
                let end = if result.is_ok() {
                    "RELEASE append"
                } else {
                    "ROLLBACK TO append; RELEASE append"
                };
                match conn.execute_batch(end) {
                    Ok(()) => result,
                    Err(e) => Err(backend(e)),
                }
            }
            Err(e) => Err(backend(e)),
        };
        results.push(result);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => results,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let message = format!("commit failed, nothing was written: {e}");
            results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => Err(StoreError::Backend(message.clone())),
                    Err(other) => Err(other),
                })
                .collect()
        }
    }
}

/// One append inside its savepoint.
fn apply(conn: &Connection, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
    validate(request)?;
    if let Some(idem) = &request.idempotency {
        let seen: Option<(String, String)> = conn
            .prepare_cached("SELECT fingerprint, outcome FROM idempotency WHERE key = ?1")
            .and_then(|mut q| {
                q.query_row(params![idem.key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        if let Some((fingerprint, outcome)) = seen {
            if fingerprint != idem.fingerprint {
                return Err(StoreError::IdempotencyKeyReused {
                    key: idem.key.clone(),
                });
            }
            let mut outcome: AppendOutcome = serde_json::from_str(&outcome).map_err(|e| {
                StoreError::Backend(format!("stored idempotency outcome is unreadable: {e}"))
            })?;
            outcome.deduplicated = true;
            return Ok(outcome);
        }
    }
    let mut tips = Vec::with_capacity(request.writes.len());
    for write in &request.writes {
        let tip: Option<(i64, String)> = conn
            .prepare_cached("SELECT last_revision, last_hash FROM streams WHERE stream = ?1")
            .and_then(|mut q| {
                q.query_row(params![write.stream], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        check_expected(
            &write.stream,
            write.expected,
            tip.as_ref().map(|t| t.0 as u64),
        )?;
        tips.push(tip);
    }
    let mut writes = Vec::with_capacity(request.writes.len());
    for (write, tip) in request.writes.iter().zip(tips) {
        let (mut revision, mut prev_hash) = match tip {
            Some((last, hash)) => (last as u64 + 1, hash),
            None => (0, GENESIS_HASH.to_string()),
        };
        let mut outcome = WriteOutcome {
            stream: write.stream.clone(),
            revisions: Vec::with_capacity(write.events.len()),
            positions: Vec::with_capacity(write.events.len()),
        };
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO events (stream, revision, event_id, event_type, data, metadata, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?;
        for event in &write.events {
            let hash = event_hash(
                &prev_hash,
                &write.stream,
                revision,
                &event.event_id,
                &event.event_type,
                &event.data,
                &event.metadata,
            );
            insert
                .execute(params![
                    write.stream,
                    revision as i64,
                    event.event_id.to_string(),
                    event.event_type,
                    event.data,
                    event.metadata,
                    prev_hash,
                    hash
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
            outcome.revisions.push(revision);
            outcome
                .positions
                .push(GlobalPosition(conn.last_insert_rowid() as u64));
            prev_hash = hash;
            revision += 1;
        }
        if let Some(last) = outcome.revisions.last() {
            conn.prepare_cached(
                "INSERT INTO streams (stream, last_revision, last_hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT(stream) DO UPDATE SET last_revision = excluded.last_revision, last_hash = excluded.last_hash",
            )
            .and_then(|mut q| q.execute(params![write.stream, *last as i64, prev_hash]))
            .map_err(backend)?;
        }
        writes.push(outcome);
    }
    let outcome = AppendOutcome {
        writes,
        deduplicated: false,
    };
    if let Some(idem) = &request.idempotency {
        let stored = serde_json::to_string(&outcome)
            .map_err(|e| StoreError::Backend(format!("cannot encode the outcome: {e}")))?;
        conn.prepare_cached(
            "INSERT INTO idempotency (key, fingerprint, outcome) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut q| q.execute(params![idem.key, idem.fingerprint, stored]))
        .map_err(backend)?;
    }
    Ok(outcome)
}
