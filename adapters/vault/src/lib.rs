//! The key vault: one key per person whose personal data the log holds, kept apart from
//! the log so that destroying a key erases that person's data from every event, export and
//! backup of the log without changing a byte of it (crypto-shredding).
//!
//! Why a trait of its own, beside the event store: the keys must *not* live where the
//! events live. A copy of the store (a backup, an auditor's file, an export) carries the
//! ciphertext only; whoever holds the vault can read it, and after `forget` nobody can.
//! A person is known by their e-mail address (trimmed, lower case); the vault gives each
//! one an id that says nothing about them, and the events name only that id.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A person's key: the id events name and the 32 bytes that seal their data.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonKey {
    pub person: Uuid,
    pub key: [u8; 32],
}

impl std::fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("PersonKey")
            .field("person", &self.person)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the key vault {path} could not be used: {reason}; check that the file is readable and writable and the disk has room, then retry")]
    Io { path: String, reason: String },
    #[error("the key vault {path} is read-only here: it cannot create keys or forget anyone; open it writable (not a read-only copy)")]
    ReadOnly { path: String },
    #[error("the operating system gave no randomness for a new key: {0}")]
    Randomness(String),
}

/// What a vault's waiting methods return: a future the caller awaits on its own runtime.
/// Why boxed: the engine holds its vault as `Arc<dyn KeyVault>` (chosen at start-up), and
/// a vault that talks to servers (JetStream) must not block a runtime thread while it
/// waits for them.
pub type VaultFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, VaultError>> + Send + 'a>>;

/// Where personal-data keys are kept. Every method may be called from many tasks at once.
pub trait KeyVault: Send + Sync + 'static {
    /// The key of the person at `email` if it can be had without waiting: the one the
    /// vault knows, or a key made ahead (already durable) handed out now. `None` when only
    /// [`KeyVault::key_for`] can give it. Never waits on a disk or a server, so the engine
    /// calls it inline for every contact it seals.
    fn try_key_for(&self, email: &str, at: DateTime<Utc>) -> Result<Option<PersonKey>, VaultError>;
    /// The key of the person at `email`, created when there is none. A new key is
    /// durable when this resolves (the event it seals may be acknowledged next).
    fn key_for<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, PersonKey>;
    /// The key of `person`; `None` when it was destroyed (or never existed here).
    fn key_of(&self, person: Uuid) -> VaultFuture<'_, Option<[u8; 32]>>;
    /// Destroys the key of the person at `email`, so nothing sealed under it can be read
    /// again. Gives the person's id, or `None` when the vault held no key for that address.
    /// A later registration naming the same address gets a new person and a new key.
    fn forget<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, Option<Uuid>>;
    /// Destroys the key of `person` (found by opening a sealed contact that names the
    /// address being forgotten, when the vault's own record of the address was lost).
    /// Gives whether there was a key.
    fn forget_person(&self, person: Uuid, at: DateTime<Utc>) -> VaultFuture<'_, bool>;
    /// Whether every copy of `person`'s key is gone from the disks this vault writes to,
    /// as far as the vault can tell. A vault that erases in place when it forgets (the
    /// SQLite and memory vaults) is done when `forget` returns; a replicated vault may
    /// leave copies in its servers' replication logs until they compact them.
    fn erasure(&self, person: Uuid) -> VaultFuture<'_, Erasure> {
        Box::pin(async move {
            Ok(match self.key_of(person).await? {
                Some(_) => Erasure::Held,
                None => Erasure::Complete {
                    basis: "the vault erases a key's bytes in place when it forgets it".into(),
                },
            })
        })
    }
}

/// What [`KeyVault::erasure`] knows of a person's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// The vault still holds the key: the person was not forgotten (or a key was made for
    /// the address again later).
    Held,
    /// No copy of the key is left on the vault's disks; `basis` says how that is known.
    Complete { basis: String },
    /// The key can no longer be read through the vault, but copies may still be on the
    /// disks of `replicas` servers until `until` (`None`: no bound can be given, e.g. a
    /// replica is offline); what bounds it is in `reason`.
    Pending {
        replicas: usize,
        until: Option<DateTime<Utc>>,
        reason: String,
    },
}

/// How an address is compared: trimmed, lower case.
pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Where new keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMaterial {
    /// The operating system's randomness: the only choice for real data.
    Random,
    /// Derived from a seed and the address, for the seeded demo and tests, whose logs must
    /// be the same bytes on every run. Anyone who knows the seed can derive the keys, so a
    /// seeded vault protects nothing: never use it for real people.
    Seeded(u64),
}

