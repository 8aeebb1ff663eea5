//! Decisions on the customer account: registrations from submission to close, conflicts,
//! attribution, renewal ownership. Pure: time, policy, actor and partner facts come in the
//! [`Context`].

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::account::{AccountState, ConflictStatus, Registration, RegistrationStatus};
use crate::actor::{Actor, VendorRole};
use crate::boundary::Boundary;
use crate::command::Command;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::{ConflictKind, ConflictParty, ConflictSla, Event};
use crate::hierarchy::{rank, Claim};
use crate::ids::{normalise_product_line, AccountKey, PartnerId, RegistrationId};
use crate::motion::{DealKind, Motion};
use crate::partner::PartnerState;
use crate::stages::{check_exit, stage_name, stages};
use crate::Context;

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

fn missing(field: &str) -> DomainError {
    DomainError::new(
        RejectionCode::MissingField,
        format!("`{field}` is required"),
    )
    .with_details(json!({ "field": field }))
}

fn invalid(field: &str, why: &str) -> DomainError {
    DomainError::new(RejectionCode::InvalidField, format!("`{field}` {why}"))
        .with_details(json!({ "field": field }))
}

fn require(value: &str, field: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        Err(missing(field))
    } else {
        Ok(())
    }
}

/// A plausible e-mail address: one `@`, a non-empty local part, a dotted domain, no spaces.
fn is_email(raw: &str) -> bool {
    let raw = raw.trim();
    match raw.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && !raw.chars().any(char::is_whitespace)
                && domain.contains('.')
                && domain.split('.').all(|label| !label.is_empty())
        }
        None => false,
    }
}

fn channel_manager(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_role(VendorRole::ChannelManager) {
        Ok(())
    } else {
        refuse(
            RejectionCode::NotAuthorised,
            format!("only a channel manager may do this, not {}", actor.label()),
        )
    }
}

fn system(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_system() {
        Ok(())
    } else {
        refuse(
            RejectionCode::NotAuthorised,
            "this is the timekeeper's command; it runs when the deadline falls due",
        )
    }
}

/// Finds a registration the actor may act on. A partner asking about another partner's
/// registration is told it does not exist: partners never learn of each other's deals.
fn find<'s>(
    state: &'s AccountState,
    id: &RegistrationId,
    actor: &Actor,
) -> Result<&'s Registration, DomainError> {
    let unknown = || {
        DomainError::new(
            RejectionCode::UnknownRegistration,
            format!("no registration {id} on this account; check the id and the account domain"),
        )
        .with_details(json!({ "registration_id": id }))
    };
    let registration = state.registrations.get(id).ok_or_else(unknown)?;
    match actor.partner() {
        Some(partner) if partner != registration.partner_id => Err(unknown()),
        _ => Ok(registration),
    }
}

/// The owning partner, or a channel manager on its behalf.
fn owner_or_channel_manager(actor: &Actor, registration: &Registration) -> Result<(), DomainError> {
    match actor {
        Actor::Partner { partner_id, .. } if *partner_id == registration.partner_id => Ok(()),
        Actor::Vendor {
            role: VendorRole::ChannelManager,
            ..
        } => Ok(()),
        _ => refuse(
            RejectionCode::NotAuthorised,
            format!("{} may not act on this registration", actor.label()),
        ),
    }
}

fn status_is(
    registration: &Registration,
    allowed: &[RegistrationStatus],
    doing: &str,
) -> Result<(), DomainError> {
    if allowed.contains(&registration.status) {
        Ok(())
    } else {
        Err(DomainError::new(
            RejectionCode::InvalidTransition,
            format!(
                "cannot {doing} a registration that is {:?}",
                registration.status
            )
            .to_lowercase(),
        )
        .with_details(json!({ "registration_id": registration.id, "status": registration.status })))
    }
}

fn partner<'c>(ctx: &'c Context<'_>, id: PartnerId) -> Result<&'c PartnerState, DomainError> {
    ctx.partners
        .get(&id)
        .filter(|p| p.partner_id.is_some())
        .ok_or_else(|| {
            DomainError::new(
                RejectionCode::UnknownPartner,
                format!("partner {id} is not onboarded"),
            )
            .with_details(json!({ "partner_id": id }))
        })
}

fn release_slot(
    registration: &Registration,
    account: &AccountKey,
    now: DateTime<Utc>,
) -> Option<Event> {
    registration
        .holds_slot
        .then(|| Event::CapacitySlotReleased {
            partner_id: registration.partner_id,
            registration_id: registration.id,
            account: account.clone(),
            at: now,
        })
}

