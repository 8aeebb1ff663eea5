//! The domain's entry points: the folded [`State`] of a boundary, the [`Context`] a
//! decision reads, and `decide` / `evolve` / `partners_needed`.
//!
//! `decide(state, command, context) -> Result<Decision, DomainError>` and
//! `evolve(&mut state, &event)` are pure: the time, the actor, the policy in force and the
//! partner facts arrive in the context (docs/ARCHITECTURE.md, invariant 1).
//!
//! A [`Decision`] says everything a command does: the events of its own boundary's stream
//! and, for an account decision, the capacity work on partners' streams beside them
//! ([`CapacityWork`]). The partners it reads are declared before it is taken
//! ([`partners_needed`]); the work never names a partner the decision did not read.

use crate::account::AccountState;
use crate::announcement;
use crate::boundary::Boundary;
use crate::command::Command;
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{AccountKey, PartnerId, RegistrationId};
use crate::partner::{self, PartnerState};
use crate::program::{self, ProgramState};
use crate::registration;
use crate::route::Route;
use crate::subscription;

/// The folded state of one boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Program(ProgramState),
    Partner(PartnerState),
    Account(AccountState),
}

impl State {
    pub fn initial(boundary: &Boundary) -> State {
        match boundary {
            Boundary::Program => State::Program(ProgramState::default()),
            Boundary::Partner(_) => State::Partner(PartnerState::default()),
            Boundary::Account(_) => State::Account(AccountState::default()),
        }
    }
}

/// One fold step. Events of another boundary leave the state unchanged.
pub fn evolve(state: &mut State, event: &Event) {
    match state {
        State::Program(s) => s.evolve(event),
        State::Partner(s) => s.evolve(event),
        State::Account(s) => s.evolve(event),
    }
}

/// The partners whose facts the engine must load into [`Context::partners`] before
/// deciding `command`. A decision only emits capacity events for these partners.
pub fn partners_needed(state: &State, command: &Command) -> Vec<PartnerId> {
    match (state, command.route()) {
        (State::Account(account), Route::Account(_, command)) => {
            registration::partners_needed(account, command)
        }
        _ => Vec::new(),
    }
}

/// The partner whose stream an accepted `command` writes, at the exact tip its decision
/// read: a submission's capacity slot. Declared here so the engine need not re-derive it:
/// the slot is appended at the partner's tip as read (with the account's events, or held
/// just before them), so a stale read of that partner cannot be acted on (the append at
/// the old tip is refused and the command decided again), and the engine may take that
/// partner from its cache at any age.
pub fn partner_written(command: &Command) -> Option<PartnerId> {
    match command {
        Command::SubmitRegistration(c) => Some(c.partner_id),
        _ => None,
    }
}

/// What one decision does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The events of the command's own boundary, to be appended to its one stream.
    pub events: Vec<Event>,
    /// What the events mean for partners' capacity, done on the partners' own streams.
    pub capacity: CapacityWork,
}

/// The capacity slots an account decision needs held and those it gives back, written on
/// the partners' streams in one atomic append with its events where the backend has one,
/// else held before its events and given back after (docs/ARCHITECTURE.md, capacity). Each is decided again on
/// the partner's stream at its exact tip (`partner::take_slot`, `partner::release_slot`):
/// the account decides *that* a slot is needed, the partner *which* one and whether one is
/// left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityWork {
    pub takes: Vec<SlotTake>,
    pub releases: Vec<SlotRelease>,
}

/// A slot a registration needs on its partner's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotTake {
    pub partner_id: PartnerId,
    pub registration_id: RegistrationId,
    pub account: AccountKey,
}

impl SlotTake {
    /// The partner stream the slot is taken on.
    pub fn partner_stream(&self) -> String {
        Boundary::Partner(self.partner_id).stream_name()
    }
}

/// A slot a registration gives back: `slot` is the one it holds by the partner facts the
/// decision read (`None` when it did not read them: the engine finds the number then).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRelease {
    pub partner_id: PartnerId,
    pub registration_id: RegistrationId,
    pub account: AccountKey,
    pub slot: Option<u64>,
}

