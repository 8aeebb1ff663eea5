//! Decisions on the customer account, one module per concern: [`submission`],
//! [`review`] (approval, decline, appeals), [`protection`] (the protection window),
//! [`deal`] (stages and outcomes), [`attribution`], [`conflicts`], [`renewals`] and
//! [`engagement`] (notes, next steps, requests), with
//! the checks they share in [`guards`]. Pure: time, policy, actor and partner facts come
//! in the [`Context`].
//!
//! This module only routes: each command reaches its concern's decider once, and that
//! decider matches its own commands exhaustively.

mod attribution;
mod capacity;
mod conflicts;
mod deal;
mod engagement;
mod exits;
mod guards;
mod protection;
mod renewals;
mod review;
mod submission;
pub(crate) use submission::{is_email, is_phone};

use crate::account::AccountState;
use crate::context::Context;
use crate::error::DomainError;
use crate::event::Event;
use crate::ids::{AccountKey, PartnerId};
use crate::route::{
    AccountCommand, ConflictCommand, ProtectionCommand, RenewalCommand, ReviewCommand,
};

/// The partners whose facts a decision reads, and whose capacity slots it may take or
/// release: exactly what the engine loads into [`Context::partners`] before deciding.
pub(crate) fn partners_needed(state: &AccountState, command: AccountCommand<'_>) -> Vec<PartnerId> {
    let owner = || {
        command
            .registration_id()
            .and_then(|id| state.registrations.get(&id))
            .map(|r| r.partner_id)
    };
    let mut ids: Vec<PartnerId> = match command {
        AccountCommand::Submission(c) => vec![c.partner_id],
        AccountCommand::Review(ReviewCommand::Approve(c)) => {
            review::partners_needed(state, &c.registration_id)
        }
        AccountCommand::Protection(ProtectionCommand::Reassign(c)) => {
            owner().into_iter().chain([c.to_partner]).collect()
        }
        AccountCommand::Review(_) | AccountCommand::Protection(_) | AccountCommand::Deal(_) => {
            owner().into_iter().collect()
        }
        AccountCommand::Attribution(a) => owner()
            .into_iter()
            .chain([attribution::subject(a)])
            .collect(),
        AccountCommand::Conflict(ConflictCommand::AssignNamedAccount(c)) => vec![c.partner_id],
        AccountCommand::Conflict(_) | AccountCommand::Engagement(_) => Vec::new(),
        AccountCommand::Renewal(RenewalCommand::Reassign(c)) => vec![c.to_partner],
        AccountCommand::LapseSlot(c) => vec![c.partner_id],
        AccountCommand::Renewal(RenewalCommand::FlagReviewDue(_) | RenewalCommand::Confirm(_)) => {
            Vec::new()
        }
    };
    ids.sort();
    ids.dedup();
    ids
}

/// Decides an account command on the account's folded state.
pub(crate) fn decide(
    state: &AccountState,
    command: AccountCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    guards::not_an_auditor(ctx.actor)?;
    match command {
        AccountCommand::Submission(c) => submission::decide(state, c, account, ctx),
        AccountCommand::Review(c) => review::decide(state, c, account, ctx),
        AccountCommand::Protection(c) => protection::decide(state, c, account, ctx),
        AccountCommand::Deal(c) => deal::decide(state, c, account, ctx),
        AccountCommand::Attribution(c) => attribution::decide(state, c, account, ctx),
        AccountCommand::Conflict(c) => conflicts::decide(state, c, account, ctx),
        AccountCommand::Renewal(c) => renewals::decide(state, c, account, ctx),
        AccountCommand::LapseSlot(c) => capacity::lapse(state, c, account, ctx),
        AccountCommand::Engagement(c) => engagement::decide(state, c, account, ctx),
    }
}
