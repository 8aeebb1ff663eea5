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
//! The stream holds these messages, none of them naming a person:
//! - `<prefix>.secret`: 32 random bytes, written once: the HMAC key of the address records.
//! - `<prefix>.addr.<hex HMAC-SHA256(secret, address)>`: the person's id (an address is
//!   personal data, so its record is named by a keyed hash of it).
//! - `<prefix>.person.<uuid>`: the person's 32-byte key. A key made ahead (below) carries
//!   the header `Dealreg-Reserve: <id of the handle that made it>`.
//! - `<prefix>.forgotten.<uuid>`: written when the key is destroyed: when the key was
//!   written and when it was forgotten (two RFC 3339 times), so that
//!   [`KeyVault::erasure`] can say later when the replicas' logs drop their copy.
//!
//! Each is written once, with `Nats-Expected-Last-Subject-Sequence: 0`: no person id is
//! ever written twice, and one address keeps the first person recorded for it. `forget`
//! deletes the address record and the key.
//!
//! # Keys made ahead (the reserve)
//!
//! What a new address costs a command, as the SQLite vault does it: each handle makes
//! person keys ahead, a *reserve* of [`FIRST_RESERVE`] keys at first and twice as many
//! each time after, up to [`RESERVE_MAX`], all sent at once with every acknowledgement
//! awaited (one round trip, no key handed out before all of them are stored: an
//! acknowledged event never names a key the servers could lose; pipelined publishes,
//! not an ADR-50 atomic batch, because vault streams created before allow no atomic
//! publish, and a partly stored reserve loses nothing: the keys acknowledged are used,
//! no others). A new address is one
//! read of its record (is it known, by another process or an earlier run? only the
//! stream can say, so [`KeyVault::try_key_for`] answers only the addresses this handle
//! knows), then takes the next reserved key in memory: no write is awaited before its
//! event is appended (before: a read and two awaited writes, the key then the record,
//! two Raft commits on a cluster, two fsyncs with `sync_interval: always`). The record
//! `addr.<hmac>` -> person is written afterwards by the handle's writer task, pipelined
//! in batches of [`RECORD_BATCH`], not awaited by the command, still with an expected
//! subject sequence of 0. When it loses (another process recorded the address first,
//! with a key of its own reserve, in the moment between the read and the write), later
//! contacts of the address use the winner's person; the contact already sealed with the
//! reserved key stays readable under its own person id, and `forget` still reaches it:
//! `dealreg forget` opens every sealed contact in the log and destroys the key of any
//! that names the address (`forget_person`), so a lost race or a lost record costs at
//! most a second person for one address, never an erasure missed. [`JetStreamVault::flush`]
//! writes the pending records and awaits them; `forget` does so first.
//!
//! No key is handed out twice: a reserve lives in the memory of the handle that made it,
//! only that handle hands it out, and a new address only ever takes a key of the asking
//! handle's own reserve. So every open retires what any handle had in reserve, by
//! construction: a key made ahead by a handle that is gone (a restart, a crash) is
//! never handed out again; it stays readable (a contact may be sealed with it
//! whose record the crash lost), and is the only kind of key that outlives its use. A
//! handle that closes ([`JetStreamVault::close`], or is dropped inside a runtime that
//! keeps running) writes its pending records and deletes the keys of its reserve it never
//! handed out, so what stays behind is at most one reserve ([`RESERVE_MAX`] keys, about
//! 100 bytes each) per handle that did not close: a crash, or a process whose runtime
//! stopped before the dropped handle's task ran (a job should call `close` at its end).
//! A forgotten key is never handed out again here; a key another process forgot is used
//! at most [`CACHE_FOR`] more (the contact it sealed then reads as erased).
//!
//! A seeded vault (demo and tests, whose logs must be the same bytes on every run) makes
//! no reserve: it derives each key from the address and writes it, then the address
//! record, awaiting both.
//!
//! The [`KeyVault`] trait's waiting methods are futures the caller awaits: this vault's
//! requests to the servers never block a runtime thread. Keys it already has are handed
//! out without a request ([`KeyVault::try_key_for`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// Keys a handle makes ahead the first time; each next reserve is twice the last.
pub const FIRST_RESERVE: usize = 16;
/// Keys made ahead in one round trip, at most: a busy `serve` pays one round trip per 256
/// new persons, a short `dealreg apply` leaves few unused keys to delete.
pub const RESERVE_MAX: usize = 256;
/// Address records written together by the writer task.
pub const RECORD_BATCH: usize = 256;
/// Keys cached per handle, at most; beyond it the cache starts over.
const MAX_CACHED: usize = 65_536;
/// The header a key made ahead carries: the id of the handle that made it.
pub const RESERVE_HEADER: &str = "Dealreg-Reserve";
/// How long the writer waits before trying again a batch of records that failed.
const RETRY_RECORDS: Duration = Duration::from_millis(500);
/// How long a handle dropped inside a runtime waits to write its records and delete its
/// unused keys.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

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

