//! The key vault of the embedded store: `<store>-keys`, a SQLite file of its own beside
//! the store, holding one key per person whose contact the log holds sealed.
//!
//! Why a separate file: a copy of the store (a backup, an auditor's copy, an export) must
//! carry ciphertext only, and destroying a key must erase the person from all of them at
//! once. So the keys never enter the store's file, and this file is backed up (or not) on
//! its own terms. It is as precious as the log: losing it makes every contact unreadable.
//!
//! Durability without waiting on the disk per new person: each handle makes keys ahead,
//! in a *reserve* written in one `synchronous=FULL` transaction (16 keys at first,
//! doubling to [`POOL_BATCH`]) before any of them is handed out. A new address takes the
//! next reserved key in memory: an acknowledged event therefore never names a key that a
//! crash could lose. The record "this key is that address's" is written later, in
//! batches, without an fsync (and with one when the handle closes). A crash can lose
//! those records; their keys stay (retired: every open retires what any handle had in
//! reserve, so a key that may be in use is never handed out again), and `forget` does not
//! rely on the records alone: it also opens the contacts in the log (see `dealreg
//! forget`), so a lost record costs at most a second person for one address, never an
//! erasure missed. Erasure: `secure_delete` zeroes a deleted key's bytes, and `forget`
//! then truncates the WAL, so no copy of the key is left in either file. Several
//! processes may share the vault: each checks SQLite's `data_version` before it trusts
//! its cache, so a key forgotten by another process is never used again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dealreg_vault::{normalise_email, KeyMaterial, KeyVault, PersonKey, VaultError, VaultFuture};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use uuid::Uuid;

use crate::open;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS person_keys (
    person     TEXT PRIMARY KEY,
    key        BLOB NOT NULL,
    -- `reserved` (made ahead by a handle, handed out only by it), `assigned` (to
    -- `email`), `retired` (made ahead and perhaps handed out before a crash lost the
    -- record: kept, readable, never handed out again).
    state      TEXT NOT NULL,
    email      TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten (
    person       TEXT PRIMARY KEY,
    forgotten_at TEXT NOT NULL
);
";

/// Keys made ahead in one durable transaction, at most. A handle's first reserve is
/// [`FIRST_RESERVE`] keys and each next one twice the last: a short `dealreg apply` run
/// leaves few unused keys to retire, a busy `serve` pays one fsync per 256 new persons.
pub const POOL_BATCH: usize = 256;
const FIRST_RESERVE: usize = 16;
/// Records of handed-out keys written together.
const RECORD_BATCH: usize = 64;
/// Keys cached per handle, at most (about 10 MiB); beyond it the cache starts over and
/// refills from the file, so a long-running `serve` does not grow with every person.
const MAX_CACHED: usize = 65_536;

/// How long `forget` tries to truncate the WAL while other connections read it.
const PURGE_PATIENCE: Duration = Duration::from_secs(5);

/// The vault of the store at `store`: `<store>-keys`.
pub fn vault_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push("-keys");
    PathBuf::from(name)
}

struct Inner {
    conn: Connection,
    /// `PRAGMA data_version` when the cache was last known good.
    data_version: i64,
    by_email: HashMap<String, PersonKey>,
    by_person: HashMap<Uuid, [u8; 32]>,
    /// Keys this handle made ahead (durable), not handed out yet.
    reserve: VecDeque<PersonKey>,
    /// Keys handed out here whose record is not written yet.
    handed: Vec<(String, PersonKey)>,
    /// How many keys the next reserve makes.
    next_reserve: usize,
}

/// The key vault in a SQLite file beside the store (`<store>-keys`). Clones share the
/// file's one handle.
#[derive(Clone)]
pub struct SqliteVault {
    file: Arc<VaultFile>,
}

