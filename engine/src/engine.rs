//! The engine: load state, decide, append with the expected version, retry on conflicts.
//!
//! Why it is shaped this way: the domain is pure (`decide`/`evolve`), so everything that
//! touches the world happens here, in one loop:
//!
//! 1. read the clock once (the command's `now`) and the policy in force;
//! 2. fold the command's boundary (the customer account, the partner or the program) from
//!    its stream, plus the read-only facts of the partners the decision needs;
//! 3. `decide`; a rejection becomes a `command_rejected` event so every attempt is in the log;
//! 4. append every resulting event atomically, each stream with the exact version it was
//!    decided on (invariant 6: optimistic concurrency on the account boundary), with the
//!    caller's idempotency key (invariant 4);
//! 5. on a concurrency conflict go back to 2 — callers see conflicts only when the business
//!    rule says no.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dealreg_clock::{Clock, IdSource, SharedIds, TimeOrderedIds};
use dealreg_domain::command::AdoptPolicy;
use dealreg_domain::{
    decide, evolve, partners_needed, Actor, Boundary, Command, Context, DomainError, Event,
    PartnerId, Partners, Policy, State,
};
use dealreg_events::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Idempotency, NewEvent, StoreError,
    StreamRevision, StreamWrite,
};
use dealreg_vault::{KeyMaterial, KeyVault, MemoryVault, PersonKey, VaultError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cache::{self, StateCache};
use crate::codec::{decode_event, EventMetadata, EVENT_SCHEMA_VERSION};
use crate::envelope::{CommandEnvelope, InputError};
use crate::partner_reply::PartnerReply;
use crate::personal;
use crate::reply::{PositionedEvent, RefusalBody, Reply, ReplyLine};

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

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} in stream `{stream}` cannot be decoded ({reason}); it was written by a newer dealreg or altered: run `dealreg verify`")]
    Decode {
        stream: String,
        position: u64,
        reason: String,
    },
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
            EngineError::Store(StoreError::IdempotencyKeyReused { .. }) => {
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
            EngineError::Decode { .. }
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
            EngineError::Store(StoreError::IdempotencyKeyReused { .. }) => "idempotency_key_reused",
            EngineError::Store(StoreError::Closed) => "store_unavailable",
            EngineError::Store(_) => "store_failed",
            EngineError::Decode { .. } => "undecodable_event",
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

/// A boundary's folded state and the revision of the last event folded into it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: State,
    pub version: Option<StreamRevision>,
    /// When the newest event folded into the state was decided.
    pub newest: Option<DateTime<Utc>>,
}

impl Loaded {
    fn expected(&self) -> ExpectedVersion {
        match self.version {
            Some(revision) => ExpectedVersion::Exact(revision),
            None => ExpectedVersion::NoStream,
        }
    }
}

/// What the engine's retry loop did, for tests and operators: `decided_again` counts
/// commands decided again after losing an optimistic-concurrency race, so a test can tell
/// that writers really raced instead of running one after another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub decided_again: u64,
}

pub struct Engine<S, C> {
    store: S,
    clock: C,
    ids: SharedIds,
    states: StateCache,
    decided_again: AtomicU64,
    /// Where the keys that seal contacts are kept (docs/ARCHITECTURE.md, personal data).
    vault: Arc<dyn KeyVault>,
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

    /// The policy in force now.
    pub async fn policy(&self) -> Result<Policy, EngineError> {
        self.program().await.map(|(policy, _)| policy)
    }

    /// The policy in force and when the program stream last changed.
    async fn program(&self) -> Result<(Policy, Option<DateTime<Utc>>), EngineError> {
        let loaded = self.load(&Boundary::Program).await?;
        match &loaded.state {
            State::Program(p) => p
                .policy()
                .cloned()
                .map(|policy| (policy, loaded.newest))
                .ok_or(EngineError::NoPolicy),
            _ => Err(EngineError::NoPolicy),
        }
    }