/// What a handle has asked the servers so far, for tests and benches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// Requests awaited one at a time: reads, deletes, single writes (the records the
    /// writer task writes are not counted here).
    pub awaited: u64,
    /// Reserves made: each one round trip for all its keys.
    pub reserves: u64,
    /// Address records written by the writer task (pipelined, awaited by no command).
    pub records: u64,
}

/// The key vault on a JetStream stream.
pub struct JetStreamVault {
    shared: Arc<Shared>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

struct Shared {
    stream: stream::Stream,
    js: jetstream::Context,
    name: String,
    prefix: String,
    secret: [u8; 32],
    material: KeyMaterial,
    /// Written on every key this handle makes ahead.
    handle: Uuid,
    state: Mutex<State>,
    /// One reserve made at a time.
    making: tokio::sync::Mutex<()>,
    /// One batch of records written at a time.
    writing: tokio::sync::Mutex<()>,
    /// Wakes the writer task: records are pending.
    wake: tokio::sync::Notify,
    awaited: AtomicU64,
    reserves: AtomicU64,
    records: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Keys by address, with when they were known good.
    cache: HashMap<String, (PersonKey, Instant)>,
    /// Keys made ahead (stored, acknowledged), not handed out yet, with their sequence.
    reserve: VecDeque<(PersonKey, u64)>,
    /// How many keys the next reserve makes.
    next_reserve: usize,
    /// Keys handed out here whose address record is not written yet.
    pending: HashMap<String, PersonKey>,
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
    /// (writing one when the stream is new), and starts the task that writes address
    /// records. Call it inside the runtime the vault will be used in.
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
        let mut shared = Shared {
            stream,
            js,
            name,
            prefix: options.prefix,
            secret: [0; 32],
            material: options.material,
            handle: Uuid::now_v7(),
            state: Mutex::new(State {
                next_reserve: FIRST_RESERVE,
                ..State::default()
            }),
            making: tokio::sync::Mutex::new(()),
            writing: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            awaited: AtomicU64::new(0),
            reserves: AtomicU64::new(0),
            records: AtomicU64::new(0),
        };
        shared.secret = shared.secret().await?;
        let shared = Arc::new(shared);
        let writer = tokio::spawn(write_behind(Arc::clone(&shared)));
        Ok(JetStreamVault {
            shared,
            writer: Some(writer),
        })
    }

    /// Writes the address records of the keys handed out here and not recorded yet, and
    /// waits for them.
    pub async fn flush(&self) -> Result<(), VaultError> {
        self.shared.write_records().await
    }

    /// Writes the pending address records and deletes the keys made ahead here and never
    /// handed out (nobody else ever will). The vault can still be used afterwards (it
    /// makes a new reserve when it needs one).
    pub async fn close(&self) -> Result<(), VaultError> {
        self.shared.close().await
    }

