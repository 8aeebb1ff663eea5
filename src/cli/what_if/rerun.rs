//! The history decided again in a scratch store under the draft policy.
//!
//! Each recorded command is executed as it was (same actor, same idempotency key, at the
//! time it was decided) on a fresh SQLite log. What the system derives from the log
//! itself is derived again rather than copied: the timekeeper's commands come from the
//! scratch log's own deadlines, at the moment each falls due (so a 60-day protection
//! expires on day 60, not on the recorded day 90), and the follow-ups of an offboarding
//! from the scratch log's own events. A command is decided again only from its recorded
//! body; one without (a log written before bodies were kept) is named in the report.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use dealreg_clock::{ControlledClock, TimeOrderedIds};
use dealreg_domain::command::AdoptPolicy;
use dealreg_domain::{Actor, Command, Policy};
use dealreg_engine::{CommandEnvelope, Engine, Executed, PositionedEvent};
use dealreg_host::{reactor, timekeeper};
use dealreg_projections::deadlines::{Deadline, Deadlines};
use dealreg_projections::Projection;
use dealreg_store_sqlite::SqliteStore;
use serde::Serialize;

use super::history::{Recorded, Verdict};
use super::outcome::Outcome;

/// The components whose commands the scratch run derives itself.
const DERIVED: &[&str] = &["timekeeper", "offboarding"];

/// A command answered otherwise under the draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecidedOtherwise {
    pub at: DateTime<Utc>,
    pub command: String,
    /// Who sent it (`partner <id> (<user>)`, `ChannelManager <user>`, ...).
    pub actor: String,
    /// The registration it is about, where it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    pub was: String,
    pub now: String,
}

/// What the run did with the recorded commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Commands the log holds.
    pub recorded: u64,
    /// Decided again from their recorded body.
    pub decided_again: u64,
    /// The timekeeper's and the offboarding follow-ups, derived again from the scratch
    /// log instead (recorded, and issued by the run).
    pub derived_recorded: u64,
    pub derived_issued: u64,
    /// Policy adoptions at or after the draft's start, which the draft replaces.
    pub replaced_by_draft: u64,
    /// Commands that cannot be decided again, by name: how many, and the first's time.
    pub not_replayable: BTreeMap<String, NotReplayable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReplayable {
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub why: String,
}

/// The scratch run.
pub struct Rerun {
    engine: Engine<SqliteStore, ControlledClock>,
    clock: ControlledClock,
    deadlines: Deadlines,
    pub outcome: Outcome,
    /// Deadlines already issued (a refused one stays open; it is not issued again).
    issued: HashSet<String>,
    /// The timekeeper has looked up to here.
    checked_until: Option<DateTime<Utc>>,
    /// How often the timekeeper looks (simulated time).
    tick: Duration,
    pub coverage: Coverage,
    pub decided_otherwise: Vec<DecidedOtherwise>,
}

fn key(deadline: &Deadline) -> String {
    serde_json::to_string(deadline).unwrap_or_default()
}