impl CapacityWork {
    pub fn is_empty(&self) -> bool {
        self.takes.is_empty() && self.releases.is_empty()
    }

    /// Every partner stream the work writes to.
    pub fn partners(&self) -> impl Iterator<Item = PartnerId> + '_ {
        self.takes
            .iter()
            .map(|t| t.partner_id)
            .chain(self.releases.iter().map(|r| r.partner_id))
    }
}

impl Decision {
    /// A decision of a boundary that does no capacity work.
    pub fn events(events: Vec<Event>) -> Decision {
        Decision {
            events,
            capacity: CapacityWork::default(),
        }
    }

    /// An account decision, from its deciders' events: the slot events they name for
    /// partners' streams are the capacity work, the rest the account's own events, each in
    /// the order decided. The time of a slot event is the decision's, so nothing is lost.
    pub(crate) fn of_account(decided: Vec<Event>) -> Decision {
        let mut decision = Decision::default();
        for event in decided {
            match event {
                Event::CapacitySlotTaken {
                    partner_id,
                    registration_id,
                    account,
                    ..
                } => decision.capacity.takes.push(SlotTake {
                    partner_id,
                    registration_id,
                    account,
                }),
                Event::CapacitySlotReleased {
                    partner_id,
                    registration_id,
                    account,
                    slot,
                    ..
                } => decision.capacity.releases.push(SlotRelease {
                    partner_id,
                    registration_id,
                    account,
                    slot,
                }),
                own => decision.events.push(own),
            }
        }
        decision
    }

    /// The decision as one list of events at time `at`: its own, then the slots it gives
    /// back, then the slots it takes, as the partner streams would record them (slot
    /// numbers as far as the decision knew them). For tests and printing.
    pub fn all_events(&self, at: chrono::DateTime<chrono::Utc>) -> Vec<Event> {
        let mut all = self.events.clone();
        all.extend(
            self.capacity
                .releases
                .iter()
                .map(|r| Event::CapacitySlotReleased {
                    partner_id: r.partner_id,
                    registration_id: r.registration_id,
                    account: r.account.clone(),
                    slot: r.slot,
                    at,
                }),
        );
        all.extend(
            self.capacity
                .takes
                .iter()
                .map(|t| Event::CapacitySlotTaken {
                    partner_id: t.partner_id,
                    registration_id: t.registration_id,
                    account: t.account.clone(),
                    at,
                }),
        );
        all
    }
}

/// Decides a command against its boundary's state.
pub fn decide(
    state: &State,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Decision, DomainError> {
    use crate::route::{PartnerCommand as P, ProgramCommand as G};
    match (state, command.route()) {
        (State::Program(s), Route::Program(G::PublishAnnouncement(c))) => {
            announcement::publish(s.announcements(), c, ctx.actor, ctx.now).map(Decision::events)
        }
        (State::Program(_), Route::Program(G::SetAlertSubscription(c))) => {
            subscription::decide(c, ctx.actor, ctx.now).map(Decision::events)
        }
        (State::Partner(s), Route::Partner(_, P::AcknowledgeAnnouncement(c))) => {
            announcement::acknowledge(s, c, ctx).map(Decision::events)
        }
        (State::Partner(s), Route::Partner(_, P::RecordAnnouncementRead(c))) => {
            announcement::record_read(s, c, ctx).map(Decision::events)
        }
        (State::Partner(s), Route::Partner(_, P::ChaseAnnouncement(c))) => {
            announcement::chase(s, c, ctx).map(Decision::events)
        }
        (State::Program(s), Route::Program(c)) => {
            program::decide(s, c, ctx.actor, ctx.now).map(Decision::events)
        }
        (State::Partner(s), Route::Partner(_, c)) => {
            partner::decide(s, c, ctx.actor, ctx.policy, ctx.now).map(Decision::events)
        }
        (State::Account(s), Route::Account(raw, c)) => {
            registration::decide(s, c, AccountKey::from_domain(raw)?, ctx).map(Decision::of_account)
        }
        _ => refuse(
            RejectionCode::WrongBoundary,
            "the state given does not belong to the command's boundary",
        ),
    }
}
