//! Review: the channel manager approves or declines within the SLA, the conflict
//! hierarchy decides between rival pending registrations, and a declined partner may
//! appeal once within the appeal window.

use chrono::Duration;
use serde_json::json;

use super::conflicts::{conflict_detected, settled_by};
use super::guards::{
    certified_now, channel_manager, days, find, not_due, release_slot, require, status_is, system,
};
use crate::account::{AccountState, Registration, RegistrationStatus};
use crate::command::{
    AppealDecision, ApproveRegistration, DecideAppeal, DeclineRegistration,
    FlagApprovalSlaBreached, FlagReferralSlaBreached,
};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::hierarchy::{rank, Claim};
use crate::ids::{AccountKey, PartnerId, RegistrationId};
use crate::motion::Tier;
use crate::route::ReviewCommand;
use crate::values::{ConflictKind, ConflictParty};

pub(super) fn decide(
    state: &AccountState,
    command: ReviewCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        ReviewCommand::Approve(c) => approve(state, c, account, ctx),
        ReviewCommand::Decline(c) => decline(state, c, account, ctx),
        ReviewCommand::FlagSlaBreached(c) => flag_sla_breached(state, c, account, ctx),
        ReviewCommand::FlagReferralSlaBreached(c) => {
            flag_referral_sla_breached(state, c, account, ctx)
        }
        ReviewCommand::Appeal(c) => appeal(state, c, account, ctx),
        ReviewCommand::DecideAppeal(c) => decide_appeal(state, c, account, ctx),
    }
}

/// The partners an approval reads: the registration's own, and every rival's whose
/// pending registration on the same product line the hierarchy compares it with.
pub(super) fn partners_needed(state: &AccountState, id: &RegistrationId) -> Vec<PartnerId> {
    let Some(r) = state.registrations.get(id) else {
        return Vec::new();
    };
    let mut ids = vec![r.partner_id];
    ids.extend(
        state
            .registrations
            .values()
            .filter(|o| o.id != *id && o.product_line == r.product_line && o.status.is_open())
            .map(|o| o.partner_id),
    );
    ids
}

fn approve(
    state: &AccountState,
    command: &ApproveRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    let policy = ctx.policy;
    channel_manager(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Pending], "approve")?;
    require(&command.rationale, "rationale")?;
    if let Some(holder) = state.protected_on(&r.product_line) {
        return Err(DomainError::new(
            RejectionCode::AlreadyProtected,
            format!("`{}` is already protected for this customer until {}; registered beats unregistered — decline this one or wait for that protection to end", r.product_line, holder.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
        )
        .with_details(json!({ "rule": "registered_beats_unregistered", "protected_by": holder.id, "expires_at": holder.expires_at })));
    }
    certified_now(ctx, r, "approve")?;
    // Inside a renewal window the renewal belongs to its owner: another partner's
    // registration of the line waits until the channel manager reassigns the renewal.
    let today = now.date_naive();
    let lead = policy.timing.renewal_confirmation_days;
    if let (Some(renews), Some(owner)) = (
        state.renewal_window(&r.product_line, today, lead),
        state.renewal_owner(&r.product_line),
    ) {
        if owner != r.partner_id {
            return Err(DomainError::new(
                RejectionCode::RenewalOwnedByIncumbent,
                format!("`{}` renews on {renews} and its renewal belongs to its owner; reassign the renewal to this partner first, or decline the registration", r.product_line),
            )
            .with_details(json!({ "owner": owner, "renewal_date": renews })));
        }
    }
    let claim = |reg: &Registration| {
        let facts = ctx.partners.get(&reg.partner_id);
        Claim {
            registered: reg.status == RegistrationStatus::Protected,
            // The incumbent unless a channel manager reassigned the line's renewal: then
            // the new owner holds the incumbent's rank.
            incumbent: state.renewal_owner(&reg.product_line) == Some(reg.partner_id),
            certified: facts.map_or(reg.certified, |p| p.is_certified(&reg.product_line, now)),
            tier: facts.map_or(Tier::Registered, |p| p.tier()),
            // Submission order: by submission time, the id only between equal times. Ids
            // are chosen by the caller, so alone they say nothing reliable about which
            // registration came first.
            submitted_order: state
                .registrations
                .values()
                .filter(|o| (o.submitted_at, o.id) < (reg.submitted_at, reg.id))
                .count() as u128,
        }
    };
    let mine = claim(r);
    for other in state.registrations.values().filter(|o| {
        o.id != r.id && o.product_line == r.product_line && o.status == RegistrationStatus::Pending
    }) {
        let (order, rule) = rank(&claim(other), &mine, policy.conflict.tie_break);
        if order == std::cmp::Ordering::Greater {
            return Err(DomainError::new(
                RejectionCode::Outranked,
                format!(
                    "registration {} outranks this one ({rule:?}); decide that one first",
                    other.id
                ),
            )
            .with_details(json!({ "rule": rule, "outranked_by": other.id })));
        }
    }
    let tier = ctx
        .partners
        .get(&r.partner_id)
        .map_or(Tier::Registered, |p| p.tier());
    let protection_days = policy.protection_days(r.motion, tier);
    let mut events = vec![Event::RegistrationApproved {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        rationale: command.rationale.clone(),
        protection_days,
        expires_at: now + days(protection_days),
        policy_version: policy.version,
        at: now,
    }];
    // Overlapping price protection: another partner is protected at this customer on
    // another product line while this one becomes protected.
    let overlapping: Vec<&Registration> = state
        .registrations
        .values()
        .filter(|o| {
            o.status == RegistrationStatus::Protected
                && o.partner_id != r.partner_id
                && o.product_line != r.product_line
        })
        .collect();
    if policy.conflict.flag_overlapping_protection && !overlapping.is_empty() {
        let mut parties: Vec<ConflictParty> = overlapping
            .iter()
            .map(|o| ConflictParty::Registration {
                registration_id: o.id,
                partner_id: o.partner_id,
            })
            .collect();
        parties.push(ConflictParty::Registration {
            registration_id: r.id,
            partner_id: r.partner_id,
        });
        let mut lines: Vec<&str> = overlapping
            .iter()
            .map(|o| o.product_line.as_str())
            .collect();
        lines.sort_unstable();
        lines.dedup();
        let reason = format!(
            "`{}` becomes protected at {account} while other partners hold protection on {}",
            r.product_line,
            lines.join(", ")
        );
        events.push(conflict_detected(
            state,
            &account,
            ConflictKind::OverlappingProtection,
            &r.product_line,
            parties,
            vec![reason],
            0,
            ctx,
        ));
    }
    Ok(events)
}