struct VaultFile {
    path: PathBuf,
    material: KeyMaterial,
    read_only: bool,
    inner: Mutex<Inner>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl VaultFile {
    /// Opens (creating when missing) the vault of the store at `store`, making new keys
    /// from `material` (`KeyMaterial::Random` for every real store).
    fn open(store: &Path, material: KeyMaterial) -> Result<VaultFile, VaultError> {
        let path = vault_path(store);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&path, e))?;
        open::set_up(&conn).map_err(|e| io(&path, e))?;
        open::switch_to_wal(&conn, &path).map_err(|e| io(&path, e))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")
            .map_err(|e| io(&path, e))?;
        open::in_immediate_transaction(&conn, SCHEMA).map_err(|e| io(&path, e))?;
        // Keys any handle made ahead may have been handed out with a record a crash lost.
        // (A live handle keeps handing out its own reserve; nobody else ever will.)
        conn.execute(
            "UPDATE person_keys SET state = 'retired' WHERE state = 'reserved'",
            [],
        )
        .map_err(|e| io(&path, e))?;
        Self::with(path, conn, material, false)
    }

    /// Opens the vault of the store at `store` for reading only, as an auditor's tools do:
    /// `None` when there is none (contacts are then shown sealed).
    fn open_read_only(store: &Path) -> Result<Option<VaultFile>, VaultError> {
        let path = vault_path(store);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&path, e))?;
        open::set_up(&conn).map_err(|e| io(&path, e))?;
        Self::with(path, conn, KeyMaterial::Random, true).map(Some)
    }

    fn with(
        path: PathBuf,
        conn: Connection,
        material: KeyMaterial,
        read_only: bool,
    ) -> Result<VaultFile, VaultError> {
        let data_version = data_version(&conn).map_err(|e| io(&path, e))?;
        Ok(VaultFile {
            path,
            material,
            read_only,
            inner: Mutex::new(Inner {
                conn,
                data_version,
                by_email: HashMap::new(),
                by_person: HashMap::new(),
                reserve: VecDeque::new(),
                handed: Vec::new(),
                next_reserve: FIRST_RESERVE,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many persons the vault holds a key for (keys made ahead and not handed out
    /// are not counted). Writes this handle's pending records first.
    pub fn len(&self) -> Result<u64, VaultError> {
        let mut inner = self.current()?;
        self.write_records(&mut inner)?;
        inner
            .conn
            .query_row(
                "SELECT COUNT(*) FROM person_keys WHERE state = 'assigned'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| io(&self.path, e))
    }

    pub fn is_empty(&self) -> Result<bool, VaultError> {
        self.len().map(|n| n == 0)
    }

    /// The key the vault knows for `email`, without handing one out.
    pub fn known(&self, email: &str) -> Result<Option<PersonKey>, VaultError> {
        let email = normalise_email(email);
        let mut inner = self.current()?;
        self.lookup(&mut inner, &email)
    }

    /// Writes the records of keys handed out here, durably.
    pub fn flush(&self) -> Result<(), VaultError> {
        let mut inner = self.current()?;
        self.write_records(&mut inner)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, with the cache dropped if another connection committed since it
    /// was filled (a key it holds may have been forgotten there). Keys handed out here
    /// and not recorded yet stay known, unless another process destroyed them.
    fn current(&self) -> Result<MutexGuard<'_, Inner>, VaultError> {
        let mut inner = self.inner();
        let now = data_version(&inner.conn).map_err(|e| io(&self.path, e))?;
        if now != inner.data_version {
            inner.by_email.clear();
            inner.by_person.clear();
            inner.data_version = now;
            let handed = std::mem::take(&mut inner.handed);
            for (email, key) in handed {
                let exists = inner
                    .conn
                    .prepare_cached("SELECT 1 FROM person_keys WHERE person = ?1")
                    .and_then(|mut s| s.exists([key.person.to_string()]))
                    .map_err(|e| io(&self.path, e))?;
                if exists {
                    inner.by_email.insert(email.clone(), key.clone());
                    inner.by_person.insert(key.person, key.key);
                    inner.handed.push((email, key));
                }
            }
        }
        Ok(inner)
    }

    fn lookup(&self, inner: &mut Inner, email: &str) -> Result<Option<PersonKey>, VaultError> {
        if let Some(found) = inner.by_email.get(email) {
            return Ok(Some(found.clone()));
        }
        let row = inner
            .conn
            .prepare_cached("SELECT person, key FROM person_keys WHERE email = ?1")
            .and_then(|mut s| {
                s.query_row([email], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
            })
            .map_err(|e| io(&self.path, e))?;
        let Some((person, key)) = row else {
            return Ok(None);
        };
        let found = person_key(&self.path, &person, &key)?;
        remember(inner, email, &found);
        Ok(Some(found))
    }

    /// Hands the next reserved key to `email`, in memory (its record is written with
    /// the next batch); `None` when the reserve is empty.
    fn hand_out(&self, inner: &mut Inner, email: &str) -> Result<Option<PersonKey>, VaultError> {
        let Some(key) = inner.reserve.pop_front() else {
            return Ok(None);
        };
        remember(inner, email, &key);
        inner.handed.push((email.to_string(), key.clone()));
        if inner.handed.len() >= RECORD_BATCH {
            self.write_records_with(inner, "NORMAL")?;
        }
        Ok(Some(key))
    }

    /// Writes the records of the keys handed out here (durably).
    fn write_records(&self, inner: &mut Inner) -> Result<(), VaultError> {
        self.write_records_with(inner, "FULL")
    }

    /// Writes the records of the keys handed out here in one transaction, with
    /// `synchronous` = `NORMAL` (no fsync: on the way) or `FULL`. An address another
    /// process recorded first keeps that record (this key is then known by its contacts).
    fn write_records_with(&self, inner: &mut Inner, synchronous: &str) -> Result<(), VaultError> {
        if inner.handed.is_empty() || self.read_only {
            return Ok(());
        }
        let conn = &inner.conn;
        let write = || -> Result<(), VaultError> {
            conn.execute_batch(&format!(
                "PRAGMA synchronous={synchronous}; BEGIN IMMEDIATE"
            ))
            .map_err(|e| io(&self.path, e))?;
            for (email, key) in &inner.handed {
                conn.prepare_cached(
                    "UPDATE OR IGNORE person_keys SET state = 'assigned', email = ?1 WHERE person = ?2",
                )
                .and_then(|mut s| s.execute(params![email, key.person.to_string()]))
                .map_err(|e| io(&self.path, e))?;
            }
            conn.execute_batch("COMMIT").map_err(|e| io(&self.path, e))
        };
        let written = write();
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        conn.execute_batch("PRAGMA synchronous=FULL")
            .map_err(|e| io(&self.path, e))?;
        written?;
        inner.handed.clear();
        // Our own commits do not move data_version for this connection: the cache stays.
        Ok(())
    }

    /// Makes `count` keys ahead for this handle, durably (one FULL commit for all).
    fn make_reserve(&self, inner: &mut Inner, at: DateTime<Utc>) -> Result<(), VaultError> {
        let count = inner.next_reserve;
        let conn = &inner.conn;
        let make = || -> Result<Vec<PersonKey>, VaultError> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| io(&self.path, e))?;
            // Every key ever made is in one of the two tables (a destroyed one leaves its
            // person in `forgotten`), so this counts them all, and seeded material, which
            // derives each key from its place in the sequence, never derives one again.
            let made_before: i64 = conn
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM person_keys) + (SELECT COUNT(*) FROM forgotten)",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| io(&self.path, e))?;
            let mut made = Vec::with_capacity(count);
            for n in 0..count {
                let label = format!("key {}", made_before + n as i64);
                let key = self.material.new_key(&label, at)?;
                conn.prepare_cached(
                    "INSERT INTO person_keys (person, key, state, created_at) VALUES (?1, ?2, 'reserved', ?3)",
                )
                .and_then(|mut s| {
                    s.execute(params![key.person.to_string(), &key.key[..], at.to_rfc3339()])
                })
                .map_err(|e| io(&self.path, e))?;
                made.push(key);
            }
            conn.execute_batch("COMMIT")
                .map_err(|e| io(&self.path, e))?;
            Ok(made)
        };
        let made = make();
        if made.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let made = made?;
        inner.reserve.extend(made);
        inner.next_reserve = (inner.next_reserve * 2).min(POOL_BATCH);
        Ok(())
    }

    /// [`Self::purge`], as an error when other readers kept a copy in the WAL.
    fn purged(&self, conn: &Connection) -> Result<(), VaultError> {
        if self.purge(conn)? {
            return Ok(());
        }
        Err(io(
            &self.path,
            format!(
                "the key is deleted, but an old copy may remain in {}-wal while other processes read the vault; stop them (dealreg serve) and run forget again to purge it",
                self.path.display()
            ),
        ))
    }

    /// Truncates the WAL so that no earlier page image (a deleted key's) survives in it.
    /// Other connections reading the vault can hold it back; waits up to `PURGE_PATIENCE`.
    fn purge(&self, conn: &Connection) -> Result<bool, VaultError> {
        let deadline = std::time::Instant::now() + PURGE_PATIENCE;
        loop {
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(|e| io(&self.path, e))?;
            if busy == 0 {
                return Ok(true);
            }
            if std::time::Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VaultFile {
    fn drop(&mut self) {
        // A clean close leaves every record written and synced.
        let mut inner = self.inner();
        if let Err(e) = self.write_records(&mut inner) {
            tracing::warn!(%e, "the key vault's last records were not written; their keys are retired on the next open and still readable");
        }
    }
}

/// Caches a key, starting the cache over when it is full.
fn remember(inner: &mut Inner, email: &str, key: &PersonKey) {
    if inner.by_email.len() >= MAX_CACHED || inner.by_person.len() >= MAX_CACHED {
        forget_cache(inner);
    }
    inner.by_email.insert(email.to_string(), key.clone());
    inner.by_person.insert(key.person, key.key);
}

/// Empties the cache but for the keys handed out here and not recorded yet (the file
/// cannot give those back by address).
fn forget_cache(inner: &mut Inner) {
    inner.by_email.clear();
    inner.by_person.clear();
    for (email, key) in &inner.handed {
        inner.by_email.insert(email.clone(), key.clone());
        inner.by_person.insert(key.person, key.key);
    }
}

/// Asked before every use of the cache (each command sealing a contact): kept prepared,
/// as parsing the pragma each time was a third of what the check cost.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

fn person_key(path: &Path, person: &str, key: &[u8]) -> Result<PersonKey, VaultError> {
    let person =
        Uuid::parse_str(person).map_err(|e| io(path, format!("a person id is not a UUID: {e}")))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| io(path, "a key is not 32 bytes"))?;
    Ok(PersonKey { person, key })
}

/// The vault's work, done on the calling thread (the [`KeyVault`] impl of [`SqliteVault`]
/// runs what writes and syncs the file on the blocking pool).
impl VaultFile {
    fn try_key_for(
        &self,
        email: &str,
        _at: DateTime<Utc>,
    ) -> Result<Option<PersonKey>, VaultError> {
        let email = normalise_email(email);
        let mut inner = self.current()?;
        if let Some(found) = self.lookup(&mut inner, &email)? {
            return Ok(Some(found));
        }
        if self.read_only {
            return Ok(None);
        }
        self.hand_out(&mut inner, &email)
    }

    fn key_for(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        let email = normalise_email(email);
        if self.read_only {
            return self
                .try_key_for(&email, at)?
                .ok_or_else(|| VaultError::ReadOnly {
                    path: self.path.display().to_string(),
                });
        }
        let mut inner = self.current()?;
        if let Some(found) = self.lookup(&mut inner, &email)? {
            return Ok(found);
        }
        if let Some(key) = self.hand_out(&mut inner, &email)? {
            return Ok(key);
        }
        self.make_reserve(&mut inner, at)?;
        self.hand_out(&mut inner, &email)?
            .ok_or_else(|| io(&self.path, "the keys just made ahead are gone"))
    }

    fn key_of(&self, person: Uuid) -> Result<Option<[u8; 32]>, VaultError> {
        let mut inner = self.current()?;
        if let Some(key) = inner.by_person.get(&person) {
            return Ok(Some(*key));
        }
        let row = inner
            .conn
            .prepare_cached("SELECT key FROM person_keys WHERE person = ?1")
            .and_then(|mut s| {
                s.query_row([person.to_string()], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .map_err(|e| io(&self.path, e))?;
        let Some(key) = row else {
            return Ok(None);
        };
        let found = person_key(&self.path, &person.to_string(), &key)?;
        if inner.by_person.len() >= MAX_CACHED {
            forget_cache(&mut inner);
        }
        inner.by_person.insert(person, found.key);
        Ok(Some(found.key))
    }

    fn forget(&self, email: &str, at: DateTime<Utc>) -> Result<Option<Uuid>, VaultError> {
        if self.read_only {
            return Err(VaultError::ReadOnly {
                path: self.path.display().to_string(),
            });
        }
        let email = normalise_email(email);
        let person = {
            let mut inner = self.current()?;
            self.write_records(&mut inner)?;
            match inner.by_email.get(&email) {
                Some(key) => Some(key.person),
                None => inner
                    .conn
                    .query_row(
                        "SELECT person FROM person_keys WHERE email = ?1",
                        [&email],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                    .map_err(|e| io(&self.path, e))?
                    .map(|p| Uuid::parse_str(&p).map_err(|e| io(&self.path, e)))
                    .transpose()?,
            }
        };
        match person {
            Some(person) => {
                self.forget_person(person, at)?;
                Ok(Some(person))
            }
            None => {
                // Nothing to delete; still make sure nothing earlier lingers in the WAL.
                let inner = self.current()?;
                self.purged(&inner.conn)?;
                Ok(None)
            }
        }
    }

    fn forget_person(&self, person: Uuid, at: DateTime<Utc>) -> Result<bool, VaultError> {
        if self.read_only {
            return Err(VaultError::ReadOnly {
                path: self.path.display().to_string(),
            });
        }
        let mut inner = self.current()?;
        inner.handed.retain(|(_, k)| k.person != person);
        inner.by_email.retain(|_, k| k.person != person);
        inner.by_person.remove(&person);
        let conn = &inner.conn;
        let forget = || -> Result<bool, VaultError> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| io(&self.path, e))?;
            let deleted = conn
                .execute(
                    "DELETE FROM person_keys WHERE person = ?1",
                    [person.to_string()],
                )
                .map_err(|e| io(&self.path, e))?;
            if deleted > 0 {
                conn.execute(
                    "INSERT OR REPLACE INTO forgotten (person, forgotten_at) VALUES (?1, ?2)",
                    params![person.to_string(), at.to_rfc3339()],
                )
                .map_err(|e| io(&self.path, e))?;
            }
            conn.execute_batch("COMMIT")
                .map_err(|e| io(&self.path, e))?;
            Ok(deleted > 0)
        };
        let forgotten = forget();
        if forgotten.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let forgotten = forgotten?;
        self.purged(conn)?;
        Ok(forgotten)
    }
}

impl SqliteVault {
    /// Opens (creating it when missing) the vault of the store at `store`.
    pub fn open(store: &Path, material: KeyMaterial) -> Result<SqliteVault, VaultError> {
        VaultFile::open(store, material).map(SqliteVault::of)
    }

    /// Opens the vault of the store at `store` to read only; `None` when it has none.
    pub fn open_read_only(store: &Path) -> Result<Option<SqliteVault>, VaultError> {
        VaultFile::open_read_only(store).map(|file| file.map(SqliteVault::of))
    }

    fn of(file: VaultFile) -> SqliteVault {
        SqliteVault {
            file: Arc::new(file),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// How many keys the vault holds.
    pub fn len(&self) -> Result<u64, VaultError> {
        self.file.len()
    }

    pub fn is_empty(&self) -> Result<bool, VaultError> {
        self.file.is_empty()
    }

    /// The key of `email` if the vault holds one (never makes one).
    pub fn known(&self, email: &str) -> Result<Option<PersonKey>, VaultError> {
        self.file.known(email)
    }

    /// Writes the records of keys handed out and not written yet.
    pub fn flush(&self) -> Result<(), VaultError> {
        self.file.flush()
    }

    /// Runs `work` on the blocking pool: it writes and syncs the file, which must not hold
    /// a runtime thread.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&VaultFile) -> Result<T, VaultError> + Send + 'static,
    ) -> VaultFuture<'static, T> {
        let file = Arc::clone(&self.file);
        Box::pin(async move {
            let path = file.path.display().to_string();
            tokio::task::spawn_blocking(move || work(&file))
                .await
                .map_err(|e| VaultError::Io {
                    path,
                    reason: format!("its worker stopped: {e}"),
                })?
        })
    }
}

/// Reads (a key it holds, one made ahead, a key by person) are answered on the calling
/// thread; what writes and syncs the file runs on the blocking pool.
impl KeyVault for SqliteVault {
    fn try_key_for(&self, email: &str, at: DateTime<Utc>) -> Result<Option<PersonKey>, VaultError> {
        self.file.try_key_for(email, at)
    }

    fn key_for<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, PersonKey> {
        let email = email.to_string();
        self.blocking(move |file| file.key_for(&email, at))
    }

    fn key_of(&self, person: Uuid) -> VaultFuture<'_, Option<[u8; 32]>> {
        Box::pin(std::future::ready(self.file.key_of(person)))
    }

    fn forget<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, Option<Uuid>> {
        let email = email.to_string();
        self.blocking(move |file| file.forget(&email, at))
    }

    fn forget_person(&self, person: Uuid, at: DateTime<Utc>) -> VaultFuture<'_, bool> {
        self.blocking(move |file| file.forget_person(person, at))
    }
}
