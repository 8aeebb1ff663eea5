//! The protection window: granted at approval, extended under the policy's rules,
//! reminded about before it ends, and expired when it ends (which clears the registered
//! partner and frees the product line). Inactivity is flagged here too: a protected deal
//! nobody touches is one the channel may reassign.

use serde_json::json;

use super::conflicts::settled_by;
use super::guards::{
    certified_now, channel_manager, days, find, not_due, partner, release_slot, require, status_is,
    system,
};
use crate::account::{AccountState, RegistrationStatus};
use crate::command::{
    ExpireProtection, ExtendProtection, FlagInactive, ReassignRegistration, SendExpiryReminder,
};
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
        ProtectionCommand::Reassign(c) => reassign(state, c, account, ctx),
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
    certified_now(ctx, r, "extend")?;
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
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "expired", ctx));
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

/// An inactive registration "may be reassigned" (docs/RULES.md 7): a channel manager moves
/// it, with its protection, to another partner that may hold it (active, in the motion,
/// certified when the motion needs it, within capacity). The capacity slot moves too.
fn reassign(
    state: &AccountState,
    command: &ReassignRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    channel_manager(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(
        r,
        &[RegistrationStatus::Pending, RegistrationStatus::Protected],
        "reassign",
    )?;
    require(&command.reason, "reason")?;
    if r.inactive_flagged_at.is_none_or(|t| t < r.last_touch) {
        return Err(DomainError::new(
            RejectionCode::NotInactive,
            format!(
                "only a registration flagged inactive since its last touch may be reassigned; nobody has left this one untouched for {} days",
                ctx.policy.timing.inactivity_days
            ),
        )
        .with_details(json!({ "last_touch": r.last_touch })));
    }
    let to = command.to_partner;
    if to == r.partner_id {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "the registration already belongs to this partner",
        );
    }
    let facts = partner(ctx, to)?;
    if !facts.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "registrations can only move to an active partner",
        );
    }
    if !facts.motions.contains(&r.motion) {
        return Err(DomainError::new(
            RejectionCode::MotionNotInAgreement,
            format!(
                "the partner's agreement does not include the {} motion",
                r.motion.as_str()
            ),
        )
        .with_details(json!({ "motions": facts.motions })));
    }
    if ctx.policy.requires_certification(r.motion) && !facts.is_certified(&r.product_line, ctx.now)
    {
        return Err(DomainError::new(
            RejectionCode::NotCertified,
            format!("the partner is not certified in `{}`", r.product_line),
        )
        .with_details(json!({ "product_line": r.product_line })));
    }
    if facts.at_capacity(&r.id) {
        return Err(DomainError::new(
            RejectionCode::CapacityReached,
            "the partner has no capacity left for another open registration",
        )
        .with_details(json!({ "capacity": facts.capacity })));
    }
    let mut events = vec![Event::RegistrationReassigned {
        account: account.clone(),
        registration_id: r.id,
        from: r.partner_id,
        to,
        reason: command.reason.clone(),
        policy_version: ctx.policy.version,
        at: ctx.now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.push(Event::CapacitySlotTaken {
        partner_id: to,
        registration_id: r.id,
        account,
        at: ctx.now,
    });
    Ok(events)
}
