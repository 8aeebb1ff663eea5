//! The domain's entry points: the folded [`State`] of a boundary, the [`Context`] a
//! decision reads, and `decide` / `evolve` / `partners_needed`.
//!
//! `decide(state, command, context) -> Result<Vec<Event>, DomainError>` and
//! `evolve(&mut state, &event)` are pure: the time, the actor, the policy in force and the
//! partner facts arrive in the context (docs/ARCHITECTURE.md, invariant 1).

use crate::account::AccountState;
use crate::boundary::Boundary;
use crate::command::Command;
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{AccountKey, PartnerId};
use crate::partner::{self, PartnerState};
use crate::program::{self, ProgramState};
use crate::registration;
use crate::route::Route;

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

/// Decides a command against its boundary's state.
pub fn decide(
    state: &State,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match (state, command.route()) {
        (State::Program(s), Route::Program(c)) => program::decide(s, c, ctx.actor, ctx.now),
        (State::Partner(s), Route::Partner(_, c)) => {
            partner::decide(s, c, ctx.actor, ctx.policy, ctx.now)
        }
        (State::Account(s), Route::Account(raw, c)) => {
            registration::decide(s, c, AccountKey::from_domain(raw)?, ctx)
        }
        _ => refuse(
            RejectionCode::WrongBoundary,
            "the state given does not belong to the command's boundary",
        ),
    }
}