fn decline(
    state: &AccountState,
    command: &DeclineRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    channel_manager(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(r, &[RegistrationStatus::Pending], "decline")?;
    require(&command.reason_code, "reason_code")?;
    require(&command.rationale, "rationale")?;
    let mut events = vec![Event::RegistrationDeclined {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        reason_code: command.reason_code.clone(),
        rationale: command.rationale.clone(),
        appeal_until: now + days(ctx.policy.timing.appeal_window_days),
        policy_version: ctx.policy.version,
        at: now,
    }];
    events.extend(release_slot(r, &account, ctx));
    events.extend(settled_by(state, &account, r, "was declined", ctx));
    Ok(events)
}

fn flag_sla_breached(
    state: &AccountState,
    command: &FlagApprovalSlaBreached,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    system(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    status_is(
        r,
        &[RegistrationStatus::Pending],
        "flag the approval SLA of",
    )?;
    if ctx.now < r.approval_due_at {
        return not_due("the approval SLA is breached", r.approval_due_at);
    }
    if r.sla_breach_recorded {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this SLA breach is already recorded",
        );
    }
    Ok(vec![Event::ApprovalSlaBreached {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        due_at: r.approval_due_at,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

/// The referral's own clock (docs/RULES.md, registration policy 6): the vendor makes the
/// referral an opportunity it accepts, the Intro Logged exit, within 24 hours. Beside the
/// 48-hour approval SLA, not instead of it.
fn flag_referral_sla_breached(
    state: &AccountState,
    command: &FlagReferralSlaBreached,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    system(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    let Some(due_at) = r.intro_due_at else {
        return refuse(
            RejectionCode::InvalidTransition,
            "only a referral runs the referral-to-opportunity clock",
        );
    };
    status_is(
        r,
        &[RegistrationStatus::Pending, RegistrationStatus::Protected],
        "flag the referral SLA of",
    )?;
    if r.intro_logged {
        return refuse(
            RejectionCode::InvalidTransition,
            "that SLA was met: the referral left Intro Logged",
        );
    }
    if ctx.now < due_at {
        return not_due("the referral SLA is breached", due_at);
    }
    if r.referral_breach_recorded {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this SLA breach is already recorded",
        );
    }
    Ok(vec![Event::ReferralSlaBreached {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        due_at,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

fn appeal(
    state: &AccountState,
    command: &AppealDecision,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    let r = find(state, &command.registration_id, ctx.actor)?;
    if ctx.actor.partner() != Some(r.partner_id) {
        return refuse(
            RejectionCode::NotAuthorised,
            "only the declined partner may appeal",
        );
    }
    status_is(r, &[RegistrationStatus::Declined], "appeal")?;
    require(&command.evidence, "evidence")?;
    if r.appeal_filed {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this decision was already appealed; one appeal per decision",
        );
    }
    let until = r.appeal_until.unwrap_or(now);
    if now > until {
        return Err(DomainError::new(
            RejectionCode::AppealWindowClosed,
            format!("the appeal window closed at {}", until.to_rfc3339()),
        )
        .with_details(json!({ "appeal_until": until })));
    }
    Ok(vec![Event::AppealFiled {
        account,
        registration_id: r.id,
        partner_id: r.partner_id,
        evidence: command.evidence.clone(),
        at: now,
    }])
}

fn decide_appeal(
    state: &AccountState,
    command: &DecideAppeal,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let now = ctx.now;
    channel_manager(ctx.actor)?;
    let r = find(state, &command.registration_id, ctx.actor)?;
    if !r.appeal_filed || r.appeal_decided {
        return refuse(
            RejectionCode::InvalidTransition,
            "there is no open appeal on this registration",
        );
    }
    require(&command.rationale, "rationale")?;
    let upheld = command.upheld;
    let mut events = vec![Event::AppealDecided {
        account: account.clone(),
        registration_id: r.id,
        partner_id: r.partner_id,
        upheld,
        rationale: command.rationale.clone(),
        approval_due_at: upheld
            .then(|| now + Duration::hours(i64::from(ctx.policy.decision_hours()))),
        policy_version: ctx.policy.version,
        at: now,
    }];
    if upheld {
        events.push(Event::CapacitySlotTaken {
            partner_id: r.partner_id,
            registration_id: r.id,
            account,
            at: now,
        });
    }
    Ok(events)
}
