//! The deal: it moves through its motion's stages when the exit criteria are met, is won
//! at its motion's closing stage (then goes on through the post-sale stages), and ends won (attribution locked, renewal date set), lost, withdrawn by the partner, or
//! released (offboarding). Revenue that reverses after a win is recorded here too, so the
//! ledger can claw back.

use chrono::Duration;
use serde_json::json;

use super::conflicts::settled_by;
use super::exits::{check_exit, check_win};
use super::guards::{
    find, invalid, owner_or_channel_manager, partner, release_slot, require, status_is,
};
use crate::account::{AccountState, RegistrationStatus};
use crate::actor::VendorRole;
use crate::command::{
    AdvanceStage, MarkLost, MarkWon, RecordRevenueReversal, ReleaseRegistration,
    WithdrawRegistration,
};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::AccountKey;
use crate::route::DealCommand;
use crate::stages::{closing_stage, stage_name, stages};

pub(super) fn decide(
    state: &AccountState,
    command: DealCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        DealCommand::AdvanceStage(c) => advance(state, c, account, ctx),
        DealCommand::Won(c) => won(state, c, account, ctx),
        DealCommand::Lost(c) => lost(state, c, account, ctx),
        DealCommand::RevenueReversal(c) => revenue_reversal(state, c, account, ctx),
        DealCommand::Withdraw(c) => withdraw(state, c, account, ctx),
        DealCommand::Release(c) => release(state, c, account, ctx),
    }
}