/// The partners whose facts a decision reads (and whose capacity slots it may touch).
pub(crate) fn partners_needed(state: &AccountState, command: &Command) -> Vec<PartnerId> {
    let mut ids = Vec::new();
    if let Some(id) = command.registration_id() {
        if let Some(r) = state.registrations.get(&id) {
            ids.push(r.partner_id);
            if matches!(command, Command::ApproveRegistration { .. }) {
                ids.extend(
                    state
                        .registrations
                        .values()
                        .filter(|o| {
                            o.id != id && o.product_line == r.product_line && o.status.is_open()
                        })
                        .map(|o| o.partner_id),
                );
            }
        }
    }
    match command {
        Command::SubmitRegistration { partner_id, .. }
        | Command::SetSourcingPartner { partner_id, .. }
        | Command::AddInfluencer { partner_id, .. } => ids.push(*partner_id),
        Command::ReassignRenewalOwnership { to_partner, .. } => ids.push(*to_partner),
        _ => {}
    }
    ids.sort();
    ids.dedup();
    ids
}

pub(crate) fn decide(
    state: &AccountState,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let account = match command.boundary()? {
        Boundary::Account(key) => key,
        _ => {
            return refuse(
                RejectionCode::WrongBoundary,
                "this command is not decided on a customer account",
            )
        }
    };
    if ctx.actor.is_role(VendorRole::Auditor) {
        return refuse(
            RejectionCode::NotAuthorised,
            "auditors read the log; they do not change it",
        );
    }
    let now = ctx.now;
    let policy = ctx.policy;
    let version = policy.version;
    match command {
        Command::SubmitRegistration { .. } => submit(state, command, &account, ctx),

        Command::ApproveRegistration {
            registration_id,
            rationale,
            ..
        } => {
            channel_manager(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Pending], "approve")?;
            require(rationale, "rationale")?;
            if let Some(holder) = state.protected_on(&r.product_line) {
                return Err(DomainError::new(
                    RejectionCode::AlreadyProtected,
                    format!("`{}` is already protected for this customer until {}; registered beats unregistered — decline this one or wait for that protection to end", r.product_line, holder.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
                )
                .with_details(json!({ "rule": "registered_beats_unregistered", "protected_by": holder.id, "expires_at": holder.expires_at })));
            }
            let claim = |reg: &Registration| {
                let facts = ctx.partners.get(&reg.partner_id);
                Claim {
                    registered: reg.status == RegistrationStatus::Protected,
                    // The incumbent unless a channel manager reassigned the line's
                    // renewal: then the new owner holds the incumbent's rank.
                    incumbent: state.renewal_owner(&reg.product_line) == Some(reg.partner_id),
                    certified: facts
                        .map_or(reg.certified, |p| p.is_certified(&reg.product_line, now)),
                    tier: facts.map_or(crate::motion::Tier::Registered, |p| p.tier()),
                    // Submission order: by submission time, the id only between equal
                    // times. Ids are chosen by the caller, so alone they say nothing
                    // reliable about which registration came first.
                    submitted_order: state
                        .registrations
                        .values()
                        .filter(|o| (o.submitted_at, o.id) < (reg.submitted_at, reg.id))
                        .count() as u128,
                }
            };
            let mine = claim(r);
            for other in state.registrations.values().filter(|o| {
                o.id != r.id
                    && o.product_line == r.product_line
                    && o.status == RegistrationStatus::Pending
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
                .map_or(crate::motion::Tier::Registered, |p| p.tier());
            let protection_days = policy.protection_days(r.motion, tier);
            Ok(vec![Event::RegistrationApproved {
                account,
                registration_id: r.id,
                partner_id: r.partner_id,
                rationale: rationale.clone(),
                protection_days,
                expires_at: now + days(protection_days),
                policy_version: version,
                at: now,
            }])
        }

        Command::DeclineRegistration {
            registration_id,
            reason_code,
            rationale,
            ..
        } => {
            channel_manager(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Pending], "decline")?;
            require(reason_code, "reason_code")?;
            require(rationale, "rationale")?;
            let mut events = vec![Event::RegistrationDeclined {
                account: account.clone(),
                registration_id: r.id,
                partner_id: r.partner_id,
                reason_code: reason_code.clone(),
                rationale: rationale.clone(),
                appeal_until: now + days(policy.timing.appeal_window_days),
                policy_version: version,
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::ExtendProtection {
            registration_id,
            reason,
            ..
        } => {
            let allowed = policy
                .extensions
                .granted_by
                .iter()
                .any(|role| ctx.actor.is_role(*role));
            if !allowed {
                return refuse(
                    RejectionCode::NotAuthorised,
                    format!(
                        "extensions are granted by {:?} under the policy, not {}",
                        policy.extensions.granted_by,
                        ctx.actor.label()
                    ),
                );
            }
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Protected], "extend")?;
            require(reason, "reason")?;
            let expires_at = r.expires_at.unwrap_or(now);
            if now >= expires_at {
                return refuse(
                    RejectionCode::InvalidTransition,
                    "the protection window has already ended; it can no longer be extended",
                );
            }
            if r.extensions >= policy.extensions.max_count {
                return Err(DomainError::new(
                    RejectionCode::ExtensionLimit,
                    format!(
                        "already extended {} times; the policy allows {}",
                        r.extensions, policy.extensions.max_count
                    ),
                )
                .with_details(
                    json!({ "extensions": r.extensions, "max": policy.extensions.max_count }),
                ));
            }
            Ok(vec![Event::ProtectionExtended {
                account,
                registration_id: r.id,
                partner_id: r.partner_id,
                extension_number: r.extensions + 1,
                days: policy.extensions.days,
                expires_at: expires_at + days(policy.extensions.days),
                reason: reason.clone(),
                policy_version: version,
                at: now,
            }])
        }

        Command::WithdrawRegistration {
            registration_id,
            reason,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            owner_or_channel_manager(ctx.actor, r)?;
            status_is(
                r,
                &[RegistrationStatus::Pending, RegistrationStatus::Protected],
                "withdraw",
            )?;
            require(reason, "reason")?;
            let mut events = vec![Event::RegistrationWithdrawn {
                account: account.clone(),
                registration_id: r.id,
                partner_id: r.partner_id,
                reason: reason.clone(),
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::ExpireProtection {
            registration_id, ..
        } => {
            system(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
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
                policy_version: version,
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::SendExpiryReminder {
            registration_id, ..
        } => {
            system(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Protected], "remind about")?;
            let expires_at = r.expires_at.unwrap_or(now);
            let due = expires_at - days(policy.timing.reminder_lead_days);
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
                policy_version: version,
                at: now,
            }])
        }

        Command::FlagInactive {
            registration_id, ..
        } => {
            system(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            status_is(
                r,
                &[RegistrationStatus::Pending, RegistrationStatus::Protected],
                "flag",
            )?;
            let due = r.last_touch + days(policy.timing.inactivity_days);
            if now < due {
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
                policy_version: version,
                at: now,
            }])
        }

        Command::FlagApprovalSlaBreached {
            registration_id, ..
        } => {
            system(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            status_is(
                r,
                &[RegistrationStatus::Pending],
                "flag the approval SLA of",
            )?;
            if now < r.approval_due_at {
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
                policy_version: version,
                at: now,
            }])
        }

        Command::AppealDecision {
            registration_id,
            evidence,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            if ctx.actor.partner() != Some(r.partner_id) {
                return refuse(
                    RejectionCode::NotAuthorised,
                    "only the declined partner may appeal",
                );
            }
            status_is(r, &[RegistrationStatus::Declined], "appeal")?;
            require(evidence, "evidence")?;
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
                evidence: evidence.clone(),
                at: now,
            }])
        }

        Command::DecideAppeal {
            registration_id,
            upheld,
            rationale,
            ..
        } => {
            channel_manager(ctx.actor)?;
            let r = find(state, registration_id, ctx.actor)?;
            if !r.appeal_filed || r.appeal_decided {
                return refuse(
                    RejectionCode::InvalidTransition,
                    "there is no open appeal on this registration",
                );
            }
            require(rationale, "rationale")?;
            let mut events = vec![Event::AppealDecided {
                account: account.clone(),
                registration_id: r.id,
                partner_id: r.partner_id,
                upheld: *upheld,
                rationale: rationale.clone(),
                approval_due_at: upheld
                    .then(|| now + Duration::hours(i64::from(policy.sla.approval_hours))),
                policy_version: version,
                at: now,
            }];
            if *upheld {
                events.push(Event::CapacitySlotTaken {
                    partner_id: r.partner_id,
                    registration_id: r.id,
                    account,
                    at: now,
                });
            }
            Ok(events)
        }

        Command::AdvanceStage {
            registration_id,
            to_stage,
            evidence,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            owner_or_channel_manager(ctx.actor, r)?;
            status_is(r, &[RegistrationStatus::Protected], "advance")?;
            let next = r.stage + 1;
            if next >= stages(r.motion).len() {
                return refuse(
                    RejectionCode::InvalidTransition,
                    "the deal is at its motion's last stage; mark it won or lost",
                );
            }
            let expected = stage_name(r.motion, next);
            if to_stage != expected {
                return Err(DomainError::new(
                    RejectionCode::InvalidTransition,
                    format!(
                        "a {} deal at `{}` moves to `{expected}` next, not `{to_stage}`",
                        r.motion.as_str(),
                        stage_name(r.motion, r.stage)
                    ),
                )
                .with_details(json!({ "next_stage": expected, "stages": stages(r.motion) })));
            }
            let tier = partner(ctx, r.partner_id)?.tier();
            check_exit(r, tier, evidence, policy)?;
            Ok(vec![Event::StageAdvanced {
                account,
                registration_id: r.id,
                partner_id: r.partner_id,
                from_stage: stage_name(r.motion, r.stage).to_string(),
                to_stage: expected.to_string(),
                evidence: evidence.clone(),
                policy_version: version,
                at: now,
            }])
        }

        Command::SetSourcingPartner {
            registration_id,
            partner_id,
            reason,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            attribution_change_allowed(ctx.actor, r, *partner_id)?;
            require(reason, "reason")?;
            let facts = partner(ctx, *partner_id)?;
            if r.motion == Motion::TechIsv || facts.motions == [Motion::TechIsv] {
                return refuse(
                    RejectionCode::SourcingNotAllowed,
                    "tech/ISV credit is influence, not sourcing: add the partner as an influencer",
                );
            }
            if r.attribution.influencers.contains_key(partner_id) {
                return refuse(
                    RejectionCode::InvalidField,
                    "this partner is an influencer on the deal; remove that first",
                );
            }
            match r.attribution.sourcing {
                Some(current) if current == *partner_id => refuse(RejectionCode::AlreadyRecorded, "this partner is already the sourcing partner"),
                Some(current) if !ctx.actor.is_role(VendorRole::ChannelManager) => Err(DomainError::new(
                    RejectionCode::SourcingTaken,
                    "the deal already has a sourcing partner; only a channel manager may change it",
                )
                .with_details(json!({ "sourcing": current }))),
                previous => Ok(vec![Event::SourcingPartnerSet { account, registration_id: r.id, partner_id: *partner_id, previous, actor: ctx.actor.label(), reason: reason.clone(), at: now }]),
            }
        }

        Command::AddInfluencer {
            registration_id,
            partner_id,
            percent,
            reason,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            attribution_change_allowed(ctx.actor, r, *partner_id)?;
            require(reason, "reason")?;
            partner(ctx, *partner_id)?;
            if *percent == 0 || *percent > 100 {
                return Err(invalid("percent", "must be between 1 and 100"));
            }
            if r.attribution.sourcing == Some(*partner_id) {
                return refuse(
                    RejectionCode::InvalidField,
                    "the sourcing partner cannot also be an influencer",
                );
            }
            let others: u32 = r
                .attribution
                .influencers
                .iter()
                .filter(|(p, _)| *p != partner_id)
                .map(|(_, v)| v)
                .sum();
            if others + percent > 100 {
                return Err(DomainError::new(
                    RejectionCode::AttributionOver100,
                    format!(
                        "influencers would total {} %; attribution never exceeds 100 %",
                        others + percent
                    ),
                )
                .with_details(json!({ "total": others + percent })));
            }
            Ok(vec![Event::InfluencerAdded {
                account,
                registration_id: r.id,
                partner_id: *partner_id,
                percent: *percent,
                actor: ctx.actor.label(),
                reason: reason.clone(),
                at: now,
            }])
        }

        Command::RemoveInfluencer {
            registration_id,
            partner_id,
            reason,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            attribution_change_allowed(ctx.actor, r, *partner_id)?;
            require(reason, "reason")?;
            if !r.attribution.influencers.contains_key(partner_id) {
                return refuse(
                    RejectionCode::InvalidField,
                    "this partner is not an influencer on the deal",
                );
            }
            Ok(vec![Event::InfluencerRemoved {
                account,
                registration_id: r.id,
                partner_id: *partner_id,
                actor: ctx.actor.label(),
                reason: reason.clone(),
                at: now,
            }])
        }

        Command::MarkWon {
            registration_id,
            amount,
            ..
        } => {
            if !(ctx.actor.is_role(VendorRole::ChannelManager)
                || ctx.actor.is_role(VendorRole::RevOps)
                || ctx.actor.is_system())
            {
                return refuse(
                    RejectionCode::NotAuthorised,
                    "wins are recorded by the vendor (channel manager, RevOps or the CRM adapter)",
                );
            }
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Protected], "win")?;
            if amount.amount_minor <= 0 {
                return Err(invalid("amount", "must be positive"));
            }
            if amount.currency != r.estimated_amount.currency {
                return Err(invalid(
                    "amount.currency",
                    "must be the registration's currency",
                ));
            }
            if r.attribution.is_empty() {
                return refuse(RejectionCode::ExitCriteriaNotMet, "attribution is locked at the win, and this deal has none: set the sourcing partner or influencers first");
            }
            let mut events = vec![Event::DealWon {
                account: account.clone(),
                registration_id: r.id,
                partner_id: r.partner_id,
                motion: r.motion,
                product_line: r.product_line.clone(),
                amount: amount.clone(),
                attribution: r.attribution.clone(),
                renewal_date: Some(
                    now.date_naive() + Duration::days(i64::from(policy.timing.renewal_term_days)),
                ),
                policy_version: version,
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::MarkLost {
            registration_id,
            reason,
            ..
        } => {
            let r = find(state, registration_id, ctx.actor)?;
            owner_or_channel_manager(ctx.actor, r)?;
            status_is(
                r,
                &[RegistrationStatus::Pending, RegistrationStatus::Protected],
                "lose",
            )?;
            require(reason, "reason")?;
            let mut events = vec![Event::DealLost {
                account: account.clone(),
                registration_id: r.id,
                partner_id: r.partner_id,
                reason: reason.clone(),
                policy_version: version,
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::RecordRevenueReversal {
            registration_id,
            amount,
            reason,
            ..
        } => {
            if !(ctx.actor.is_role(VendorRole::RevOps) || ctx.actor.is_system()) {
                return refuse(
                    RejectionCode::NotAuthorised,
                    "revenue reversals come from RevOps or the billing adapter",
                );
            }
            let r = find(state, registration_id, ctx.actor)?;
            status_is(r, &[RegistrationStatus::Won], "reverse revenue on")?;
            require(reason, "reason")?;
            let won = r.won_amount.as_ref().map_or(0, |m| m.amount_minor);
            if amount.currency != r.estimated_amount.currency {
                return Err(invalid("amount.currency", "must be the deal's currency"));
            }
            if amount.amount_minor <= 0 || r.reversed_minor + amount.amount_minor > won {
                return Err(invalid(
                    "amount",
                    "must be positive and at most what is left of the won amount",
                ));
            }
            Ok(vec![Event::RevenueReversed {
                account,
                registration_id: r.id,
                amount: amount.clone(),
                reason: reason.clone(),
                at: now,
            }])
        }

        Command::ReleaseRegistration {
            registration_id,
            reason,
            ..
        } => {
            if !(ctx.actor.is_system() || ctx.actor.is_role(VendorRole::ChannelManager)) {
                return refuse(
                    RejectionCode::NotAuthorised,
                    "registrations are released by offboarding or a channel manager",
                );
            }
            let r = find(state, registration_id, ctx.actor)?;
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
                reason: reason.clone(),
                at: now,
            }];
            events.extend(release_slot(r, &account, now));
            Ok(events)
        }

        Command::RecordDirectOpportunity {
            opportunity_id,
            owner,
            product_line,
            amount,
            ..
        } => {
            let product_line = &normalise_product_line(product_line);
            if !(ctx.actor.is_role(VendorRole::DirectSales)
                || ctx.actor.is_role(VendorRole::ChannelManager)
                || ctx.actor.is_system())
            {
                return refuse(
                    RejectionCode::NotAuthorised,
                    "direct opportunities are recorded by direct sales or the CRM adapter",
                );
            }
            require(owner, "owner")?;
            require(product_line, "product_line")?;
            if state
                .direct_opportunities
                .iter()
                .any(|o| o.id == *opportunity_id)
            {
                return refuse(
                    RejectionCode::AlreadyRecorded,
                    "this opportunity is already recorded",
                );
            }
            let mut events = vec![Event::DirectOpportunityRecorded {
                account: account.clone(),
                opportunity_id: *opportunity_id,
                owner: owner.clone(),
                product_line: product_line.clone(),
                amount: amount.clone(),
                at: now,
            }];
            let open: Vec<&Registration> = state
                .registrations
                .values()
                .filter(|r| r.status.is_open() && r.product_line == *product_line)
                .collect();
            if !open.is_empty() {
                let mut parties: Vec<ConflictParty> = open
                    .iter()
                    .map(|r| ConflictParty::Registration {
                        registration_id: r.id,
                        partner_id: r.partner_id,
                    })
                    .collect();
                parties.push(ConflictParty::DirectSales {
                    opportunity_id: *opportunity_id,
                    owner: owner.clone(),
                });
                events.push(conflict(state, &account, ConflictKind::Vertical, product_line, parties, vec![format!("direct sales ({owner}) opened an opportunity on `{product_line}` where {} partner registration(s) are open", open.len())], 0, ctx));
            }
            Ok(events)
        }

        Command::AcknowledgeConflict {
            conflict_id, note, ..
        } => {
            channel_manager(ctx.actor)?;
            let c = state.conflicts.get(conflict_id).ok_or_else(|| {
                DomainError::new(
                    RejectionCode::UnknownConflict,
                    format!("no conflict {conflict_id} on this account"),
                )
            })?;
            if c.status != ConflictStatus::Open {
                return refuse(
                    RejectionCode::AlreadyRecorded,
                    "this conflict was already acknowledged",
                );
            }
            Ok(vec![Event::ConflictAcknowledged {
                account,
                conflict_id: conflict_id.clone(),
                by: ctx.actor.label(),
                note: note.clone(),
                at: now,
            }])
        }

        Command::FlagRenewalOwnershipDue { product_line, .. } => {
            let product_line = &normalise_product_line(product_line);
            system(ctx.actor)?;
            let renewal_date = *state.renewal_dates.get(product_line).ok_or_else(|| {
                DomainError::new(
                    RejectionCode::NoIncumbent,
                    format!("no won contract on `{product_line}` renews on this account"),
                )
            })?;
            let due =
                renewal_date - Duration::days(i64::from(policy.timing.renewal_confirmation_days));
            if now.date_naive() < due {
                return Err(DomainError::new(
                    RejectionCode::NotDue,
                    format!("renewal ownership is reviewed from {due}"),
                )
                .with_details(json!({ "due_on": due })));
            }
            let key = (product_line.clone(), renewal_date);
            let confirmed = state
                .renewals
                .get(product_line)
                .and_then(|r| r.confirmed_for)
                == Some(renewal_date);
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
                policy_version: version,
                at: now,
            }])
        }

        Command::FlagConflictSlaBreached {
            conflict_id, sla, ..
        } => {
            system(ctx.actor)?;
            let c = state.conflicts.get(conflict_id).ok_or_else(|| {
                DomainError::new(
                    RejectionCode::UnknownConflict,
                    format!("no conflict {conflict_id} on this account"),
                )
            })?;
            let (due_at, met) = match sla {
                ConflictSla::Acknowledgement => {
                    (c.acknowledge_by, c.status != ConflictStatus::Open)
                }
                ConflictSla::ResolutionPlan => (
                    c.resolution_plan_by.unwrap_or_else(|| {
                        crate::calendar::add_business_days(
                            c.detected_at,
                            policy.sla.conflict_resolution_business_days,
                        )
                    }),
                    c.status == ConflictStatus::Resolved,
                ),
            };
            if met {
                return refuse(RejectionCode::InvalidTransition, "that SLA was met");
            }
            if now < due_at {
                return not_due("the conflict SLA is breached", due_at);
            }
            if c.breached.contains(sla) {
                return refuse(
                    RejectionCode::AlreadyRecorded,
                    "this SLA breach is already recorded",
                );
            }
            Ok(vec![Event::ConflictSlaBreached {
                account,
                conflict_id: conflict_id.clone(),
                sla: *sla,
                due_at,
                policy_version: version,
                at: now,
            }])
        }

        Command::ResolveConflict {
            conflict_id,
            winner,
            rationale,
            ..
        } => {
            channel_manager(ctx.actor)?;
            let c = state.conflicts.get(conflict_id).ok_or_else(|| {
                DomainError::new(
                    RejectionCode::UnknownConflict,
                    format!("no conflict {conflict_id} on this account"),
                )
            })?;
            if c.status == ConflictStatus::Resolved {
                return refuse(
                    RejectionCode::AlreadyRecorded,
                    "this conflict is already resolved",
                );
            }
            require(rationale, "rationale")?;
            if let Some(w) = winner {
                let party = c.parties.iter().any(|p| matches!(p, ConflictParty::Registration { registration_id, .. } if registration_id == w));
                if !party {
                    return Err(invalid(
                        "winner",
                        "must be one of the conflict's registrations",
                    ));
                }
            }
            Ok(vec![Event::ConflictResolved {
                account,
                conflict_id: conflict_id.clone(),
                winner: *winner,
                rationale: rationale.clone(),
                at: now,
            }])
        }

        Command::ConfirmRenewalOwnership {
            product_line,
            renewal_date,
            ..
        } => {
            let product_line = &normalise_product_line(product_line);
            channel_manager(ctx.actor)?;
            let owner = state.renewal_owner(product_line).ok_or_else(|| {
                DomainError::new(RejectionCode::NoIncumbent, format!("nobody owns `{product_line}` on this account yet; reassign the renewal to a partner first"))
            })?;
            let latest = *renewal_date - days(policy.timing.renewal_confirmation_days);
            if now.date_naive() > latest {
                return Err(DomainError::new(
                    RejectionCode::RenewalConfirmationTooLate,
                    format!("renewal ownership must be confirmed at least {} days before renewal (by {latest})", policy.timing.renewal_confirmation_days),
                )
                .with_details(json!({ "confirm_by": latest })));
            }
            Ok(vec![Event::RenewalOwnershipConfirmed {
                account,
                product_line: product_line.clone(),
                partner_id: owner,
                renewal_date: *renewal_date,
                policy_version: version,
                at: now,
            }])
        }

        Command::ReassignRenewalOwnership {
            product_line,
            to_partner,
            reason,
            ..
        } => {
            let product_line = &normalise_product_line(product_line);
            channel_manager(ctx.actor)?;
            require(reason, "reason")?;
            let facts = partner(ctx, *to_partner)?;
            if !facts.is_active() {
                return refuse(
                    RejectionCode::PartnerNotActive,
                    "renewals can only go to an active partner",
                );
            }
            let from = state.renewal_owner(product_line);
            if from == Some(*to_partner) {
                return refuse(
                    RejectionCode::AlreadyRecorded,
                    "this partner already owns the renewal",
                );
            }
            Ok(vec![Event::RenewalOwnershipReassigned {
                account,
                product_line: product_line.clone(),
                from,
                to: *to_partner,
                reason: reason.clone(),
                at: now,
            }])
        }

        _ => refuse(
            RejectionCode::WrongBoundary,
            "this command is not decided on a customer account",
        ),
    }
}

