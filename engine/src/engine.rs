//! The engine: load state, decide, append with the expected version, retry on conflicts.
//!
//! Why it is shaped this way: the domain is pure (`decide`/`evolve`), so everything that
//! touches the world happens here, in one loop:
//!
//! 1. read the clock once (the command's `now`) and the policy in force;
//! 2. fold the command's boundary (the customer account, the partner or the program) from
//!    its stream, plus the read-only facts of the partners the decision needs;
//! 3. `decide`; a rejection becomes a `command_rejected` event so every attempt is in the log;
//! 4. append the boundary's events to its one stream at the exact tip they were decided on
//!    (invariant 6), with the command's idempotency key and fingerprint in their metadata
//!    (invariant 4);
//! 5. on a concurrency conflict go back to 2 — callers see conflicts only when the business
//!    rule says no.
//!
//! A decision's own events go to its boundary's one stream. What an account decision
//! means for partners' capacity (its [`dealreg_domain::CapacityWork`]) is written on the
//! partners' own streams, each at its exact version (so capacity is exact): in the same
//! atomic append as the account's events where the backend has one (SQLite, JetStream,
//! memory); on KurrentDB a slot is taken *before* the account's write and given back
//! *after* it, and a slot an interrupted command leaves behind is given back by the
//! timekeeper (`lapse_capacity_slot`). The child module `capacity` owns all of it. See
//! docs/ARCHITECTURE.md, capacity.
//! The reply lists every event the command wrote, its slot events on partners' streams
//! included, in the order written; a retry's reply rebuilt from the log lists the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dealreg_clock::{Clock, IdSource, SharedIds, TimeOrderedIds};
use dealreg_domain::command::AdoptPolicy;
use dealreg_domain::{
    decide, evolve, partner_written, partners_needed, Actor, Boundary, Command, Context, Decision,
    DomainError, Event, PartnerId, Partners, Policy, ProgramState, State,
};
use dealreg_events::{EventStore, NewEvent, StoreError, StreamAppend, StreamRevision, StreamTip};
use dealreg_vault::{KeyMaterial, KeyVault, MemoryVault, PersonKey, VaultError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cache::{self, StateCache};
pub use crate::loaded::{idempotency_record_key, KeyRecord, Loaded};
mod capacity;

use crate::answer::ReplyLine;
use crate::codec::{decode_event, DecodeError, EventMetadata, EVENT_SCHEMA_VERSION};
use crate::envelope::{CommandEnvelope, InputError};
use crate::partner_reply::PartnerReply;
use crate::personal;
use crate::reply::{PositionedEvent, RefusalBody, Reply};
use capacity::{Beside, Held, Prepared, SlotRound};

/// How many times a command is decided again after losing an optimistic-concurrency race
/// before the caller is told to retry. Generous: a busy account with dozens of concurrent
/// writers settles within a few rounds.
const RETRY_LIMIT: u32 = 200;

/// How far the clock may lag the newest event a command reads and still decide (at that
/// event's time): enough for a step of the system clock or skew between hosts, far less
/// than any `--at` mistake.
const CLOCK_SKEW_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// Page size when folding a stream.
const READ_PAGE: usize = 1024;

/// How old the cached facts of a stream a decision only reads (the program's policy, the
/// partners' agreements) may be by default. The command's own boundary is never read
/// stale (its append names the exact tip), and neither is a partner's capacity or status
/// when a slot is taken (the reservation is decided at the partner's exact tip).
pub const DEFAULT_READ_STALENESS: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("idempotency key `{key}` was already used for a different command; use a new key for a new command")]
    IdempotencyKeyReused { key: String },
    #[error("gave up after {attempts} attempts because `{stream}` kept changing underneath; retry the command with the same idempotency key")]
    Contention { stream: String, attempts: u32 },
    #[error("the decision produced an event for `{stream}`, which the engine did not load for this command; this is a bug in dealreg, please report it with the command")]
    UnloadedBoundary { stream: String },
    #[error(
        "no policy has been adopted; start the engine with a policy file or the default policy"
    )]
    NoPolicy,
    #[error("could not encode an event: {0}")]
    Encode(String),
    #[error("the command is dated {now}, before the newest event of `{stream}` ({newest}); time never runs backwards in the log: decide it at {newest} or later (with --at, pass a later time)")]
    TimeBeforeLog {
        stream: String,
        newest: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// Nothing was written: the key that seals a contact could not be had.
    #[error("nothing was written: {0}")]
    Vault(#[from] VaultError),
}

impl EngineError {
    /// What a partner is told: the failure and what to do, without stream names, times or
    /// anything else about the account's other activity.
    pub fn partner_message(&self) -> &'static str {
        match self {
            EngineError::IdempotencyKeyReused { .. } => {
                "this idempotency key was already used for a different command; use a new key"
            }
            EngineError::Store(_) => {
                "the store could not take the command; retry it with the same idempotency key"
            }
            EngineError::Contention { .. } => {
                "the account was busy; retry the command with the same idempotency key"
            }
            EngineError::TimeBeforeLog { .. } => {
                "the command is dated before the account's latest change; send it with the current time"
            }
            EngineError::Vault(_) => {
                "the store could not take the command; retry it with the same idempotency key"
            }
            EngineError::Decode(_)
            | EngineError::UnloadedBoundary { .. }
            | EngineError::NoPolicy
            | EngineError::Encode(_) => {
                "the engine could not complete the command; the vendor has been told, retry later"
            }
        }
    }

    /// The stable code a caller sees for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            EngineError::Store(StoreError::Closed) => "store_unavailable",
            EngineError::Store(_) => "store_failed",
            EngineError::Decode(_) => "undecodable_event",
            EngineError::Contention { .. } => "contention",
            EngineError::UnloadedBoundary { .. } => "internal",
            EngineError::NoPolicy => "no_policy",
            EngineError::Encode(_) => "internal",
            EngineError::TimeBeforeLog { .. } => "time_before_log",
            EngineError::Vault(_) => "store_failed",
        }
    }
}

