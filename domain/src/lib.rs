//! dealreg's domain: pure decisions over partner programs.
//!
//! `decide(state, command, context) -> Result<Vec<Event>, DomainError>` and
//! `evolve(&mut state, &event)`. No I/O, no async runtime, no clock: the time, the actor,
//! the policy in force and read-only partner facts arrive in the [`Context`] (ENGINE.md,
//! invariant 1).

pub mod account;
pub mod actor;
pub mod attribution;
pub mod boundary;
pub mod calendar;
pub mod command;
pub mod error;
pub mod event;
pub mod harness;
pub mod hierarchy;
pub mod ids;
pub mod money;
pub mod motion;
pub mod partner;
pub mod policy;
pub mod program;
mod registration;
pub mod stages;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub use account::{AccountState, Registration, RegistrationStatus};
pub use actor::{Actor, VendorRole};
pub use attribution::Attribution;
pub use boundary::Boundary;
pub use command::{Command, Contact, Customer, StageEvidence};
pub use error::{DomainError, RejectionCode};
pub use event::{ConflictKind, ConflictParty, ConflictSla, Event, OpenSlot};
pub use ids::{AccountKey, ConflictId, OpportunityId, PartnerId, RegistrationId};
pub use money::{Currency, Money};
pub use motion::{DealKind, Motion, Tier};
pub use partner::{PartnerState, PartnerStatus, Territory};
pub use policy::Policy;
pub use program::ProgramState;

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

/// What a decision may read besides the state: the time, who asks, the policy in force,
/// and the facts of the partners named by [`partners_needed`].
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub actor: &'a Actor,
    pub policy: &'a Policy,
    pub partners: &'a BTreeMap<PartnerId, PartnerState>,
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
    match state {
        State::Account(account) => registration::partners_needed(account, command),
        _ => Vec::new(),
    }
}

/// Decides a command against its boundary's state.
pub fn decide(
    state: &State,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match (state, command.boundary()?) {
        (State::Program(s), Boundary::Program) => program::decide(s, command, ctx.actor, ctx.now),
        (State::Partner(s), Boundary::Partner(_)) => {
            partner::decide(s, command, ctx.actor, ctx.now)
        }
        (State::Account(s), Boundary::Account(_)) => registration::decide(s, command, ctx),
        _ => error::refuse(
            RejectionCode::WrongBoundary,
            "the state given does not belong to the command's boundary",
        ),
    }
}