impl KeyMaterial {
    /// A new key for the person at `email` (normalised), its id a UUID v7 at `at`.
    pub fn new_key(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        let mut key = [0u8; 32];
        let mut random = [0u8; 10];
        match self {
            KeyMaterial::Random => {
                getrandom::getrandom(&mut key)
                    .and_then(|()| getrandom::getrandom(&mut random))
                    .map_err(|e| VaultError::Randomness(e.to_string()))?;
            }
            KeyMaterial::Seeded(seed) => {
                let derive = |label: &[u8]| {
                    let mut h = Sha256::new();
                    h.update(label);
                    h.update(seed.to_be_bytes());
                    h.update(email.as_bytes());
                    h.finalize()
                };
                key.copy_from_slice(&derive(b"dealreg seeded person key\0"));
                random.copy_from_slice(&derive(b"dealreg seeded person id\0")[..10]);
            }
        }
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let person = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        Ok(PersonKey { person, key })
    }
}

/// A vault in memory: for tests and the memory backend. Its keys die with the process,
/// so data sealed by it is unreadable afterwards.
pub struct MemoryVault {
    material: KeyMaterial,
    keys: Mutex<HashMap<String, PersonKey>>,
}

impl MemoryVault {
    pub fn new(material: KeyMaterial) -> Self {
        MemoryVault {
            material,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, PersonKey>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryVault {
    fn key_now(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        let email = normalise_email(email);
        let mut keys = self.keys();
        if let Some(found) = keys.get(&email) {
            return Ok(found.clone());
        }
        let created = self.material.new_key(&email, at)?;
        keys.insert(email, created.clone());
        Ok(created)
    }
}

/// Nothing of the memory vault waits: each answer is ready at once.
impl KeyVault for MemoryVault {
    fn try_key_for(&self, email: &str, at: DateTime<Utc>) -> Result<Option<PersonKey>, VaultError> {
        self.key_now(email, at).map(Some)
    }

    fn key_for<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, PersonKey> {
        Box::pin(std::future::ready(self.key_now(email, at)))
    }

    fn key_of(&self, person: Uuid) -> VaultFuture<'_, Option<[u8; 32]>> {
        let found = self
            .keys()
            .values()
            .find(|k| k.person == person)
            .map(|k| k.key);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn forget_person(&self, person: Uuid, _at: DateTime<Utc>) -> VaultFuture<'_, bool> {
        let mut keys = self.keys();
        let before = keys.len();
        keys.retain(|_, k| k.person != person);
        let had = keys.len() < before;
        Box::pin(std::future::ready(Ok(had)))
    }

    fn forget<'a>(&'a self, email: &'a str, _at: DateTime<Utc>) -> VaultFuture<'a, Option<Uuid>> {
        let person = self
            .keys()
            .remove(&normalise_email(email))
            .map(|k| k.person);
        Box::pin(std::future::ready(Ok(person)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory vault's answers are ready at once: one poll gives them.
    fn now<T>(mut future: VaultFuture<'_, T>) -> Result<T, VaultError> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(answer) => answer,
            std::task::Poll::Pending => panic!("the memory vault waited"),
        }
    }

    #[test]
    fn a_forgotten_address_gets_a_new_person_and_key() {
        let vault = MemoryVault::new(KeyMaterial::Random);
        let at = Utc::now();
        let first = now(vault.key_for(" Dana@Acme.com", at)).unwrap();
        assert_eq!(
            vault.try_key_for("dana@acme.com", at).unwrap(),
            Some(first.clone())
        );
        assert_eq!(now(vault.key_of(first.person)).unwrap(), Some(first.key));
        assert_eq!(
            now(vault.forget("DANA@acme.com", at)).unwrap(),
            Some(first.person)
        );
        assert_eq!(now(vault.key_of(first.person)).unwrap(), None);
        assert_eq!(now(vault.forget("dana@acme.com", at)).unwrap(), None);
        let second = now(vault.key_for("dana@acme.com", at)).unwrap();
        assert_ne!(second.person, first.person);
        assert_ne!(second.key, first.key);
        assert_eq!(second.person.get_version_num(), 7);
    }

    #[test]
    fn seeded_keys_are_the_same_on_every_run() {
        let at = Utc::now();
        let a = KeyMaterial::Seeded(7).new_key("dana@acme.com", at).unwrap();
        let b = KeyMaterial::Seeded(7).new_key("dana@acme.com", at).unwrap();
        let c = KeyMaterial::Seeded(8).new_key("dana@acme.com", at).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.key, c.key);
    }
}