    /// What this handle has asked the servers so far.
    pub fn requests(&self) -> Requests {
        Requests {
            awaited: self.shared.awaited.load(Ordering::Relaxed),
            reserves: self.shared.reserves.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
        }
    }

    /// Keys made ahead here and not handed out yet.
    pub fn reserved(&self) -> usize {
        self.shared.state().reserve.len()
    }

    /// Keys handed out here whose address record is not written yet.
    pub fn pending_records(&self) -> usize {
        self.shared.state().pending.len()
    }
}

impl Drop for JetStreamVault {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        // Best effort, without blocking a thread of the runtime: a task writes the pending
        // records and deletes the unused reserve. A runtime that shuts down first drops it:
        // the records' keys stay readable and `forget` finds them through the log; the
        // unused keys stay, never handed out.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        runtime.spawn(async move {
            match tokio::time::timeout(CLOSE_PATIENCE, shared.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%e, "the key vault closed with records or unused keys left: the keys stay readable, forget finds them through the log")
                }
                Err(_) => {
                    tracing::warn!("the key vault did not close in time: records or unused keys left; the keys stay readable, forget finds them through the log")
                }
            }
        });
    }
}

/// The handle's writer task: writes the address records of handed-out keys when woken,
/// trying a failed batch again after a pause.
async fn write_behind(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        while let Err(e) = shared.write_records().await {
            tracing::warn!(%e, "the key vault's address records could not be written; trying again");
            tokio::time::sleep(RETRY_RECORDS).await;
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.awaited.fetch_add(1, Ordering::Relaxed);
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
        self.awaited.fetch_add(1, Ordering::Relaxed);
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
        self.awaited.fetch_add(1, Ordering::Relaxed);
        self.stream
            .delete_message(sequence)
            .await
            .map(|_| ())
            .map_err(|e| io(&self.name, format!("a key could not be destroyed: {e}")))
    }

    /// The seeded demo's way (its keys derive from the address, so its logs are the same
    /// bytes on every run): the key written, then the address record, both awaited.
    async fn key_made_at_once(
        &self,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<PersonKey, VaultError> {
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
    /// The key of `email`: its record's when the stream has one, else the next key of the
    /// reserve (made first when it is empty), its record written in the background.
    async fn key_for_now(&self, email: &str, at: DateTime<Utc>) -> Result<PersonKey, VaultError> {
        if !matches!(self.material, KeyMaterial::Random) {
            return self.key_made_at_once(email, at).await;
        }
        if let Some(key) = self.state().pending.get(email).cloned() {
            // Handed out here, its record on the way.
            return Ok(key);
        }
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
            if let Some(key) = self.hand_out(email) {
                return Ok(key);
            }
            self.make_reserve().await?;
        }
    }

    /// The next reserved key for `email` (or the one another task of this handle just
    /// gave it), its record queued for the writer; `None` when the reserve is empty.
    fn hand_out(&self, email: &str) -> Option<PersonKey> {
        let mut state = self.state();
        if let Some(key) = state.pending.get(email) {
            return Some(key.clone());
        }
        let (key, _) = state.reserve.pop_front()?;
        state.pending.insert(email.to_string(), key.clone());
        remember(&mut state, email.to_string(), &key);
        drop(state);
        self.wake.notify_one();
        Some(key)
    }

    /// Makes the next reserve: its keys sent at once, each with an expected subject
    /// sequence of 0 and this handle's id, every acknowledgement awaited before any key
    /// joins the reserve.
    async fn make_reserve(&self) -> Result<(), VaultError> {
        let _making = self.making.lock().await;
        let count = {
            let state = self.state();
            if !state.reserve.is_empty() {
                return Ok(());
            }
            state.next_reserve
        };
        self.reserves.fetch_add(1, Ordering::Relaxed);
        let handle = self.handle.simple().to_string();
        let mut sent = Vec::with_capacity(count);
        let mut failed = None;
        for _ in 0..count {
            let key = self.material.new_key("", Utc::now())?;
            let publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::copy_from_slice(&key.key))
                .header(RESERVE_HEADER, handle.as_str())
                .expected_last_subject_sequence(0);
            match self
                .js
                .send_publish(self.person_subject(key.person), publish)
                .await
            {
                Ok(ack) => sent.push((key, ack)),
                Err(e) => {
                    failed = Some(io(&self.name, format!("keys could not be made ahead: {e}")));
                    break;
                }
            }
        }
        let mut made = Vec::with_capacity(sent.len());
        for (key, ack) in sent {
            match ack.await {
                Ok(ack) => made.push((key, ack.sequence)),
                // The person id is taken (never with random ids, but never twice either).
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {}
                Err(e) => {
                    failed.get_or_insert_with(|| {
                        io(&self.name, format!("keys could not be made ahead: {e}"))
                    });
                }
            }
        }
        // The keys stored are kept even when others failed: they are durable.
        let mut state = self.state();
        let none = made.is_empty();
        state.reserve.extend(made);
        state.next_reserve = (state.next_reserve * 2).min(RESERVE_MAX);
        match failed {
            Some(e) if none => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes the records of the keys handed out here, pipelined in batches, and awaits
    /// them. A record another process wrote first wins: the address's later contacts use
    /// its person (the key handed out here stays, readable, under its own person).
    async fn write_records(&self) -> Result<(), VaultError> {
        let _writing = self.writing.lock().await;
        loop {
            let batch: Vec<(String, PersonKey)> = self
                .state()
                .pending
                .iter()
                .take(RECORD_BATCH)
                .map(|(email, key)| (email.clone(), key.clone()))
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            let mut acks = Vec::with_capacity(batch.len());
            for (email, key) in &batch {
                let publish = jetstream::message::PublishMessage::build()
                    .payload(Bytes::copy_from_slice(key.person.as_bytes()))
                    .expected_last_subject_sequence(0);
                self.records.fetch_add(1, Ordering::Relaxed);
                let ack = self
                    .js
                    .send_publish(self.address_subject(email), publish)
                    .await
                    .map_err(|e| {
                        io(
                            &self.name,
                            format!("an address record could not be written: {e}"),
                        )
                    })?;
                acks.push(ack);
            }
            let mut outcomes = Vec::with_capacity(batch.len());
            for ack in acks {
                outcomes.push(match ack.await {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                });
            }
            let mut failed = None;
            for ((email, key), outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    Ok(true) => {}
                    Ok(false) => self.lost(&email, &key).await?,
                    Err(e) => {
                        failed.get_or_insert(e);
                        continue;
                    }
                }
                let mut state = self.state();
                if state.pending.get(&email) == Some(&key) {
                    state.pending.remove(&email);
                }
            }
            if let Some(e) = failed {
                return Err(io(
                    &self.name,
                    format!("an address record could not be written: {e}"),
                ));
            }
        }
    }

    /// The record of `email` was there before ours: the address's later contacts use the
    /// recorded person (ours when this handle wrote it before, e.g. a retried batch).
    async fn lost(&self, email: &str, ours: &PersonKey) -> Result<(), VaultError> {
        let winner = match self.last(&self.address_subject(email)).await? {
            Found::Message { payload, .. } => Uuid::from_slice(&payload).ok(),
            Found::Nothing => None,
        };
        if winner == Some(ours.person) {
            return Ok(());
        }
        let winner = match winner {
            Some(person) => self
                .key_of_now(person)
                .await?
                .map(|key| PersonKey { person, key }),
            None => None,
        };
        let mut state = self.state();
        if state.cache.get(email).is_some_and(|(k, _)| k == ours) {
            match winner {
                Some(key) => remember(&mut state, email.to_string(), &key),
                None => {
                    state.cache.remove(email);
                }
            }
        }
        Ok(())
    }

    /// Writes the pending records, then deletes the reserve's keys (never handed out).
    async fn close(&self) -> Result<(), VaultError> {
        self.write_records().await?;
        let unused: Vec<(PersonKey, u64)> = self.state().reserve.drain(..).collect();
        let mut deletes = tokio::task::JoinSet::new();
        for (_, sequence) in unused {
            let stream = self.stream.clone();
            deletes.spawn(async move { stream.delete_message(sequence).await });
        }
        let mut failed = None;
        while let Some(done) = deletes.join_next().await {
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failed.get_or_insert_with(|| e.to_string());
                }
                Err(e) => {
                    failed.get_or_insert_with(|| e.to_string());
                }
            }
        }
        match failed {
            Some(e) => Err(io(
                &self.name,
                format!("an unused key could not be deleted (it stays, never handed out): {e}"),
            )),
            None => Ok(()),
        }
    }

    fn cached(&self, email: &str) -> Option<PersonKey> {
        self.state()
            .cache
            .get(email)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(key, _)| key.clone())
    }

    fn forget_cached(&self, person: Option<Uuid>, email: Option<&str>) {
        let mut state = self.state();
        if let Some(email) = email {
            state.cache.remove(email);
            state.pending.remove(email);
        }
        if let Some(person) = person {
            state.cache.retain(|_, (key, _)| key.person != person);
            state.pending.retain(|_, key| key.person != person);
        }
    }
}