    /// The state of `boundary` a decision starts from: the cached one (`true`: the append
    /// must prove it current) unless `fresh` asks for the stream to be read.
    async fn state_of(
        &self,
        boundary: &Boundary,
        fresh: bool,
    ) -> Result<(Arc<Loaded>, bool), EngineError> {
        if !fresh {
            if let Some(cached) = self.states.get(&boundary.stream_name()) {
                return Ok((cached, true));
            }
        }
        Ok((self.load(boundary).await?, false))
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
        let received = self.clock.now();
        let command_name = envelope.command.name().to_string();
        let boundary = match envelope.command.boundary() {
            Ok(boundary) => boundary,
            // The command does not even name a valid boundary (a malformed domain, say):
            // there is no stream to record it on, so it is answered and not recorded.
            Err(error) => {
                return Ok(Executed {
                    reply: Reply {
                        ok: false,
                        command: command_name,
                        events: Vec::new(),
                        error: Some(error),
                    },
                    replayed: false,
                })
            }
        };
        let idempotency = envelope.idempotency_key.as_ref().map(|key| Idempotency {
            key: format!("{}/{}", actor_scope(&envelope.actor), key),
            fingerprint: fingerprint(&envelope),
        });
        let command_id = self.ids.next_id(received);
        // An interface's span that declared `command_id` (the NATS adapter's) gets it, so
        // every log line of this command names it.
        tracing::Span::current().record("command_id", tracing::field::display(&command_id));
        let primary_stream = boundary.stream_name();

        let mut stale: std::collections::HashSet<String> = std::collections::HashSet::new();
        for attempt in 1..=RETRY_LIMIT {
            // Decisions start from cached states without reading a stream: the append's
            // exact expected versions prove them current (a stream only read is checked
            // with an empty write). After a lost race the winner, when it ran in this
            // process, has already brought the cache forward; a stream the cache is
            // behind on (another process wrote it) is read forward first.
            let fresh = |b: &Boundary| stale.contains(&b.stream_name());
            let (program, program_cached) = self
                .state_of(&Boundary::Program, fresh(&Boundary::Program))
                .await?;
            let policy = match (&program.state, &envelope.command) {
                (State::Program(p), _) if p.policy().is_some() => {
                    p.policy().cloned().ok_or(EngineError::NoPolicy)?
                }
                // The very first policy is decided under itself.
                (_, Command::AdoptPolicy(AdoptPolicy { policy })) => policy.clone(),
                _ => return Err(EngineError::NoPolicy),
            };
            let program_newest = program.newest;
            let (primary, _) = if boundary == Boundary::Program {
                (Arc::clone(&program), program_cached)
            } else {
                self.state_of(&boundary, fresh(&boundary)).await?
            };
            let mut partner_loads: BTreeMap<PartnerId, (Arc<Loaded>, bool)> = BTreeMap::new();
            for partner_id in partners_needed(&primary.state, &envelope.command) {
                if partner_loads.contains_key(&partner_id) {
                    continue;
                }
                let partner = Boundary::Partner(partner_id);
                let loaded = if partner == boundary {
                    (Arc::clone(&primary), false)
                } else {
                    self.state_of(&partner, fresh(&partner)).await?
                };
                partner_loads.insert(partner_id, loaded);
            }
            // The command is decided now: the clock is read after the streams, so with a
            // running clock every event read is older (another process may have appended
            // since the command arrived). Time never runs backwards in the log: a clock a
            // little behind the newest event read (a step of the system clock, another
            // host's skew) decides at that event's time; a command dated well before it
            // (a fixed clock: `--at`, replays) is refused.
            let mut now = self.clock.now();
            let read = std::iter::once(("program".to_string(), program_newest))
                .chain(std::iter::once((primary_stream.clone(), primary.newest)))
                .chain(
                    partner_loads
                        .iter()
                        .map(|(id, (l, _))| (Boundary::Partner(*id).stream_name(), l.newest)),
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
            let partner_facts: Partners<'_> = partner_loads
                .iter()
                .filter_map(|(id, (loaded, _))| match &loaded.state {
                    State::Partner(p) => Some((*id, p)),
                    _ => None,
                })
                .collect();
            let context = Context {
                now,
                actor: &envelope.actor,
                policy: &policy,
                partners: &partner_facts,
            };
            let events = match decide(&primary.state, &envelope.command, &context) {
                Ok(events) => events,
                Err(rejection) => vec![rejection_event(&boundary, &command_name, rejection, now)],
            };

            let metadata = EventMetadata {
                schema: EVENT_SCHEMA_VERSION,
                command_id,
                command: command_name.clone(),
                actor: envelope.actor.clone(),
                idempotency_key: envelope.idempotency_key.clone(),
                policy_version: policy.version,
                decided_at: now,
            };
            drop(partner_facts);
            // Streams read from the cache and not written: their versions are checked.
            let mut checked: Vec<(String, ExpectedVersion)> = Vec::new();
            if program_cached && boundary != Boundary::Program {
                checked.push(("program".into(), program.expected()));
            }
            for (id, (loaded, cached)) in &partner_loads {
                if *cached {
                    checked.push((Boundary::Partner(*id).stream_name(), loaded.expected()));
                }
            }
            drop(program);
            let keys = self.personal_keys(&events, now).await?;
            let (request, grouped) = build_append(
                &boundary,
                primary,
                partner_loads,
                checked,
                events,
                &metadata,
                idempotency.clone(),
                &keys,
                || self.ids.next_id(now),
            )?;
            match self.store.append(request).await {
                Ok(outcome) if outcome.deduplicated => {
                    let reply = self.replay(&command_name, &outcome).await?;
                    return Ok(Executed {
                        reply,
                        replayed: true,
                    });
                }
                Ok(outcome) => {
                    let grouped = self.remember(grouped, &outcome);
                    let reply = reply_from(&command_name, &outcome, grouped)?;
                    return Ok(Executed {
                        reply,
                        replayed: false,
                    });
                }
                Err(StoreError::WrongExpectedVersion { stream, actual, .. }) => {
                    tracing::debug!(%stream, attempt, "lost a concurrency race; deciding again");
                    self.decided_again.fetch_add(1, Ordering::Relaxed);
                    let cached = self.states.get(&stream).and_then(|c| c.version);
                    if cached.is_none() || cached < actual {
                        stale.insert(stream);
                    }
                    // Decide again at once the first times (the cache usually holds the
                    // winner's state already); then back off a little, more with each
                    // attempt, with jitter from the command's id so that racing writers
                    // spread out instead of colliding again in lockstep.
                    if attempt > 2 {
                        let jitter = (command_id.as_u128() >> (attempt % 64)) as u64 & 0xff;
                        let micros = (u64::from(attempt.min(20)) * 50) + jitter * 2;
                        tokio::time::sleep(Duration::from_micros(micros)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(EngineError::Contention {
            stream: primary_stream,
            attempts: RETRY_LIMIT,
        })
    }

    /// Folds a boundary's stream forward from the cached state (or from the start), and
    /// keeps the result in the cache.
    pub async fn load(&self, boundary: &Boundary) -> Result<Arc<Loaded>, EngineError> {
        let stream = boundary.stream_name();
        let cached = self.states.get(&stream);
        let from = cached.as_ref().and_then(|c| c.version).map_or(0, |v| v + 1);
        let mut page = self.store.read_stream(&stream, from, READ_PAGE).await?;
        if page.is_empty() {
            return Ok(cached.unwrap_or_else(|| {
                Arc::new(Loaded {
                    state: State::initial(boundary),
                    version: None,
                    newest: None,
                })
            }));
        }
        let mut loaded = match cached {
            Some(cached) => Arc::unwrap_or_clone(cached),
            None => Loaded {
                state: State::initial(boundary),
                version: None,
                newest: None,
            },
        };
        loop {
            let full = page.len() == READ_PAGE;
            for recorded in &page {
                let event = decode_event(recorded)?;
                evolve(&mut loaded.state, &event);
                loaded.version = Some(recorded.revision);
                loaded.newest = loaded.newest.max(Some(event.at()));
            }
            if !full {
                break;
            }
            let from = loaded.version.map_or(0, |v| v + 1);
            page = self.store.read_stream(&stream, from, READ_PAGE).await?;
        }
        let loaded = Arc::new(loaded);
        self.states.put(&stream, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// After a successful append, brings the cached states forward by the new events, so
    /// the next command on the same streams reads nothing. Gives the events back for the
    /// reply.
    fn remember(&self, grouped: Grouped, outcome: &AppendOutcome) -> Vec<(Boundary, Vec<Event>)> {
        let mut events_back = Vec::with_capacity(grouped.len());
        for ((boundary, loaded, events), write) in grouped.into_iter().zip(&outcome.writes) {
            if let Some(last) = write.revisions.last() {
                self.states
                    .advance(&boundary.stream_name(), loaded, &events, *last);
            }
            events_back.push((boundary, events));
        }
        events_back
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

    /// The keys the decided events need to seal their contacts. Keys the vault knows are
    /// read on this thread; creating one (a durable write) runs on the blocking pool.
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
            let vault = Arc::clone(&self.vault);
            let made = tokio::task::spawn_blocking(move || {
                personal::keys_for(vault.as_ref(), &missing, at)
            })
            .await
            .map_err(|e| {
                EngineError::Vault(VaultError::Io {
                    path: "key vault".into(),
                    reason: format!("its worker stopped: {e}"),
                })
            })??;
            keys.extend(made);
        }
        Ok(keys)
    }

    /// Rebuilds the first reply of a deduplicated command from what the store recorded.
    async fn replay(&self, command: &str, outcome: &AppendOutcome) -> Result<Reply, EngineError> {
        let mut grouped = Vec::new();
        for write in &outcome.writes {
            let mut events = Vec::new();
            if let (Some(first), Some(last)) = (write.revisions.first(), write.revisions.last()) {
                let count = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
                let recorded = self.store.read_stream(&write.stream, *first, count).await?;
                for r in &recorded {
                    let mut event = decode_event(r)?;
                    personal::reveal(&mut event, self.vault.as_ref())?;
                    events.push(event);
                }
            }
            let boundary = Boundary::from_stream_name(&write.stream).unwrap_or(Boundary::Program);
            grouped.push((boundary, events));
        }
        reply_from(command, outcome, grouped)
    }
}

fn rejection_event(
    boundary: &Boundary,
    command: &str,
    rejection: DomainError,
    now: DateTime<Utc>,
) -> Event {
    Event::CommandRejected {
        boundary: boundary.clone(),
        command: command.to_string(),
        code: rejection.code,
        message: rejection.message,
        details: rejection.details,
        at: now,
    }
}

/// The streams an append writes, each with the state its events were decided on.
type Grouped = Vec<(Boundary, Arc<Loaded>, Vec<Event>)>;

/// Groups the decided events by stream (primary boundary first) with the exact version
/// each stream was decided on, and adds an empty write for each stream in `checked` that
/// the append does not write, so the append fails if that stream changed meanwhile.
#[allow(clippy::too_many_arguments)]
fn build_append(
    primary_boundary: &Boundary,
    primary: Arc<Loaded>,
    mut partners: BTreeMap<PartnerId, (Arc<Loaded>, bool)>,
    checked: Vec<(String, ExpectedVersion)>,
    events: Vec<Event>,
    metadata: &EventMetadata,
    idempotency: Option<Idempotency>,
    keys: &HashMap<String, PersonKey>,
    mut event_id: impl FnMut() -> Uuid,
) -> Result<(AppendRequest, Grouped), EngineError> {
    let mut grouped: Grouped = vec![(primary_boundary.clone(), primary, Vec::new())];
    for event in events {
        let target = event.boundary();
        if let Some(slot) = grouped.iter_mut().find(|(b, _, _)| *b == target) {
            slot.2.push(event);
            continue;
        }
        let loaded = match &target {
            Boundary::Partner(id) => partners.remove(id).map(|(loaded, _)| loaded),
            _ => None,
        }
        .ok_or_else(|| EngineError::UnloadedBoundary {
            stream: target.stream_name(),
        })?;
        grouped.push((target, loaded, vec![event]));
    }
    drop(partners);
    let metadata_bytes =
        serde_json::to_vec(metadata).map_err(|e| EngineError::Encode(e.to_string()))?;
    let mut writes = Vec::with_capacity(grouped.len() + checked.len());
    for (boundary, loaded, events) in &grouped {
        let mut new_events = Vec::with_capacity(events.len());
        for event in events {
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
                metadata: metadata_bytes.clone(),
            });
        }
        writes.push(StreamWrite {
            stream: boundary.stream_name(),
            expected: loaded.expected(),
            events: new_events,
        });
    }
    for (stream, expected) in checked {
        if !writes.iter().any(|w| w.stream == stream) {
            writes.push(StreamWrite {
                stream,
                expected,
                events: Vec::new(),
            });
        }
    }
    Ok((
        AppendRequest {
            idempotency,
            writes,
        },
        grouped,
    ))
}

fn reply_from(
    command: &str,
    outcome: &AppendOutcome,
    grouped: Vec<(Boundary, Vec<Event>)>,
) -> Result<Reply, EngineError> {
    let mut positioned = Vec::new();
    for ((_, events), write) in grouped.into_iter().zip(&outcome.writes) {
        for ((event, revision), position) in events
            .into_iter()
            .zip(&write.revisions)
            .zip(&write.positions)
        {
            positioned.push(PositionedEvent {
                stream: write.stream.clone(),
                revision: *revision,
                position: *position,
                event,
            });
        }
    }
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
    Ok(Reply {
        ok: error.is_none(),
        command: command.to_string(),
        events: positioned,
        error,
    })
}

/// Idempotency keys are scoped to who sends them, so one partner's key can never return
/// another partner's reply (invariant 7).
/// The key an idempotency record is stored under for an actor's key: keys are scoped
/// to the actor, so two partners' keys never meet. Auditors hold the idempotency records
/// against the keys in the events' metadata with it.
pub fn idempotency_record_key(actor: &Actor, key: &str) -> String {
    format!("{}/{}", actor_scope(actor), key)
}

fn actor_scope(actor: &Actor) -> String {
    match actor {
        Actor::Partner { partner_id, .. } => format!("partner:{partner_id}"),
        Actor::Vendor { .. } => "vendor".to_string(),
        Actor::System { .. } => "system".to_string(),
    }
}

/// What makes two commands "the same" for idempotency: the actor and the command, as JSON.
fn fingerprint(envelope: &CommandEnvelope) -> String {
    let bytes = serde_json::to_vec(&(&envelope.actor, &envelope.command)).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