fn not_due<T>(what: &str, due: DateTime<Utc>) -> Result<T, DomainError> {
    Err(DomainError::new(
        RejectionCode::NotDue,
        format!("not yet: {what} at {}", due.to_rfc3339()),
    )
    .with_details(json!({ "due_at": due })))
}

/// Attribution changes: a channel manager, or the owning partner about itself; never
/// after the win locked it.
fn attribution_change_allowed(
    actor: &Actor,
    r: &Registration,
    subject: PartnerId,
) -> Result<(), DomainError> {
    let allowed = actor.is_role(VendorRole::ChannelManager)
        || (actor.partner() == Some(r.partner_id) && subject == r.partner_id);
    if !allowed {
        return refuse(
            RejectionCode::NotAuthorised,
            format!("{} may not change this deal's attribution", actor.label()),
        );
    }
    if matches!(r.status, RegistrationStatus::Won | RegistrationStatus::Lost) {
        return refuse(RejectionCode::AttributionLocked, "attribution is locked once the deal closed; record a correction as a new deal adjustment");
    }
    if !r.status.is_open() {
        return refuse(
            RejectionCode::InvalidTransition,
            "the registration is closed",
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn conflict(
    state: &AccountState,
    account: &AccountKey,
    kind: ConflictKind,
    product_line: &str,
    parties: Vec<ConflictParty>,
    reasons: Vec<String>,
    offset: usize,
    ctx: &Context<'_>,
) -> Event {
    let key_state = AccountState {
        key: Some(account.clone()),
        ..AccountState::default()
    };
    let id = if state.key.is_some() {
        state.next_conflict_id(product_line, offset)
    } else {
        key_state.next_conflict_id(product_line, offset)
    };
    Event::ConflictDetected {
        account: account.clone(),
        conflict_id: id,
        kind,
        product_line: product_line.to_string(),
        parties,
        reasons,
        acknowledge_by: ctx.now + Duration::hours(i64::from(ctx.policy.sla.conflict_ack_hours)),
        resolution_plan_by: Some(crate::calendar::add_business_days(
            ctx.now,
            ctx.policy.sla.conflict_resolution_business_days,
        )),
        policy_version: ctx.policy.version,
        at: ctx.now,
    }
}

fn submit(
    state: &AccountState,
    command: &Command,
    account: &AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let Command::SubmitRegistration {
        registration_id,
        partner_id,
        customer,
        product_line,
        motion,
        estimated_amount,
        expected_close,
        proof_of_work,
        kind,
    } = command
    else {
        return refuse(RejectionCode::WrongBoundary, "not a submission");
    };
    let product_line = &normalise_product_line(product_line);
    let now = ctx.now;
    let policy = ctx.policy;
    // Who may register: the partner itself, or a channel manager on its behalf.
    match ctx.actor {
        Actor::Partner { partner_id: me, .. } if me == partner_id => {}
        Actor::Vendor {
            role: VendorRole::ChannelManager,
            ..
        } => {}
        _ => {
            return refuse(
                RejectionCode::NotAuthorised,
                format!(
                    "{} cannot register deals for partner {partner_id}",
                    ctx.actor.label()
                ),
            )
        }
    }
    // Eligibility: required fields and proof of work.
    require(&customer.company, "customer.company")?;
    require(&customer.contact.name, "customer.contact.name")?;
    require(&customer.contact.email, "customer.contact.email")?;
    if !is_email(&customer.contact.email) {
        return Err(invalid(
            "customer.contact.email",
            "is not an e-mail address",
        ));
    }
    require(product_line, "product_line")?;
    require(proof_of_work, "proof_of_work")?;
    if estimated_amount.amount_minor <= 0 {
        return Err(invalid("estimated_amount", "must be positive"));
    }
    if *expected_close < now.date_naive() {
        return Err(invalid("expected_close", "is in the past"));
    }
    if state.registrations.contains_key(registration_id) {
        return refuse(RejectionCode::RegistrationExists, format!("registration {registration_id} already exists; use a new id for a new registration"));
    }
    // Partner gates: active, in the motion, certified, within capacity.
    let facts = partner(ctx, *partner_id)?;
    if !facts.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "the partner is not active in the program",
        );
    }
    if !facts.motions.contains(motion) {
        return Err(DomainError::new(
            RejectionCode::MotionNotInAgreement,
            format!(
                "the partner's agreement does not include the {} motion",
                motion.as_str()
            ),
        )
        .with_details(json!({ "motions": facts.motions })));
    }
    let certified = facts.is_certified(product_line, now);
    if policy.requires_certification(*motion) && !certified {
        return Err(DomainError::new(
            RejectionCode::NotCertified,
            format!("a {} registration needs a current certification in `{product_line}`; certify the partner first", motion.as_str()),
        )
        .with_details(json!({ "product_line": product_line, "expired_on": facts.certifications.get(product_line) })));
    }
    if facts.open_slots.len() >= facts.capacity as usize {
        return Err(DomainError::new(
            RejectionCode::CapacityReached,
            format!(
                "the partner has {} open registrations, its capacity; close or withdraw one first",
                facts.open_slots.len()
            ),
        )
        .with_details(json!({ "capacity": facts.capacity })));
    }
    // Renewal ownership: the incumbent owns the renewal unless it was reassigned.
    let owner = state.renewal_owner(product_line);
    if *kind == DealKind::Renewal {
        if let Some(owner) = owner.filter(|o| o != partner_id) {
            // A partner is not told who the incumbent is (invariant 7); the vendor is.
            let details = if ctx.actor.partner().is_some() {
                json!({})
            } else {
                json!({ "owner": owner })
            };
            return Err(DomainError::new(RejectionCode::RenewalOwnedByIncumbent, "the renewal belongs to the account's incumbent partner unless a channel manager reassigns it")
                .with_details(details));
        }
    }
    // Uniqueness: one protected registration per customer and product line.
    if let Some(holder) = state.protected_on(product_line) {
        return Err(DomainError::new(
            RejectionCode::DuplicateRegistration,
            format!("`{}` at {account} is already protected until {}; you may appeal or register another product line", product_line, holder.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
        )
        .with_details(json!({ "protected_by": holder.id, "expires_at": holder.expires_at })));
    }
    if let Some(mine) = state.registrations.values().find(|r| {
        r.partner_id == *partner_id && r.product_line == *product_line && r.status.is_open()
    }) {
        return Err(DomainError::new(
            RejectionCode::DuplicateRegistration,
            "you already have an open registration for this customer and product line",
        )
        .with_details(json!({ "registration_id": mine.id })));
    }

    let incumbent = state.incumbents.get(product_line) == Some(partner_id);
    let mut events = vec![
        Event::RegistrationSubmitted {
            account: account.clone(),
            registration_id: *registration_id,
            partner_id: *partner_id,
            customer: customer.clone(),
            product_line: product_line.trim().to_string(),
            motion: *motion,
            kind: *kind,
            estimated_amount: estimated_amount.clone(),
            expected_close: *expected_close,
            proof_of_work: proof_of_work.clone(),
            certified,
            incumbent,
            approval_due_at: now + Duration::hours(i64::from(policy.sla.approval_hours)),
            policy_version: policy.version,
            at: now,
        },
        Event::CapacitySlotTaken {
            partner_id: *partner_id,
            registration_id: *registration_id,
            account: account.clone(),
            at: now,
        },
    ];
    // Conflict signals, caught at the moment they appear.
    let me = ConflictParty::Registration {
        registration_id: *registration_id,
        partner_id: *partner_id,
    };
    let mut detected = 0;
    // Other partners' open registrations on the same product line: the same motion is a
    // horizontal conflict (two partners at the same level), a different motion a
    // multi-channel one (say a referral and a reseller on one deal).
    let rivals: Vec<&Registration> = state
        .registrations
        .values()
        .filter(|r| {
            r.status.is_open() && r.partner_id != *partner_id && r.product_line == *product_line
        })
        .collect();
    for (kind, same_motion) in [
        (ConflictKind::Horizontal, true),
        (ConflictKind::MultiChannel, false),
    ] {
        let involved: Vec<&&Registration> = rivals
            .iter()
            .filter(|r| (r.motion == *motion) == same_motion)
            .collect();
        if involved.is_empty() {
            continue;
        }
        let mut parties: Vec<ConflictParty> = involved
            .iter()
            .map(|r| ConflictParty::Registration {
                registration_id: r.id,
                partner_id: r.partner_id,
            })
            .collect();
        parties.push(me.clone());
        let reason = if same_motion {
            format!(
                "{} {} partners registered `{product_line}` at {account}",
                involved.len() + 1,
                motion.as_str()
            )
        } else {
            let mut motions: Vec<&str> = involved.iter().map(|r| r.motion.as_str()).collect();
            motions.sort();
            motions.dedup();
            format!(
                "{} overlaps {} on `{product_line}` at {account}",
                motion.as_str(),
                motions.join(", ")
            )
        };
        events.push(conflict(
            state,
            account,
            kind,
            product_line,
            parties,
            vec![reason],
            detected,
            ctx,
        ));
        detected += 1;
    }
    let direct: Vec<_> = state
        .direct_opportunities
        .iter()
        .filter(|o| o.product_line == *product_line)
        .collect();
    if !direct.is_empty() {
        let mut parties: Vec<ConflictParty> = direct
            .iter()
            .map(|o| ConflictParty::DirectSales {
                opportunity_id: o.id,
                owner: o.owner.clone(),
            })
            .collect();
        parties.push(me.clone());
        events.push(conflict(
            state,
            account,
            ConflictKind::Vertical,
            product_line,
            parties,
            vec![format!(
                "direct sales already works `{product_line}` at {account}"
            )],
            detected,
            ctx,
        ));
        detected += 1;
    }
    if *kind == DealKind::Renewal && owner.is_none() {
        events.push(conflict(
            state,
            account,
            ConflictKind::RenewalOwnership,
            product_line,
            vec![me],
            vec![
                "a renewal was registered but no partner owns this product line on the account"
                    .into(),
            ],
            detected,
            ctx,
        ));
    }
    Ok(events)
}
