//! The key vault on NATS JetStream: the keys that seal personal data, kept beside a log on
//! JetStream (or KurrentDB) so every host of a deployment shares them, and destroyed so that
//! no copy of a forgotten person's key stays readable on any node.
//!
//! Why a stream of our own and not a KV bucket: a KV bucket is created with `deny_delete`,
//! so its values can only be purged, and a purge (and the purge marker, which repeats the
//! key's name) leaves the old value's bytes in the stream's block files until the store
//! compacts them, which nothing can trigger. Deleting one message of a stream that allows
//! deletes overwrites its bytes at once (the server erases unless asked not to). On a
//! replicated stream each node's Raft log keeps the message's write until the server's
//! next snapshot of the stream compacts it: at most [`LOG_COMPACTED_WITHIN`] after the
//! write, on a timer nothing outside the server can shorten or read (see
//! [`JetStreamVault::erasure`] and docs/PERSONAL-DATA.md).
//!
//! The stream holds three kinds of message, none of them naming a person:
//! - `<prefix>.secret`: 32 random bytes, written once: the HMAC key of the address records.
//! - `<prefix>.addr.<hex HMAC-SHA256(secret, address)>`: the person's id (an address is
//!   personal data, so its record is named by a keyed hash of it).
//! - `<prefix>.person.<uuid>`: the person's 32-byte key.
//! - `<prefix>.forgotten.<uuid>`: written when the key is destroyed: when the key was
//!   written and when it was forgotten (two RFC 3339 times), so that
//!   [`KeyVault::erasure`] can say later when the replicas' logs drop their copy.
//!
//! Each is written once, with `Nats-Expected-Last-Subject-Sequence: 0`, so two processes
//! making a key for one address at the same moment agree on one (the loser uses the
//! winner's). `forget` deletes the address record and the key.
//!
//! The [`KeyVault`] trait's waiting methods are futures the caller awaits: this vault's
//! requests to the servers never block a runtime thread. Keys it already has are handed
//! out without a request ([`KeyVault::try_key_for`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use dealreg_vault::{
    normalise_email, Erasure, KeyMaterial, KeyVault, PersonKey, VaultError, VaultFuture,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a key this process made or read is handed out again without asking the
/// stream: a key another process forgot meanwhile is used at most this long to seal a new
/// contact (which then reads as erased).
const CACHE_FOR: Duration = Duration::from_secs(5);

/// How long after a key's write every running replica's Raft log has dropped its copy.
///
/// nats-server (2.10 to 2.15, `server/jetstream_cluster.go`, `monitorStream`) snapshots
/// each replica of a replicated stream on a ticker of `compactInterval` (2 min) plus a
/// random `rci` below 1 min fixed when the replica starts, and compacts the replica's Raft
/// log up to the snapshot (`raft.go`, `InstallSnapshot` -> `wal.Compact`, which removes
/// the log's block files when nothing was written after the snapshot's index). A
/// snapshot that fails is retried every `compactMinInterval` (15 s) and forced after five
/// failures: 3 min + 5 x 15 s. Sooner only when the log holds 65,536 entries or 8 MB.
/// No API of the server forces a snapshot or shows a replica's log over NATS.
pub const LOG_COMPACTED_WITHIN: Duration = Duration::from_secs(180 + 5 * 15);

/// How to open the vault.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// The stream's name.
    pub stream: String,
    /// The subject prefix of its messages.
    pub prefix: String,
    /// Replicas of the stream (3 on a cluster: a key must survive a node).
    pub replicas: usize,
    /// Where new keys come from.
    pub material: KeyMaterial,
    /// Create the stream when it is missing (else a missing vault is an error).
    pub create: bool,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            stream: "DEALREG_KEYS".into(),
            prefix: "dealreg.keys".into(),
            replicas: 1,
            material: KeyMaterial::Random,
            create: true,
        }
    }
}

/// The key vault on a JetStream stream.
pub struct JetStreamVault {
    stream: stream::Stream,
    js: jetstream::Context,
    name: String,
    prefix: String,
    secret: [u8; 32],
    material: KeyMaterial,
    cache: Mutex<HashMap<String, (PersonKey, Instant)>>,
}

