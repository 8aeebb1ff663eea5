//! The key vault of the embedded store: `<store>-keys`, a SQLite file of its own beside
//! the store, holding one key per person whose contact the log holds sealed.
//!
//! Why a separate file: a copy of the store (a backup, an auditor's copy, an export) must
//! carry ciphertext only, and destroying a key must erase the person from all of them at
//! once. So the keys never enter the store's file, and this file is backed up (or not) on
//! its own terms. It is as precious as the log: losing it makes every contact unreadable.
//!
//! Durability: a new key is committed with `synchronous=FULL` before the event it seals is
//! appended, so an acknowledged event never names a key that a crash could lose. New keys
//! are written in groups: a caller whose key is missing queues its address, and whoever
//! takes the connection next writes every queued address in one transaction (one fsync
//! for all of them). Erasure: `secure_delete` zeroes a deleted key's bytes in the file,
//! and `forget` then truncates the WAL, so no copy of the key is left in either file.
//! Several processes may share the vault: each checks SQLite's `data_version` before it
//! trusts its cache, so a key forgotten by another process is never used again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dealreg_store::{normalise_email, KeyMaterial, KeyVault, PersonKey, VaultError};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use uuid::Uuid;

use crate::open;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS person_keys (
    email      TEXT PRIMARY KEY,
    person     TEXT NOT NULL UNIQUE,
    key        BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten (
    person       TEXT PRIMARY KEY,
    forgotten_at TEXT NOT NULL
);
";

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
}

pub struct SqliteVault {
    path: PathBuf,
    material: KeyMaterial,
    read_only: bool,
    inner: Mutex<Inner>,
    /// Addresses waiting for a key, written by the next holder of the connection.
    queued: Mutex<Vec<(String, DateTime<Utc>)>>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl SqliteVault {
    /// Opens (creating when missing) the vault of the store at `store`, making new keys
    /// from `material` (`KeyMaterial::Random` for every real store).
    pub fn open(store: &Path, material: KeyMaterial) -> Result<SqliteVault, VaultError> {
        let path = vault_path(store);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&path, e))?;
        open::wait_when_busy(&conn).map_err(|e| io(&path, e))?;
        open::switch_to_wal(&conn, &path).map_err(|e| io(&path, e))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")
            .map_err(|e| io(&path, e))?;
        open::in_immediate_transaction(&conn, SCHEMA).map_err(|e| io(&path, e))?;
        Self::with(path, conn, material, false)
    }

    /// Opens the vault of the store at `store` for reading only, as an auditor's tools do:
    /// `None` when there is none (contacts are then shown sealed).
    pub fn open_read_only(store: &Path) -> Result<Option<SqliteVault>, VaultError> {
        let path = vault_path(store);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&path, e))?;
        open::wait_when_busy(&conn).map_err(|e| io(&path, e))?;
        Self::with(path, conn, KeyMaterial::Random, true).map(Some)
    }

    fn with(
        path: PathBuf,
        conn: Connection,
        material: KeyMaterial,
        read_only: bool,
    ) -> Result<SqliteVault, VaultError> {
        let data_version = data_version(&conn).map_err(|e| io(&path, e))?;
        Ok(SqliteVault {
            path,
            material,
            read_only,
            inner: Mutex::new(Inner {
                conn,
                data_version,
                by_email: HashMap::new(),
                by_person: HashMap::new(),
            }),
            queued: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many keys the vault holds.
    pub fn len(&self) -> Result<u64, VaultError> {
        let inner = self.inner();
        inner
            .conn
            .query_row("SELECT COUNT(*) FROM person_keys", [], |r| r.get(0))
            .map_err(|e| io(&self.path, e))
    }

    pub fn is_empty(&self) -> Result<bool, VaultError> {
        self.len().map(|n| n == 0)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, with the cache dropped if another connection committed since it
    /// was filled (a key it holds may have been forgotten there).
    fn current(&self) -> Result<MutexGuard<'_, Inner>, VaultError> {
        let mut inner = self.inner();
        let now = data_version(&inner.conn).map_err(|e| io(&self.path, e))?;
        if now != inner.data_version {
            inner.by_email.clear();
            inner.by_person.clear();
            inner.data_version = now;
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
        inner.by_email.insert(email.to_string(), found.clone());
        inner.by_person.insert(found.person, found.key);
        Ok(Some(found))
    }

    fn queued(&self) -> MutexGuard<'_, Vec<(String, DateTime<Utc>)>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes keys for `batch` in one transaction (an address that has one keeps it).
    fn write_keys(
        &self,
        conn: &Connection,
        batch: &[(String, DateTime<Utc>)],
    ) -> Result<(), VaultError> {
        let write = || -> Result<(), VaultError> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| io(&self.path, e))?;
            for (email, at) in batch {
                let key = self.material.new_key(email, *at)?;
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO person_keys (email, person, key, created_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![email, key.person.to_string(), &key.key[..], at.to_rfc3339()])
                })
                .map_err(|e| io(&self.path, e))?;
            }
            conn.execute_batch("COMMIT").map_err(|e| io(&self.path, e))
        };
        let written = write();
        if written.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        written
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

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

fn person_key(path: &Path, person: &str, key: &[u8]) -> Result<PersonKey, VaultError> {
    let person =
        Uuid::parse_str(person).map_err(|e| io(path, format!("a person id is not a UUID: {e}")))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| io(path, "a key is not 32 bytes"))?;
    Ok(PersonKey { person, key })
}

