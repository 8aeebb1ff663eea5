//! Renewal ownership: the incumbent (the partner that won the product line last) owns its
//! renewal unless a channel manager reassigns it; ownership is confirmed at least the
//! policy's lead time (90 days) before the renewal, and the timekeeper flags the review
//! when that time comes.

use chrono::Duration;
use serde_json::json;

use super::guards::{channel_manager, days, partner, require, system};
use crate::account::AccountState;
use crate::command::{ConfirmRenewalOwnership, FlagRenewalOwnershipDue, ReassignRenewalOwnership};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{normalise_product_line, AccountKey};
use crate::route::RenewalCommand;

pub(super) fn decide(
    state: &AccountState,
    command: RenewalCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        RenewalCommand::FlagReviewDue(c) => flag_review_due(state, c, account, ctx),
        RenewalCommand::Confirm(c) => confirm(state, c, account, ctx),
        RenewalCommand::Reassign(c) => reassign(state, c, account, ctx),
    }
}

fn flag_review_due(
    state: &AccountState,
    command: &FlagRenewalOwnershipDue,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let product_line = &normalise_product_line(&command.product_line);
    system(ctx.actor)?;
    let renewal_date = *state.renewal_dates.get(product_line).ok_or_else(|| {
        DomainError::new(
            RejectionCode::NoIncumbent,
            format!("no won contract on `{product_line}` renews on this account"),
        )
    })?;
    let due = renewal_date - Duration::days(i64::from(ctx.policy.timing.renewal_confirmation_days));
    if ctx.now.date_naive() < due {
        return Err(DomainError::new(
            RejectionCode::NotDue,
            format!("renewal ownership is reviewed from {due}"),
        )
        .with_details(json!({ "due_on": due })));
    }
    let confirmed = state
        .renewals
        .get(product_line)
        .and_then(|r| r.confirmed_for)
        == Some(renewal_date);
    let key = (product_line.clone(), renewal_date);
    if confirmed || state.renewal_reviews.contains(&key) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this renewal's ownership was already confirmed or flagged",
        );
    }
    Ok(vec![Event::RenewalOwnershipReviewDue {
        account,
        product_line: product_line.clone(),
        owner: state.renewal_owner(product_line),
        renewal_date,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

fn confirm(
    state: &AccountState,
    command: &ConfirmRenewalOwnership,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let product_line = &normalise_product_line(&command.product_line);
    channel_manager(ctx.actor)?;
    let owner = state.renewal_owner(product_line).ok_or_else(|| {
        DomainError::new(
            RejectionCode::NoIncumbent,
            format!("nobody owns `{product_line}` on this account yet; reassign the renewal to a partner first"),
        )
    })?;
    let lead = ctx.policy.timing.renewal_confirmation_days;
    let latest = command.renewal_date - days(lead);
    if ctx.now.date_naive() > latest {
        return Err(DomainError::new(
            RejectionCode::RenewalConfirmationTooLate,
            format!(
                "renewal ownership must be confirmed at least {lead} days before renewal (by {latest})"
            ),
        )
        .with_details(json!({ "confirm_by": latest })));
    }
    Ok(vec![Event::RenewalOwnershipConfirmed {
        account,
        product_line: product_line.clone(),
        partner_id: owner,
        renewal_date: command.renewal_date,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

fn reassign(
    state: &AccountState,
    command: &ReassignRenewalOwnership,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let product_line = &normalise_product_line(&command.product_line);
    channel_manager(ctx.actor)?;
    require(&command.reason, "reason")?;
    let to = command.to_partner;
    let facts = partner(ctx, to)?;
    if !facts.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "renewals can only go to an active partner",
        );
    }
    let from = state.renewal_owner(product_line);
    if from == Some(to) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this partner already owns the renewal",
        );
    }
    Ok(vec![Event::RenewalOwnershipReassigned {
        account,
        product_line: product_line.clone(),
        from,
        to,
        reason: command.reason.clone(),
        at: ctx.now,
    }])
}