fn io(name: &str, reason: impl std::fmt::Display) -> VaultError {
    VaultError::Io {
        path: format!("JetStream stream {name}"),
        reason: reason.to_string(),
    }
}

/// What a read of one subject found.
enum Found {
    Message {
        sequence: u64,
        payload: Bytes,
        written: DateTime<Utc>,
    },
    Nothing,
}

impl JetStreamVault {
    /// Opens (or creates, with `options.create`) the vault's stream and reads its secret
    /// (writing one when the stream is new). Call it inside the runtime the vault will be
    /// used in.
    pub async fn open(
        client: async_nats::Client,
        options: VaultOptions,
    ) -> Result<JetStreamVault, VaultError> {
        let js = jetstream::new(client);
        let name = options.stream.clone();
        let stream = match js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(_) if options.create => js
                .create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("{}.>", options.prefix)],
                    storage: stream::StorageType::File,
                    num_replicas: options.replicas.max(1),
                    allow_direct: true,
                    deny_delete: false,
                    deny_purge: true,
                    description: Some(
                        "dealreg's key vault: one key per person, deleted to forget them; see docs/PERSONAL-DATA.md"
                            .into(),
                    ),
                    ..Default::default()
                })
                .await
                .map_err(|e| io(&name, format!("cannot be created: {e}")))?,
            Err(e) => {
                return Err(io(
                    &name,
                    format!("cannot be read ({e}); create it by running a job that writes (apply, serve)"),
                ))
            }
        };
        let info = stream.cached_info();
        if info.config.deny_delete {
            return Err(io(
                &name,
                "denies deletes, so forgetting a person could not destroy their key; use a stream created by dealreg",
            ));
        }
        let mut vault = JetStreamVault {
            stream,
            js,
            name,
            prefix: options.prefix,
            secret: [0; 32],
            material: options.material,
            cache: Mutex::new(HashMap::new()),
        };
        vault.secret = vault.secret().await?;
        Ok(vault)
    }

    /// The vault's HMAC secret, written once by whoever opens the vault first.
    async fn secret(&self) -> Result<[u8; 32], VaultError> {
        let subject = format!("{}.secret", self.prefix);
        loop {
            if let Found::Message { payload, .. } = self.last(&subject).await? {
                return payload.as_ref().try_into().map_err(|_| {
                    io(
                        &self.name,
                        "its secret is not 32 bytes: it was written outside dealreg",
                    )
                });
            }
            let mut secret = [0u8; 32];
            match self.material {
                KeyMaterial::Random => getrandom_fill(&mut secret)?,
                KeyMaterial::Seeded(seed) => {
                    let digest = Sha256::new()
                        .chain_update(b"dealreg seeded vault secret\0")
                        .chain_update(seed.to_be_bytes())
                        .finalize();
                    secret.copy_from_slice(&digest);
                }
            }
            // A lost race: another process wrote it; read theirs.
            self.create(&subject, Bytes::copy_from_slice(&secret))
                .await?;
        }
    }

    fn address_subject(&self, email: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let tag = ring::hmac::sign(&key, email.as_bytes());
        format!("{}.addr.{}", self.prefix, hex(tag.as_ref()))
    }

    fn person_subject(&self, person: Uuid) -> String {
        format!("{}.person.{}", self.prefix, person.simple())
    }

    /// The last message on `subject`, read from the stream's leader.
    async fn last(&self, subject: &str) -> Result<Found, VaultError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Found::Message {
                sequence: message.sequence,
                payload: message.payload,
                written: DateTime::from_timestamp_nanos(
                    i64::try_from(message.time.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                ),
            }),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(Found::Nothing)
            }
            Err(e) => Err(io(&self.name, format!("cannot be read: {e}"))),
        }
    }

    /// Writes `payload` on `subject` unless a message is there already: `false` when one
    /// was (another process wrote it first).
    async fn create(&self, subject: &str, payload: Bytes) -> Result<bool, VaultError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .expected_last_subject_sequence(0);
        let ack = self
            .js
            .send_publish(subject.to_string(), publish)
            .await
            .map_err(|e| io(&self.name, format!("a key could not be written: {e}")))?;
        match ack.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Ok(false)
            }
            Err(e) => Err(io(&self.name, format!("a key could not be written: {e}"))),
        }
    }

    /// Deletes the message `sequence`, overwriting its bytes.
    async fn erase(&self, sequence: u64) -> Result<(), VaultError> {
        self.stream
            .delete_message(sequence)
            .await
            .map(|_| ())
            .map_err(|e| io(&self.name, format!("a key could not be destroyed: {e}")))
    }

    async fn key_for_now(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        let address = self.address_subject(email);
        loop {
            if let Found::Message { payload, .. } = self.last(&address).await? {
                let person = Uuid::from_slice(&payload)
                    .map_err(|_| io(&self.name, "an address record is not a person's id"))?;
                if let Some(key) = self.key_of_now(person).await? {
                    return Ok(PersonKey { person, key });
                }
                // The key was destroyed (forgotten by person): the address gets a new one.
                if let Found::Message { sequence, .. } = self.last(&address).await? {
                    self.erase(sequence).await?;
                }
                continue;
            }
            let made = self.material.new_key(email, at)?;
            self.create(
                &self.person_subject(made.person),
                Bytes::copy_from_slice(&made.key),
            )
            .await?;
            if self
                .create(&address, Bytes::copy_from_slice(made.person.as_bytes()))
                .await?
            {
                return Ok(made);
            }
            // Another process gave the address a person first: use theirs, drop ours.
            if let Found::Message { sequence, .. } =
                self.last(&self.person_subject(made.person)).await?
            {
                self.erase(sequence).await?;
            }
        }
    }

    async fn key_of_now(&self, person: Uuid) -> Result<Option<[u8; 32]>, VaultError> {
        match self.last(&self.person_subject(person)).await? {
            Found::Message { payload, .. } => payload
                .as_ref()
                .try_into()
                .map(Some)
                .map_err(|_| io(&self.name, "a person's key is not 32 bytes")),
            Found::Nothing => Ok(None),
        }
    }

    fn forgotten_subject(&self, person: Uuid) -> String {
        format!("{}.forgotten.{}", self.prefix, person.simple())
    }

    async fn forget_person_now(&self, person: Uuid) -> Result<bool, VaultError> {
        match self.last(&self.person_subject(person)).await? {
            Found::Message {
                sequence, written, ..
            } => {
                self.erase(sequence).await?;
                // When it was written and forgotten, for `erasure` (no personal data: the
                // person's id and two times, as the SQLite vault's `forgotten` table).
                let record = format!(
                    "written {}\nforgotten {}\n",
                    written.to_rfc3339(),
                    Utc::now().to_rfc3339()
                );
                self.create(&self.forgotten_subject(person), Bytes::from(record))
                    .await?;
                Ok(true)
            }
            Found::Nothing => Ok(false),
        }
    }

    async fn erasure_now(&self, person: Uuid) -> Result<Erasure, VaultError> {
        if self.key_of_now(person).await?.is_some() {
            return Ok(Erasure::Held);
        }
        let Found::Message { payload, .. } = self.last(&self.forgotten_subject(person)).await?
        else {
            return Ok(Erasure::Complete {
                basis: format!(
                    "the vault holds no key for person {person} and has no record of forgetting one (never made here, or forgotten by a dealreg older than this record)"
                ),
            });
        };
        let text = String::from_utf8_lossy(&payload);
        let time = |label: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(label))
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let (Some(written), Some(forgotten)) = (time("written "), time("forgotten ")) else {
            return Err(io(
                &self.name,
                "a record of a forgotten key is not two times",
            ));
        };
        // A replica's "current" is whether it has persisted every committed entry: one may
        // trail the leader by a few milliseconds after the writes `forget` just made, so
        // a replica behind (not offline) is asked about again for up to 2 s.
        let mut tries = 0;
        let (replicas, behind) = loop {
            let info = self
                .js
                .get_stream(&self.name)
                .await
                .map_err(|e| io(&self.name, format!("cannot be read: {e}")))?
                .cached_info()
                .clone();
            let replicas = info.config.num_replicas.max(1);
            let peers = info.cluster.map(|c| c.replicas).unwrap_or_default();
            let behind: Vec<String> = peers
                .iter()
                .filter(|p| !p.current || p.offline)
                .map(|p| p.name.clone())
                .collect();
            tries += 1;
            if behind.is_empty() || peers.iter().any(|p| p.offline) || tries >= 10 {
                break (replicas, behind);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if replicas == 1 {
            return Ok(Erasure::Complete {
                basis: format!(
                    "the key's bytes were overwritten in the stream's files when it was forgotten ({forgotten}); a stream of one replica keeps no replication log"
                ),
            });
        }
        let due = written
            + chrono::Duration::from_std(LOG_COMPACTED_WITHIN).unwrap_or(chrono::Duration::MAX);
        if !behind.is_empty() {
            return Ok(Erasure::Pending {
                replicas: behind.len(),
                until: None,
                reason: format!(
                    "replica(s) {} of the key vault's stream are offline or behind: they erase the key when they catch up with the delete, and their replication log drops it at their next snapshot after that",
                    behind.join(", ")
                ),
            });
        }
        if Utc::now() < due {
            return Ok(Erasure::Pending {
                replicas,
                until: Some(due),
                reason: format!(
                    "every one of the {replicas} replicas has the delete that overwrites the key in the stream's files, but each replica's replication (Raft) log keeps the key's write ({written}) until nats-server's next snapshot of the stream compacts it, due by {due}; no NATS API forces that snapshot or shows a replica's log"
                ),
            });
        }
        Ok(Erasure::Complete {
            basis: format!(
                "erased from the stream's files: every one of the {replicas} replicas has the delete (all current), and each replica's replication log was due to drop the key's write ({written}) by {due}: nats-server snapshots a replicated stream at most 3 minutes apart, retried for at most 75 s more; this is the server's bound, not a reading of its disks"
            ),
        })
    }

    fn cached(&self, email: &str) -> Option<PersonKey> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(email)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(key, _)| key.clone())
    }

    fn remember(&self, email: String, key: &PersonKey) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 65_536 {
            cache.clear();
        }
        cache.insert(email, (key.clone(), Instant::now()));
    }

    fn forget_cached(&self, person: Option<Uuid>, email: Option<&str>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(email) = email {
            cache.remove(email);
        }
        if let Some(person) = person {
            cache.retain(|_, (key, _)| key.person != person);
        }
    }
}