impl KeyVault for SqliteVault {
    fn known(&self, email: &str) -> Result<Option<PersonKey>, VaultError> {
        let email = normalise_email(email);
        let mut inner = self.current()?;
        self.lookup(&mut inner, &email)
    }

    fn key_for(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        let email = normalise_email(email);
        if let Some(found) = self.known(&email)? {
            return Ok(found);
        }
        if self.read_only {
            return Err(VaultError::ReadOnly {
                path: self.path.display().to_string(),
            });
        }
        self.queued().push((email.clone(), at));
        // Whoever holds the connection now may be writing this address already.
        let mut inner = self.current()?;
        if let Some(found) = self.lookup(&mut inner, &email)? {
            return Ok(found);
        }
        let mut batch = std::mem::take(&mut *self.queued());
        if !batch.iter().any(|(e, _)| *e == email) {
            batch.push((email.clone(), at));
        }
        batch.sort();
        batch.dedup_by(|a, b| a.0 == b.0);
        self.write_keys(&inner.conn, &batch)?;
        self.lookup(&mut inner, &email)?
            .ok_or_else(|| io(&self.path, "a key just written cannot be read back"))
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
        let mut inner = self.current()?;
        let conn = &inner.conn;
        let forget = || -> Result<Option<Uuid>, VaultError> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| io(&self.path, e))?;
            let person: Option<String> = conn
                .query_row(
                    "SELECT person FROM person_keys WHERE email = ?1",
                    [&email],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| io(&self.path, e))?;
            if let Some(person) = &person {
                conn.execute("DELETE FROM person_keys WHERE email = ?1", [&email])
                    .and_then(|_| {
                        conn.execute(
                            "INSERT OR REPLACE INTO forgotten (person, forgotten_at) VALUES (?1, ?2)",
                            params![person, at.to_rfc3339()],
                        )
                    })
                    .map_err(|e| io(&self.path, e))?;
            }
            conn.execute_batch("COMMIT")
                .map_err(|e| io(&self.path, e))?;
            person
                .map(|p| Uuid::parse_str(&p).map_err(|e| io(&self.path, e)))
                .transpose()
        };
        let forgotten = forget();
        if forgotten.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let forgotten = forgotten?;
        let purged = self.purge(conn)?;
        inner.by_email.remove(&email);
        if let Some(person) = forgotten {
            inner.by_person.remove(&person);
        }
        if !purged {
            return Err(io(
                &self.path,
                format!(
                    "the key is deleted, but an old copy may remain in {}-wal while other processes read the vault; stop them (dealreg serve) and run forget again to purge it",
                    self.path.display()
                ),
            ));
        }
        Ok(forgotten)
    }
}