/// Caches a key, starting the cache over when it is full.
fn remember(state: &mut State, email: String, key: &PersonKey) {
    if state.cache.len() >= MAX_CACHED {
        state.cache.clear();
    }
    state.cache.insert(email, (key.clone(), Instant::now()));
}

impl KeyVault for JetStreamVault {
    fn try_key_for(
        &self,
        email: &str,
        _at: DateTime<Utc>,
    ) -> Result<Option<PersonKey>, VaultError> {
        let email = normalise_email(email);
        let shared = &self.shared;
        if let Some(key) = shared.cached(&email) {
            return Ok(Some(key));
        }
        Ok(shared.state().pending.get(&email).cloned())
    }

    fn key_for<'a>(&'a self, email: &'a str, at: DateTime<Utc>) -> VaultFuture<'a, PersonKey> {
        Box::pin(async move {
            let email = normalise_email(email);
            let shared = &self.shared;
            if let Some(key) = shared.cached(&email) {
                return Ok(key);
            }
            let key = shared.key_for_now(&email, at).await?;
            remember(&mut shared.state(), email, &key);
            Ok(key)
        })
    }

    fn key_of(&self, person: Uuid) -> VaultFuture<'_, Option<[u8; 32]>> {
        Box::pin(self.shared.key_of_now(person))
    }

    fn forget<'a>(&'a self, email: &'a str, _at: DateTime<Utc>) -> VaultFuture<'a, Option<Uuid>> {
        Box::pin(async move {
            let shared = &self.shared;
            let email = normalise_email(email);
            // A record still on its way is written first, so it is found and erased (not
            // written after the erasure).
            shared.write_records().await?;
            let address = shared.address_subject(&email);
            let Found::Message {
                sequence, payload, ..
            } = shared.last(&address).await?
            else {
                shared.forget_cached(None, Some(&email));
                return Ok(None);
            };
            let person = Uuid::from_slice(&payload).ok();
            if let Some(person) = person {
                shared.forget_person_now(person).await?;
            }
            shared.erase(sequence).await?;
            shared.forget_cached(person, Some(&email));
            Ok(person)
        })
    }

    fn forget_person(&self, person: Uuid, _at: DateTime<Utc>) -> VaultFuture<'_, bool> {
        Box::pin(async move {
            let shared = &self.shared;
            let had = shared.forget_person_now(person).await?;
            shared.forget_cached(Some(person), None);
            Ok(had)
        })
    }

    fn erasure(&self, person: Uuid) -> VaultFuture<'_, Erasure> {
        Box::pin(self.shared.erasure_now(person))
    }
}

fn getrandom_fill(bytes: &mut [u8]) -> Result<(), VaultError> {
    getrandom::getrandom(bytes).map_err(|e| VaultError::Randomness(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