impl KeyVault for JetStreamVault {
    fn try_key_for(
        &self,
        email: &str,
        _at: DateTime<Utc>,
    ) -> Result<Option<PersonKey>, VaultError> {
        Ok(self.cached(&normalise_email(email)))
    }

    fn key_for<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, PersonKey> {
        Box::pin(async move {
            let email = normalise_email(email);
            if let Some(key) = self.cached(&email) {
                return Ok(key);
            }
            let key = self.key_for_now(&email, at).await?;
            self.remember(email, &key);
            Ok(key)
        })
    }

    fn key_of(&self, person: Uuid) -> VaultFuture<'_, Option<[u8; 32]>> {
        Box::pin(self.key_of_now(person))
    }

    fn forget<'a>(&'a self, email: &'a str, _at: DateTime<Utc>) -> VaultFuture<'a, Option<Uuid>> {
        Box::pin(async move {
            let email = normalise_email(email);
            let address = self.address_subject(&email);
            let Found::Message {
                sequence, payload, ..
            } = self.last(&address).await?
            else {
                self.forget_cached(None, Some(&email));
                return Ok(None);
            };
            let person = Uuid::from_slice(&payload).ok();
            if let Some(person) = person {
                self.forget_person_now(person).await?;
            }
            self.erase(sequence).await?;
            self.forget_cached(person, Some(&email));
            Ok(person)
        })
    }

    fn forget_person(&self, person: Uuid, _at: DateTime<Utc>) -> VaultFuture<'_, bool> {
        Box::pin(async move {
            let had = self.forget_person_now(person).await?;
            self.forget_cached(Some(person), None);
            Ok(had)
        })
    }

    fn erasure(&self, person: Uuid) -> VaultFuture<'_, Erasure> {
        Box::pin(self.erasure_now(person))
    }
}

fn getrandom_fill(bytes: &mut [u8]) -> Result<(), VaultError> {
    getrandom::getrandom(bytes).map_err(|e| VaultError::Randomness(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