fn advance(
    state: &AccountState,
    command: &AdvanceStage,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let r = find(state, &command.registration_id, ctx.actor)?;
    owner_or_channel_manager(ctx.actor, r)?;
    status_is(
        r,
        &[RegistrationStatus::Protected, RegistrationStatus::Won],
        "advance",
    )?;
    let closing = closing_stage(r.motion);
    let won = r.status == RegistrationStatus::Won;
    // Before the win a deal moves up to its closing stage, whose exit is the win; after
    // it, through the post-sale stages (a deal won before wins waited for the closing
    // stage goes on from the first post-sale one).
    let next = if won {
        (r.stage + 1).max(closing + 1)
    } else {
        r.stage + 1
    };
    if next >= stages(r.motion).len() {
        return refuse(
            RejectionCode::InvalidTransition,
            "the deal is at its motion's last stage",
        );
    }
    if !won && next > closing {
        return Err(DomainError::new(
            RejectionCode::InvalidTransition,
            format!(
                "a {} deal leaves `{}` by being won: mark it won (or lost); `{}` comes after the win",
                r.motion.as_str(),
                stage_name(r.motion, r.stage),
                stage_name(r.motion, next)
            ),
        )
        .with_details(json!({ "closing_stage": stage_name(r.motion, closing) })));
    }
    let expected = stage_name(r.motion, next);
    if command.to_stage != expected {
        return Err(DomainError::new(
            RejectionCode::InvalidTransition,
            format!(
                "a {} deal at `{}` moves to `{expected}` next, not `{}`",
                r.motion.as_str(),
                stage_name(r.motion, r.stage),
                command.to_stage
            ),
        )
        .with_details(json!({ "next_stage": expected, "stages": stages(r.motion) })));
    }
    if won {
        // Post-sale: delivery and renewal responsibility, recorded in the note.
        if command.evidence.note.trim().is_empty() {
            return refuse(
                RejectionCode::ExitCriteriaNotMet,
                "evidence needs a note saying who delivers and who owns the renewal",
            );
        }
    } else {
        let tier = partner(ctx, r.partner_id)?.tier();
        check_exit(r, tier, &command.evidence, ctx.policy)?;
    }
    Ok(vec![Event::StageAdvanced {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        from_stage: stage_name(r.motion, r.stage).to_string(),
        to_stage: expected.to_string(),
        evidence: command.evidence.clone(),
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

fn won(
    state: &AccountState,
    command: &MarkWon,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    if !(ctx.actor.is_role(VendorRole::ChannelManager)
        || ctx.actor.is_role(VendorRole::RevOps)
        || ctx.actor.is_system())
    {
        return refuse(
            RejectionCode::NotAuthorised,
            "wins are recorded by the vendor (channel manager, RevOps or the CRM adapter)",
        );
    }
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Protected], "win")?;
    let amount = &command.amount;
    amount.require_positive("amount")?;
    if amount.currency != r.estimated_amount.currency {
        return Err(invalid(
            "amount.currency",
            "must be the registration's currency",
        ));
    }
    if r.attribution.is_empty() {
        return refuse(RejectionCode::ExitCriteriaNotMet, "attribution is locked at the win, and this deal has none: set the sourcing partner or influencers first");
    }
    let order_reference = check_win(r, &command.order_reference)?;
    let mut events = vec![Event::DealWon {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        motion: r.motion,
        product_line: r.product_line.clone(),
        amount: amount.clone(),
        attribution: r.attribution.clone(),
        renewal_date: Some(
            now.date_naive() + Duration::days(i64::from(ctx.policy.timing.renewal_term_days)),
        ),
        order_reference,
        policy_version: ctx.policy.version,
        at: now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "was won", ctx));
    Ok(events)
}

fn lost(
    state: &AccountState,
    command: &MarkLost,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let r = find(state, &command.registration_id, ctx.actor)?;
    owner_or_channel_manager(ctx.actor, r)?;
    status_is(
        r,
        &[RegistrationStatus::Pending, RegistrationStatus::Protected],
        "lose",
    )?;
    require(&command.reason, "reason")?;
    let mut events = vec![Event::DealLost {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        reason: command.reason.clone(),
        policy_version: ctx.policy.version,
        at: ctx.now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "was lost", ctx));
    Ok(events)
}

fn revenue_reversal(
    state: &AccountState,
    command: &RecordRevenueReversal,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !(ctx.actor.is_role(VendorRole::RevOps) || ctx.actor.is_system()) {
        return refuse(
            RejectionCode::NotAuthorised,
            "revenue reversals come from RevOps or the billing adapter",
        );
    }
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Won], "reverse revenue on")?;
    require(&command.reason, "reason")?;
    let amount = &command.amount;
    amount.require_positive("amount")?;
    let won = r.won_amount.as_ref().map_or(0, |m| m.amount_minor);
    if amount.currency != r.estimated_amount.currency {
        return Err(invalid("amount.currency", "must be the deal's currency"));
    }
    if r.reversed_minor + amount.amount_minor > won {
        return Err(invalid(
            "amount",
            "must be at most what is left of the won amount",
        ));
    }
    Ok(vec![Event::RevenueReversed {
        account,
        registration_id: r.id,
        amount: amount.clone(),
        reason: command.reason.clone(),
        at: ctx.now,
    }])
}

fn withdraw(
    state: &AccountState,
    command: &WithdrawRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let r = find(state, &command.registration_id, ctx.actor)?;
    owner_or_channel_manager(ctx.actor, r)?;
    status_is(
        r,
        &[RegistrationStatus::Pending, RegistrationStatus::Protected],
        "withdraw",
    )?;
    require(&command.reason, "reason")?;
    let mut events = vec![Event::RegistrationWithdrawn {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        reason: command.reason.clone(),
        at: ctx.now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "was withdrawn", ctx));
    Ok(events)
}

fn release(
    state: &AccountState,
    command: &ReleaseRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !(ctx.actor.is_system() || ctx.actor.is_role(VendorRole::ChannelManager)) {
        return refuse(
            RejectionCode::NotAuthorised,
            "registrations are released by offboarding or a channel manager",
        );
    }
    let r = find(state, &command.registration_id, ctx.actor)?;
    if !r.status.is_open() {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "the registration is already closed",
        );
    }
    let mut events = vec![Event::RegistrationReleased {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        reason: command.reason.clone(),
        at: ctx.now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "was released", ctx));
    Ok(events)
}
