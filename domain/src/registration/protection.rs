//! The protection window: granted at approval, extended under the policy's rules,
//! reminded about before it ends, and expired when it ends (which clears the registered
//! partner and frees the product line). Inactivity is flagged here too: a protected deal
//! nobody touches is one the channel may reassign.

use serde_json::json;

use super::guards::{days, find, not_due, release_slot, require, status_is, system};
use crate::account::{AccountState, RegistrationStatus};
use crate::command::{ExpireProtection, ExtendProtection, FlagInactive, SendExpiryReminder};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::AccountKey;
use crate::route::ProtectionCommand;

pub(super) fn decide(
    state: &AccountState,
    command: ProtectionCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        ProtectionCommand::Extend(c) => extend(state, c, account, ctx),
        ProtectionCommand::Expire(c) => expire(state, c, account, ctx),
        ProtectionCommand::Remind(c) => remind(state, c, account, ctx),
        ProtectionCommand::FlagInactive(c) => flag_inactive(state, c, account, ctx),
    }
}

fn extend(
    state: &AccountState,
    command: &ExtendProtection,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    let rules = &ctx.policy.extensions;
    if !rules.granted_by.iter().any(|role| ctx.actor.is_role(*role)) {
        return refuse(
            RejectionCode::NotAuthorised,
            format!(
                "extensions are granted by {:?} under the policy, not {}",
                rules.granted_by,
                ctx.actor.label()
            ),
        );
    }
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Protected], "extend")?;
    require(&command.reason, "reason")?;
    let expires_at = r.expires_at.unwrap_or(now);
    if now >= expires_at {
        return refuse(
            RejectionCode::InvalidTransition,
            "the protection window has already ended; it can no longer be extended",
        );
    }
    if r.extensions >= rules.max_count {
        return Err(DomainError::new(
            RejectionCode::ExtensionLimit,
            format!(
                "already extended {} times; the policy allows {}",
                r.extensions, rules.max_count
            ),
        )
        .with_details(json!({ "extensions": r.extensions, "max": rules.max_count })));
    }
    Ok(vec![Event::ProtectionExtended {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        extension_number: r.extensions + 1,
        days: rules.days,
        expires_at: expires_at + days(rules.days),
        reason: command.reason.clone(),
        policy_version: ctx.policy.version,
        at: now,
    }])
}

fn expire(
    state: &AccountState,
    command: &ExpireProtection,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    system(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Protected], "expire")?;
    let expires_at = r.expires_at.unwrap_or(now);
    if now < expires_at {
        return not_due("protection expires", expires_at);
    }
    let mut events = vec![Event::ProtectionExpired {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        expired_at: expires_at,
        policy_version: ctx.policy.version,
        at: now,
    }];
    events.extend(release_slot(r, &account, now));
    Ok(events)
}

fn remind(
    state: &AccountState,
    command: &SendExpiryReminder,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    system(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Protected], "remind about")?;
    let expires_at = r.expires_at.unwrap_or(now);
    let due = expires_at - days(ctx.policy.timing.reminder_lead_days);
    if now < due {
        return not_due("the expiry reminder is due", due);
    }
    if r.reminded_for == Some(expires_at) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "the reminder for this expiry was already sent",
        );
    }
    Ok(vec![Event::ExpiryReminderSent {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        expires_at,
        policy_version: ctx.policy.version,
        at: now,
    }])
}

fn flag_inactive(
    state: &AccountState,
    command: &FlagInactive,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    system(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(
        r,
        &[RegistrationStatus::Pending, RegistrationStatus::Protected],
        "flag",
    )?;
    let due = r.last_touch + days(ctx.policy.timing.inactivity_days);
    if ctx.now < due {
        return not_due("the registration counts as inactive", due);
    }
    if r.inactive_flagged_at.is_some_and(|t| t >= r.last_touch) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "already flagged inactive since its last touch",
        );
    }
    Ok(vec![Event::RegistrationFlaggedInactive {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        last_touch: r.last_touch,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}