impl Rerun {
    /// A scratch log at `path`, its program under `policy` from `start`.
    pub async fn open(
        path: &Path,
        start: DateTime<Utc>,
        policy: Policy,
        tick: Duration,
    ) -> Result<Rerun, String> {
        let store = SqliteStore::open(path).map_err(|e| format!("the scratch store: {e}"))?;
        let clock = ControlledClock::starting_at(start);
        let engine = Engine::open_with(
            store,
            clock.clone(),
            TimeOrderedIds,
            Some(policy),
            "what-if",
        )
        .await
        .map_err(|e| format!("the scratch program: {e}"))?;
        let mut rerun = Rerun {
            engine,
            clock,
            deadlines: Deadlines::default(),
            outcome: Outcome::default(),
            issued: HashSet::new(),
            checked_until: None,
            tick,
            coverage: Coverage::default(),
            decided_otherwise: Vec::new(),
        };
        // The bootstrap policy's own events.
        let mut pages = dealreg_events::LogPages::new(rerun.engine.store(), Default::default())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
            for recorded in &page {
                let event = dealreg_engine::decode_event(recorded).map_err(|e| e.to_string())?;
                rerun.deadlines.apply(recorded.position, &event);
                rerun.outcome.apply(recorded.position, &event);
            }
        }
        Ok(rerun)
    }

    fn fold(&mut self, events: &[PositionedEvent]) {
        for e in events {
            self.deadlines.apply(e.position, &e.event);
            self.outcome.apply(e.position, &e.event);
        }
    }

    /// Executes one command at the clock's time, folds what it wrote, and runs the
    /// follow-ups its events imply.
    async fn execute(&mut self, envelope: CommandEnvelope) -> Result<Executed, String> {
        let executed = self
            .engine
            .execute(envelope)
            .await
            .map_err(|e| format!("the scratch log refused a write: {e}"))?;
        self.fold_and_follow(&executed.reply.events).await?;
        Ok(executed)
    }

    /// Folds `events` and runs the follow-ups they imply (and theirs), each counted as
    /// derived: what the reactor would do on the scratch log.
    async fn fold_and_follow(&mut self, events: &[PositionedEvent]) -> Result<(), String> {
        self.fold(events);
        let mut follow: Vec<CommandEnvelope> = events
            .iter()
            .flat_map(|e| reactor::follow_ups(&e.event))
            .collect();
        while let Some(next) = follow.pop() {
            let done = self
                .engine
                .execute(next)
                .await
                .map_err(|e| format!("the scratch log refused a follow-up: {e}"))?;
            self.coverage.derived_issued += 1;
            self.fold(&done.reply.events);
            follow.extend(
                done.reply
                    .events
                    .iter()
                    .flat_map(|e| reactor::follow_ups(&e.event)),
            );
        }
        Ok(())
    }

    /// Issues every deadline of the scratch log that falls due up to `until`, each at
    /// its own due time, earliest first. Looks once per tick of simulated time.
    pub async fn run_due(&mut self, until: DateTime<Utc>) -> Result<(), String> {
        if self.checked_until.is_some_and(|c| until < c + self.tick) {
            return Ok(());
        }
        loop {
            let next = self
                .deadlines
                .open()
                .into_iter()
                .filter(|d| d.due_at <= until && !self.issued.contains(&key(d)))
                .map(|d| d.due_at)
                .min();
            let Some(at) = next else { break };
            self.clock.set(at);
            let tick = timekeeper::tick(&self.engine, &self.deadlines)
                .await
                .map_err(|e| format!("the scratch timekeeper: {e}"))?;
            if tick.issued.is_empty() {
                break;
            }
            for (deadline, executed) in tick.issued {
                if self.issued.insert(key(&deadline)) {
                    self.coverage.derived_issued += 1;
                }
                self.fold_and_follow(&executed.reply.events).await?;
            }
        }
        self.checked_until = Some(until);
        Ok(())
    }

    /// Adopts the draft now, numbered after the policy in force.
    pub async fn adopt_draft(&mut self, draft: &Policy) -> Result<u32, String> {
        let mut draft = draft.clone();
        let in_force = self
            .engine
            .policy()
            .await
            .map_err(|e| format!("the scratch program has no policy: {e}"))?;
        draft.version = in_force.version + 1;
        let version = draft.version;
        let executed = self
            .execute(CommandEnvelope {
                idempotency_key: Some("what-if-draft".into()),
                actor: Actor::System {
                    component: "what-if".into(),
                },
                command: Command::AdoptPolicy(AdoptPolicy { policy: draft }),
            })
            .await?;
        match executed.reply.error {
            None => Ok(version),
            Some(e) => Err(format!("the draft policy was refused: {}", e.message)),
        }
    }

    /// Decides one recorded command again, or counts why it is not.
    pub async fn replay(&mut self, recorded: &Recorded) -> Result<(), String> {
        self.coverage.recorded += 1;
        if let Actor::System { component } = &recorded.actor {
            if DERIVED.contains(&component.as_str()) {
                self.coverage.derived_recorded += 1;
                return Ok(());
            }
        }
        let command = match recorded
            .body
            .as_deref()
            .map(serde_json::from_str::<Command>)
        {
            Some(Ok(command)) => command,
            Some(Err(e)) => {
                self.not_replayable(recorded, &format!("its recorded body does not read: {e}"));
                return Ok(());
            }
            None => {
                self.not_replayable(
                    recorded,
                    "recorded before the engine kept command bodies (the log holds what it decided, not what it was asked)",
                );
                return Ok(());
            }
        };
        self.run_due(recorded.decided_at).await?;
        self.clock.set(recorded.decided_at);
        let executed = self
            .execute(CommandEnvelope {
                idempotency_key: recorded.idempotency_key.clone(),
                actor: recorded.actor.clone(),
                command,
            })
            .await?;
        self.coverage.decided_again += 1;
        let now = match &executed.reply.error {
            None => Verdict::Accepted,
            Some(e) => Verdict::Refused(e.code.to_string()),
        };
        if now != recorded.verdict {
            self.decided_otherwise.push(DecidedOtherwise {
                at: recorded.decided_at,
                command: recorded.name.clone(),
                actor: self.who(&recorded.actor),
                registration_id: recorded.body.as_deref().and_then(registration_of),
                was: recorded.verdict.word(),
                now: now.word(),
            });
        }
        Ok(())
    }

    /// Who sent a command, in people's words: a partner by its name.
    fn who(&self, actor: &Actor) -> String {
        match actor {
            Actor::Partner { partner_id, user } => match self.outcome.partners.get(partner_id) {
                Some(name) => format!("{name} ({user})"),
                None => actor.label(),
            },
            other => other.label(),
        }
    }

    pub fn count_replaced(&mut self) {
        self.coverage.recorded += 1;
        self.coverage.replaced_by_draft += 1;
    }

    fn not_replayable(&mut self, recorded: &Recorded, why: &str) {
        self.coverage
            .not_replayable
            .entry(recorded.name.clone())
            .or_insert_with(|| NotReplayable {
                count: 0,
                first_at: recorded.decided_at,
                why: why.to_string(),
            })
            .count += 1;
    }
}

/// The registration a command is about, from its recorded JSON (`registration_id`).
fn registration_of(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("registration_id")?
        .as_str()
        .map(str::to_string)
}