/// A command's reply, and whether it is the replay of an earlier identical command.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub reply: Reply,
    pub replayed: bool,
}

/// What the engine's retry loop did, for tests and operators: `decided_again` counts
/// commands decided again after losing an optimistic-concurrency race, so a test can tell
/// that writers really raced instead of running one after another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub decided_again: u64,
}

pub struct Engine<S, C> {
    pub(crate) store: S,
    clock: C,
    pub(crate) ids: SharedIds,
    states: StateCache,
    decided_again: AtomicU64,
    /// Where the keys that seal contacts are kept (docs/ARCHITECTURE.md, personal data).
    vault: Arc<dyn KeyVault>,
    /// How old the facts of a stream a decision only reads may be.
    staleness: Duration,
}

impl<S: EventStore + Clone, C: Clock> Engine<S, C> {
    /// Opens the engine on a store. When the program has no policy yet, `policy` (or the
    /// built-in default program policy) is adopted first, so every decision can record the
    /// policy version it applied.
    /// Ids are time-ordered (UUID v7) from the machine's clock.
    pub async fn open(store: S, clock: C, policy: Option<Policy>) -> Result<Self, EngineError> {
        Self::open_with(store, clock, TimeOrderedIds, policy, "engine-bootstrap").await
    }

    /// Like [`Engine::open`], with the id source the engine mints command and event ids
    /// from (seeded for the demo, tests and replays), recording `component` as the system
    /// actor that adopted the first policy (the demo marks its stores this way).
    pub async fn open_with(
        store: S,
        clock: C,
        ids: impl IdSource,
        policy: Option<Policy>,
        component: &str,
    ) -> Result<Self, EngineError> {
        let engine = Engine {
            store,
            clock,
            ids: SharedIds::new(ids),
            states: StateCache::new(cache::DEFAULT_LIMIT),
            decided_again: AtomicU64::new(0),
            vault: Arc::new(MemoryVault::new(KeyMaterial::Random)),
            staleness: DEFAULT_READ_STALENESS,
        };
        let program = engine.load(&Boundary::Program).await?;
        let adopted = match &program.state {
            State::Program(p) => p.policy().is_some(),
            _ => false,
        };
        if !adopted {
            let policy = policy.unwrap_or_else(Policy::default_program);
            let envelope = CommandEnvelope {
                idempotency_key: Some(format!("bootstrap-policy-v{}", policy.version)),
                actor: Actor::System {
                    component: component.into(),
                },
                command: Command::AdoptPolicy(AdoptPolicy { policy }),
            };
            let executed = engine.execute(envelope).await?;
            if let Some(error) = executed.reply.error {
                tracing::error!(%error, "the bootstrap policy was refused");
                return Err(EngineError::NoPolicy);
            }
        }
        Ok(engine)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Counters of the retry loop since the engine opened.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            decided_again: self.decided_again.load(Ordering::Relaxed),
        }
    }

    /// How old the cached facts of streams a decision only reads may be (default
    /// [`DEFAULT_READ_STALENESS`]); `Duration::ZERO` reads them again for every command.
    pub fn with_read_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// The policy in force now.
    pub async fn policy(&self) -> Result<Policy, EngineError> {
        let loaded = self.load(&Boundary::Program).await?;
        match &loaded.state {
            State::Program(p) => p.policy().cloned().ok_or(EngineError::NoPolicy),
            _ => Err(EngineError::NoPolicy),
        }
    }

    /// The state a decision starts from, and whether it was read just now. The command's
    /// own boundary may come from the cache as it is (its append names the exact tip); a
    /// stream only read is read forward when its cached state is older than the staleness
    /// the engine allows.
    pub(crate) async fn state_of(
        &self,
        boundary: &Boundary,
        own: bool,
        fresh: bool,
    ) -> Result<(Arc<Loaded>, bool), EngineError> {
        if !fresh {
            if let Some(cached) = self.states.get(&boundary.stream_name()) {
                if own || cached.checked_at.elapsed() <= self.staleness {
                    return Ok((cached, false));
                }
            }
        }
        Ok((self.load_from(boundary, own && !fresh).await?, true))
    }

    /// Reads one line of input (any interface) and always answers with a line: the engine's
    /// reply, or a structured refusal. Never panics and never stops on bad input.
    pub async fn execute_line(&self, bytes: &[u8]) -> ReplyLine {
        self.answer(CommandEnvelope::parse(bytes)).await
    }

    /// Executes a parsed command, or turns why it could not be read into the refusal
    /// line: the one reply shape of every interface (`apply`, NATS).
    pub async fn answer(&self, parsed: Result<CommandEnvelope, InputError>) -> ReplyLine {
        let envelope = match parsed {
            Ok(envelope) => envelope,
            Err(e) => {
                return ReplyLine::Refused {
                    ok: false,
                    error: RefusalBody::from(&e),
                }
            }
        };
        let partner = envelope.actor.partner();
        match (self.execute(envelope).await, partner) {
            (Ok(executed), None) => ReplyLine::Executed {
                reply: executed.reply,
                replayed: executed.replayed,
            },
            (Ok(executed), Some(me)) => ReplyLine::Partner {
                reply: PartnerReply::of(&executed.reply, me),
                replayed: executed.replayed,
            },
            (Err(e), partner) => {
                tracing::warn!(error = %e, "command not executed");
                ReplyLine::Refused {
                    ok: false,
                    error: RefusalBody {
                        code: e.code().to_string(),
                        // A partner is not told which streams changed or when.
                        message: match partner {
                            Some(_) => e.partner_message().to_string(),
                            None => e.to_string(),
                        },
                        details: serde_json::Value::Null,
                    },
                }
            }
        }
    }

    /// Executes one command: decide, append, retry on conflict. A business rejection is an
    /// `Ok` reply with `ok: false` (and is recorded); `Err` means the command had no effect
    /// and may be retried with the same idempotency key.
    pub async fn execute(&self, envelope: CommandEnvelope) -> Result<Executed, EngineError> {
        let command = match self.pending(envelope) {
            Ok(command) => command,
            Err(unrecorded) => return Ok(*unrecorded),
        };
        // An interface's span that declared `command_id` (the NATS adapter's) gets it, so
        // every log line of this command names it.
        tracing::Span::current().record("command_id", tracing::field::display(&command.command_id));
        let mut stale: HashSet<String> = HashSet::new();
        // Slots this command took in earlier rounds, and what it wrote beside its
        // boundary's events (slots taken in any round, and given back): its reply lists
        // them too.
        let mut held = Held::default();
        let mut written: Vec<PositionedEvent> = Vec::new();
        for attempt in 1..=RETRY_LIMIT {
            let read = self.read_for(&command, &stale).await?;
            if let Some(done) = self.applied_before(&command, &read.primary).await? {
                return Ok(done);
            }
            let now = self.decision_time(
                &read.program,
                &command.stream,
                &read.primary,
                &read.partners,
            )?;
            let mut decision = match self.decide_on(&command, &read, now) {
                Ok(decision) => decision,
                // A refusal is recorded for good: it is never decided on facts only known
                // from the cache. Read them and decide again.
                Err(cached_reads) => {
                    stale.extend(cached_reads);
                    continue;
                }
            };
            let metadata = command.metadata(read.policy.version, now);
            let round = SlotRound {
                primary: &read.primary,
                partners: &read.partners,
                metadata: &metadata,
                now,
            };
            // Slots held first, or written in one append with the decision's events.
            let refusal = |rejection| command.refusal(rejection, now);
            let beside = match self
                .prepare_slots(&mut decision, &round, &mut held, &mut written, refusal)
                .await?
            {
                Prepared::Ready(beside) => beside,
                Prepared::LostRace(stream) => {
                    self.lost_race(&mut stale, stream, attempt, command.command_id)
                        .await;
                    continue;
                }
                Prepared::Reread(streams) => {
                    stale.extend(streams);
                    continue;
                }
            };
            let own = &decision.events;
            match self
                .write(&command, &read.primary, own, beside, &metadata, now)
                .await
            {
                Ok(mine) => {
                    written.extend(mine);
                    self.settle_slots(decision.capacity, held, &round, &mut written)
                        .await;
                    // In the order written, whichever stream each landed on.
                    written.sort_by_key(|e| e.position);
                    return Ok(Executed {
                        reply: reply_of(&command.name, written),
                        replayed: false,
                    });
                }
                Err(EngineError::Store(StoreError::WrongExpectedVersion { stream, .. })) => {
                    self.lost_race(&mut stale, stream, attempt, command.command_id)
                        .await;
                }
                Err(other) => return Err(other),
            }
        }
        Err(EngineError::Contention {
            stream: command.stream,
            attempts: RETRY_LIMIT,
        })
    }

    /// The command with what every round of its retry loop needs, or, when it does not
    /// even name a valid boundary (a malformed domain, say), its answer: there is no
    /// stream to record it on, so it is answered and not recorded.
    fn pending(&self, envelope: CommandEnvelope) -> Result<Pending, Box<Executed>> {
        let received = self.clock.now();
        let name = envelope.command.name().to_string();
        let boundary = envelope.command.boundary().map_err(|error| {
            Box::new(Executed {
                reply: Reply {
                    ok: false,
                    command: name.clone(),
                    events: Vec::new(),
                    error: Some(error),
                },
                replayed: false,
            })
        })?;
        Ok(Pending {
            record_key: envelope
                .idempotency_key
                .as_ref()
                .map(|key| idempotency_record_key(&envelope.actor, key)),
            fingerprint: fingerprint(&envelope),
            command_id: self.ids.next_id(received),
            stream: boundary.stream_name(),
            name,
            boundary,
            envelope,
        })
    }

    /// Reads what a decision of `command` needs: the program (its policy), the command's
    /// own boundary, and the partners it declares it reads. Streams named in `stale` are
    /// read again; the rest may come from the cache.
    async fn read_for(
        &self,
        command: &Pending,
        stale: &HashSet<String>,
    ) -> Result<Reads, EngineError> {
        let boundary = &command.boundary;
        let fresh = |b: &Boundary| stale.contains(&b.stream_name());
        let mut cached_reads: Vec<String> = Vec::new();
        let (program, read_now) = self
            .state_of(
                &Boundary::Program,
                *boundary == Boundary::Program,
                fresh(&Boundary::Program),
            )
            .await?;
        if !read_now && *boundary != Boundary::Program {
            cached_reads.push(Boundary::Program.stream_name());
        }
        let policy = match (&program.state, &command.envelope.command) {
            (State::Program(p), _) if p.policy().is_some() => {
                p.policy().cloned().ok_or(EngineError::NoPolicy)?
            }
            // The very first policy is decided under itself.
            (_, Command::AdoptPolicy(AdoptPolicy { policy })) => policy.clone(),
            _ => return Err(EngineError::NoPolicy),
        };
        let primary = if *boundary == Boundary::Program {
            Arc::clone(&program)
        } else {
            self.state_of(boundary, true, fresh(boundary)).await?.0
        };
        let mut partners: BTreeMap<PartnerId, Arc<Loaded>> = BTreeMap::new();
        // The partner an accepted command writes (its slot, in the same append as the
        // account's events or held just before them) is appended to at the exact tip it
        // was read at: it may come from the cache at any age.
        let written = partner_written(&command.envelope.command);
        for partner_id in partners_needed(&primary.state, &command.envelope.command) {
            let partner = Boundary::Partner(partner_id);
            let loaded = if partner == *boundary {
                Arc::clone(&primary)
            } else {
                let own = written == Some(partner_id);
                let (loaded, read_now) = self.state_of(&partner, own, fresh(&partner)).await?;
                if !read_now {
                    cached_reads.push(partner.stream_name());
                }
                loaded
            };
            partners.insert(partner_id, loaded);
        }
        Ok(Reads {
            program,
            policy,
            primary,
            partners,
            cached_reads,
        })
    }

    /// A command already applied (its idempotency key is on the stream) is answered from
    /// what it wrote; the same key on another command is refused.
    async fn applied_before(
        &self,
        command: &Pending,
        primary: &Loaded,
    ) -> Result<Option<Executed>, EngineError> {
        let Some(record) = command
            .record_key
            .as_ref()
            .and_then(|key| primary.keys.get(key))
        else {
            return Ok(None);
        };
        if record
            .fingerprint
            .as_ref()
            .is_some_and(|f| *f != command.fingerprint)
        {
            return Err(EngineError::IdempotencyKeyReused {
                key: command.envelope.idempotency_key.clone().unwrap_or_default(),
            });
        }
        let reply = self
            .replay(
                &command.name,
                &command.envelope.command,
                &command.boundary,
                record,
            )
            .await?;
        Ok(Some(Executed {
            reply,
            replayed: true,
        }))
    }

    /// Decides the command on what was read. A refusal decided on streams that came from
    /// the cache is not final: `Err` names them, to be read again.
    fn decide_on(
        &self,
        command: &Pending,
        read: &Reads,
        now: DateTime<Utc>,
    ) -> Result<Decision, Vec<String>> {
        let partner_facts: Partners<'_> = read
            .partners
            .iter()
            .filter_map(|(id, loaded)| match &loaded.state {
                State::Partner(p) => Some((*id, p)),
                _ => None,
            })
            .collect();
        let empty = ProgramState::default();
        let program = match &read.program.state {
            State::Program(p) => p,
            _ => &empty,
        };
        let context = Context {
            now,
            actor: &command.envelope.actor,
            policy: &read.policy,
            partners: &partner_facts,
            program,
        };
        match decide(&read.primary.state, &command.envelope.command, &context) {
            Ok(decision) => Ok(decision),
            Err(_) if !read.cached_reads.is_empty() => Err(read.cached_reads.clone()),
            Err(rejection) => Ok(Decision::events(vec![command.refusal(rejection, now)])),
        }
    }

    /// Appends the decision's own events to the command's stream at the exact tip they
    /// were decided on, with the slot events `beside` them in the same atomic append (each
    /// partner stream at its own tip), and keeps the states after them in the cache. Ids
    /// are minted in the order written.
    async fn write(
        &self,
        command: &Pending,
        primary: &Arc<Loaded>,
        events: &[Event],
        beside: Beside,
        metadata: &EventMetadata,
        now: DateTime<Utc>,
    ) -> Result<Vec<PositionedEvent>, EngineError> {
        let keys = self.personal_keys(events, now).await?;
        let own_key = command
            .record_key
            .clone()
            .map(|k| (k, metadata.fingerprint.clone()));
        if beside.is_empty() {
            let new_events = encode(events, metadata, &keys, || self.ids.next_id(now))?;
            let appended = self
                .store
                .append(&command.stream, primary.expected(), new_events)
                .await?;
            let first = appended.revisions.first().copied();
            self.remember(
                &command.stream,
                Arc::clone(primary),
                events,
                &appended.tip,
                own_key,
                first,
            );
            return Ok(positioned(&appended, events.to_vec()).collect());
        }
        // Slot events carry the command's id, not its idempotency key (the key names the
        // boundary's own events only).
        let bookkeeping = EventMetadata {
            idempotency_key: None,
            fingerprint: None,
            command_body: None,
            ..metadata.clone()
        };
        let no_keys = HashMap::new();
        let mut parts = Vec::with_capacity(beside.before.len() + beside.after.len() + 1);
        let mut states: Vec<(String, Arc<Loaded>, Vec<Event>)> =
            Vec::with_capacity(parts.capacity());
        let slots = beside
            .before
            .into_iter()
            .map(Some)
            .chain([None])
            .chain(beside.after.into_iter().map(Some));
        for part in slots {
            let (stream, loaded, part_events, meta, sealed) = match part {
                Some(p) => (p.stream, p.loaded, p.events, &bookkeeping, &no_keys),
                None => (
                    command.stream.clone(),
                    Arc::clone(primary),
                    events.to_vec(),
                    metadata,
                    &keys,
                ),
            };
            let new_events = encode(&part_events, meta, sealed, || self.ids.next_id(now))?;
            parts.push(StreamAppend {
                stream: stream.clone(),
                expected: loaded.expected(),
                events: new_events,
            });
            states.push((stream, loaded, part_events));
        }
        let appended = self.store.append_streams(parts).await?;
        let mut written = Vec::new();
        for (landed, (stream, loaded, part_events)) in appended.iter().zip(states) {
            let key = (stream == command.stream)
                .then(|| own_key.clone())
                .flatten();
            let first = landed.revisions.first().copied();
            self.remember(&stream, loaded, &part_events, &landed.tip, key, first);
            written.extend(positioned(landed, part_events));
        }
        Ok(written)
    }

    /// The command's time: the clock, read after the streams were loaded (so with a
    /// running clock every event read is older). Time never runs backwards in the log: a
    /// clock a little behind the newest event read (a step of the system clock, another
    /// host's skew) decides at that event's time; a command dated well before it (a fixed
    /// clock: `--at`, replays) is refused.
    fn decision_time(
        &self,
        program: &Loaded,
        primary_stream: &str,
        primary: &Loaded,
        partners: &BTreeMap<PartnerId, Arc<Loaded>>,
    ) -> Result<DateTime<Utc>, EngineError> {
        let mut now = self.clock.now();
        let read = std::iter::once(("program".to_string(), program.newest))
            .chain(std::iter::once((
                primary_stream.to_string(),
                primary.newest,
            )))
            .chain(
                partners
                    .iter()
                    .map(|(id, l)| (Boundary::Partner(*id).stream_name(), l.newest)),
            );
        for (stream, newest) in read {
            let Some(newest) = newest.filter(|newest| now < *newest) else {
                continue;
            };
            if newest - now > CLOCK_SKEW_TOLERANCE {
                return Err(EngineError::TimeBeforeLog {
                    stream,
                    newest,
                    now,
                });
            }
            now = newest;
        }
        Ok(now)
    }

    /// After a lost race: the stream is read again unless the cache already holds the
    /// winner's state; decided again at once the first times, then after a growing pause
    /// with jitter from the command's id, so racing writers spread out.
    pub(crate) async fn lost_race(
        &self,
        stale: &mut HashSet<String>,
        stream: String,
        attempt: u32,
        command_id: Uuid,
    ) {
        tracing::debug!(%stream, attempt, "lost a concurrency race; deciding again");
        self.decided_again.fetch_add(1, Ordering::Relaxed);
        stale.insert(stream);
        if attempt > 2 {
            let jitter = (command_id.as_u128() >> (attempt % 64)) as u64 & 0xff;
            let micros = (u64::from(attempt.min(20)) * 50) + jitter * 2;
            tokio::time::sleep(Duration::from_micros(micros)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }

    /// Appends `events` (none: nothing to do) to a stream only this engine's capacity
    /// bookkeeping writes beside a decision, at the exact tip of `loaded`, keeps the
    /// result in the cache and adds the events, where they landed, to `written`.
    pub(crate) async fn append_to(
        &self,
        stream: &str,
        loaded: &Arc<Loaded>,
        events: &[Event],
        metadata: &EventMetadata,
        now: DateTime<Utc>,
        written: &mut Vec<PositionedEvent>,
    ) -> Result<Arc<Loaded>, EngineError> {
        if events.is_empty() {
            return Ok(Arc::clone(loaded));
        }
        let bookkeeping = EventMetadata {
            idempotency_key: None,
            fingerprint: None,
            command_body: None,
            ..metadata.clone()
        };
        let new_events = encode(events, &bookkeeping, &HashMap::new(), || {
            self.ids.next_id(now)
        })?;
        let appended = self
            .store
            .append(stream, loaded.expected(), new_events)
            .await?;
        let next = self.remember(
            stream,
            Arc::clone(loaded),
            events,
            &appended.tip,
            None,
            None,
        );
        written.extend(positioned(&appended, events.to_vec()));
        Ok(next)
    }

    /// Folds a boundary's stream forward from the cached state (or from the start), and
    /// keeps the result in the cache.
    pub async fn load(&self, boundary: &Boundary) -> Result<Arc<Loaded>, EngineError> {
        self.load_from(boundary, false).await
    }

    /// [`Engine::load`]; `to_append`: the decision appends to this stream at the tip read
    /// (its own boundary, or the partner whose slot it writes), so a lagging replica's
    /// answer will do ([`EventStore::read_stream_to_append`]): the append at a stale tip
    /// fails and the stream is read again with `to_append` false.
    async fn load_from(
        &self,
        boundary: &Boundary,
        to_append: bool,
    ) -> Result<Arc<Loaded>, EngineError> {
        let stream = boundary.stream_name();
        let cached = self.states.get(&stream);
        let after = cached.as_ref().and_then(|c| c.tip.clone());
        let checked_at = Instant::now();
        let read = |after: Option<StreamTip>| {
            let stream = stream.clone();
            async move {
                if to_append {
                    self.store
                        .read_stream_to_append(&stream, after.as_ref(), READ_PAGE)
                        .await
                } else {
                    self.store
                        .read_stream(&stream, after.as_ref(), READ_PAGE)
                        .await
                }
            }
        };
        let mut page = read(after).await?;
        let mut loaded = match cached {
            Some(cached) => Arc::unwrap_or_clone(cached),
            None => Loaded::initial(boundary),
        };
        loaded.checked_at = checked_at;
        loop {
            let full = page.len() == READ_PAGE;
            for recorded in &page {
                let event = decode_event(recorded)?;
                loaded.fold(recorded, &event);
            }
            if !full {
                break;
            }
            page = read(loaded.tip.clone()).await?;
        }
        let loaded = Arc::new(loaded);
        self.states.put(&stream, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// After a successful append, brings the cached state forward by the new events, so
    /// the next command on the stream reads nothing; gives the state after them.
    fn remember(
        &self,
        stream: &str,
        decided_on: Arc<Loaded>,
        events: &[Event],
        tip: &StreamTip,
        key: Option<(String, Option<String>)>,
        first: Option<StreamRevision>,
    ) -> Arc<Loaded> {
        self.states
            .advance(stream, decided_on, events, tip.clone(), key.zip(first))
    }

    /// The state cache's estimated size in bytes and how many streams it holds.
    pub fn cache_size(&self) -> (usize, usize) {
        self.states.size()
    }

    /// Bounds the state cache at about `bytes` of folded states (default 256 MiB): the
    /// engine's memory no longer grows with the log once it is full.
    pub fn with_cache_limit(mut self, bytes: usize) -> Self {
        self.states = StateCache::new(bytes);
        self
    }

    /// Keeps the keys that seal contacts in `vault`. Without one the engine keeps them in
    /// memory, and what it sealed cannot be read after the process ends: a store on disk
    /// needs its vault on disk (the CLI opens `<store>-keys`).
    pub fn with_vault(mut self, vault: Arc<dyn KeyVault>) -> Self {
        self.vault = vault;
        self
    }

    /// The key vault contacts are sealed with.
    pub fn vault(&self) -> &Arc<dyn KeyVault> {
        &self.vault
    }

    /// The keys the decided events need to seal their contacts. Keys the vault has at hand
    /// are taken inline; the others are awaited (a vault that writes a file or asks its
    /// servers does so without holding a runtime thread).
    async fn personal_keys(
        &self,
        events: &[Event],
        at: DateTime<Utc>,
    ) -> Result<HashMap<String, PersonKey>, EngineError> {
        let addresses = personal::addresses_to_seal(events);
        if addresses.is_empty() {
            return Ok(HashMap::new());
        }
        let mut keys = HashMap::with_capacity(addresses.len());
        let mut missing = Vec::new();
        for address in addresses {
            match self.vault.try_key_for(&address, at)? {
                Some(key) => {
                    keys.insert(address, key);
                }
                None => missing.push(address),
            }
        }
        if !missing.is_empty() {
            keys.extend(personal::keys_for(self.vault.as_ref(), &missing, at).await?);
        }
        Ok(keys)
    }

    /// Rebuilds the first reply of a command applied before from what it wrote: its events
    /// on its boundary's stream (the idempotency record names them) and, for an account
    /// command, the slots it took or gave back on partners' streams, in the order written.
    async fn replay(
        &self,
        command_name: &str,
        command: &Command,
        boundary: &Boundary,
        record: &KeyRecord,
    ) -> Result<Reply, EngineError> {
        let stream = boundary.stream_name();
        let count = usize::try_from(record.last - record.first + 1).unwrap_or(usize::MAX);
        let recorded = self
            .store
            .read_stream(&stream, record.after.as_ref(), count)
            .await?;
        let mut events = Vec::with_capacity(recorded.len());
        for r in &recorded {
            let mut event = decode_event(r)?;
            personal::reveal(&mut event, self.vault.as_ref()).await?;
            events.push(PositionedEvent {
                stream: r.stream.clone(),
                revision: r.revision,
                position: r.position,
                event,
            });
        }
        let command_id = recorded.first().and_then(|r| command_id_of(&r.metadata));
        if let (Boundary::Account(_), Some(command_id)) = (boundary, command_id) {
            // The slot events carry no idempotency key, only the command's id: they are on
            // the streams of the partners the decision read (the state before the command
            // says which).
            let before = self.state_before(boundary, record.first).await?;
            for partner in partners_needed(&before, command) {
                let partner_stream = Boundary::Partner(partner).stream_name();
                self.written_by(&partner_stream, command_id, &mut events)
                    .await?;
            }
        }
        events.sort_by_key(|e| e.position);
        Ok(reply_of(command_name, events))
    }

    /// The state of `boundary` folded from its stream's events before revision `until`.
    async fn state_before(
        &self,
        boundary: &Boundary,
        until: StreamRevision,
    ) -> Result<State, EngineError> {
        let stream = boundary.stream_name();
        let mut state = State::initial(boundary);
        let mut after: Option<StreamTip> = None;
        loop {
            let page = self
                .store
                .read_stream(&stream, after.as_ref(), READ_PAGE)
                .await?;
            for recorded in &page {
                if recorded.revision >= until {
                    return Ok(state);
                }
                evolve(&mut state, &decode_event(recorded)?);
                after = Some(StreamTip::of(recorded));
            }
            if page.len() < READ_PAGE {
                return Ok(state);
            }
        }
    }

    /// Adds the events of `stream` that command `command_id` wrote to `into`. Reads the
    /// whole stream: a retry's reply is rebuilt rarely, and the slot events name no key.
    async fn written_by(
        &self,
        stream: &str,
        command_id: Uuid,
        into: &mut Vec<PositionedEvent>,
    ) -> Result<(), EngineError> {
        let needle = command_id.to_string();
        let mut after: Option<StreamTip> = None;
        loop {
            let page = self
                .store
                .read_stream(stream, after.as_ref(), READ_PAGE)
                .await?;
            for r in &page {
                let named = r
                    .metadata
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes());
                if named && command_id_of(&r.metadata) == Some(command_id) {
                    into.push(PositionedEvent {
                        stream: r.stream.clone(),
                        revision: r.revision,
                        position: r.position,
                        event: decode_event(r)?,
                    });
                }
            }
            match page.last() {
                Some(last) if page.len() == READ_PAGE => after = Some(StreamTip::of(last)),
                _ => return Ok(()),
            }
        }
    }
}

/// The id of the command that wrote an event, from its metadata.
fn command_id_of(metadata: &[u8]) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Written {
        command_id: Uuid,
    }
    serde_json::from_slice::<Written>(metadata)
        .ok()
        .map(|w| w.command_id)
}

/// One command on its way through the retry loop, with what every round needs of it.
struct Pending {
    envelope: CommandEnvelope,
    name: String,
    boundary: Boundary,
    /// The boundary's one stream, the only one the decision's own events go to.
    stream: String,
    /// `<actor scope>/<idempotency key>`, when the command carries a key.
    record_key: Option<String>,
    fingerprint: String,
    command_id: Uuid,
}

impl Pending {
    /// The metadata every event of the command carries.
    fn metadata(&self, policy_version: u32, now: DateTime<Utc>) -> EventMetadata {
        let key = self.envelope.idempotency_key.clone();
        EventMetadata {
            schema: EVENT_SCHEMA_VERSION,
            command_id: self.command_id,
            command: self.name.clone(),
            actor: self.envelope.actor.clone(),
            fingerprint: key.as_ref().map(|_| self.fingerprint.clone()),
            idempotency_key: key,
            policy_version,
            decided_at: now,
            command_body: serde_json::to_value(self.envelope.command.redacted()).ok(),
        }
    }

    /// The refusal, as the event that records it on the boundary's stream.
    fn refusal(&self, rejection: DomainError, now: DateTime<Utc>) -> Event {
        Event::CommandRejected {
            boundary: self.boundary.clone(),
            command: self.name.clone(),
            code: rejection.code,
            message: rejection.message,
            details: rejection.details,
            at: now,
        }
    }
}

/// What one round of a decision read.
struct Reads {
    program: Arc<Loaded>,
    policy: Policy,
    /// The command's own boundary.
    primary: Arc<Loaded>,
    /// The partners the decision declares it reads.
    partners: BTreeMap<PartnerId, Arc<Loaded>>,
    /// Streams only read that came from the cache: a refusal is never decided on them.
    cached_reads: Vec<String>,
}

/// The stored form of decided events: each with a new id, its contact sealed, and the
/// command's metadata.
fn encode(
    events: &[Event],
    metadata: &EventMetadata,
    keys: &HashMap<String, PersonKey>,
    mut event_id: impl FnMut() -> Uuid,
) -> Result<Vec<NewEvent>, EngineError> {
    // The command's body rides on its first event only; the others carry the rest.
    let first_bytes =
        serde_json::to_vec(metadata).map_err(|e| EngineError::Encode(e.to_string()))?;
    let metadata_bytes = if metadata.command_body.is_some() && events.len() > 1 {
        let rest = EventMetadata {
            command_body: None,
            ..metadata.clone()
        };
        serde_json::to_vec(&rest).map_err(|e| EngineError::Encode(e.to_string()))?
    } else {
        first_bytes.clone()
    };
    let mut new_events = Vec::with_capacity(events.len());
    for (n, event) in events.iter().enumerate() {
        let event_id = event_id();
        // A contact is stored sealed (the clear one stays in memory, for the reply).
        let data = match personal::sealed_for_storage(event, keys, event_id)
            .map_err(EngineError::Encode)?
        {
            Some(stored) => serde_json::to_vec(&stored),
            None => serde_json::to_vec(event),
        }
        .map_err(|e| EngineError::Encode(e.to_string()))?;
        new_events.push(NewEvent {
            event_id,
            event_type: event.event_type().to_string(),
            data,
            metadata: if n == 0 {
                first_bytes.clone()
            } else {
                metadata_bytes.clone()
            },
        });
    }
    Ok(new_events)
}

/// `events`, as appended, with where each landed.
fn positioned(
    appended: &dealreg_events::Appended,
    events: Vec<Event>,
) -> impl Iterator<Item = PositionedEvent> + '_ {
    events
        .into_iter()
        .zip(&appended.revisions)
        .zip(&appended.positions)
        .map(|((event, revision), position)| PositionedEvent {
            stream: appended.stream.clone(),
            revision: *revision,
            position: *position,
            event,
        })
}

fn reply_of(command: &str, positioned: Vec<PositionedEvent>) -> Reply {
    let error = positioned.iter().find_map(|p| match &p.event {
        Event::CommandRejected {
            code,
            message,
            details,
            ..
        } => Some(DomainError {
            code: *code,
            message: message.clone(),
            details: details.clone(),
        }),
        _ => None,
    });
    Reply {
        ok: error.is_none(),
        command: command.to_string(),
        events: positioned,
        error,
    }
}

/// What makes two commands "the same" for idempotency: the actor and the command, as JSON.
fn fingerprint(envelope: &CommandEnvelope) -> String {
    let bytes = serde_json::to_vec(&(&envelope.actor, &envelope.command)).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
