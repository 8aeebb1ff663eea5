//! What every account decision checks first: who may act, whether the registration
//! exists for this actor, whether it is in a state the command applies to, whether a
//! required text was given. Each guard answers with the refusal a caller can act on.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::account::{AccountState, Registration, RegistrationStatus};
use crate::actor::{Actor, VendorRole};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{AccountKey, PartnerId, RegistrationId};
use crate::partner::PartnerState;

pub(super) fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

pub(super) fn missing(field: &str) -> DomainError {
    DomainError::new(
        RejectionCode::MissingField,
        format!("`{field}` is required"),
    )
    .with_details(json!({ "field": field }))
}

pub(super) fn invalid(field: &str, why: &str) -> DomainError {
    DomainError::new(RejectionCode::InvalidField, format!("`{field}` {why}"))
        .with_details(json!({ "field": field }))
}

/// A required text: present and not only whitespace.
pub(super) fn require(value: &str, field: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        Err(missing(field))
    } else {
        Ok(())
    }
}

/// Auditors read the log; no account command is theirs.
pub(super) fn not_an_auditor(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_role(VendorRole::Auditor) {
        refuse(
            RejectionCode::NotAuthorised,
            "auditors read the log; they do not change it",
        )
    } else {
        Ok(())
    }
}

pub(super) fn channel_manager(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_role(VendorRole::ChannelManager) {
        Ok(())
    } else {
        refuse(
            RejectionCode::NotAuthorised,
            format!("only a channel manager may do this, not {}", actor.label()),
        )
    }
}

/// The timekeeper's commands: only the system sends them, when a deadline falls due.
pub(super) fn system(actor: &Actor) -> Result<(), DomainError> {
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
pub(super) fn find<'s>(
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
pub(super) fn owner_or_channel_manager(
    actor: &Actor,
    registration: &Registration,
) -> Result<(), DomainError> {
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

pub(super) fn status_is(
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
                "cannot {doing} a registration that is {}",
                registration.status.as_str()
            ),
        )
        .with_details(json!({ "registration_id": registration.id, "status": registration.status })))
    }
}

/// The facts of an onboarded partner the engine loaded (see `partners_needed`).
pub(super) fn partner<'c>(
    ctx: &'c Context<'_>,
    id: PartnerId,
) -> Result<&'c PartnerState, DomainError> {
    ctx.partners
        .get(&id)
        .copied()
        .filter(|p| p.partner_id.is_some())
        .ok_or_else(|| {
            DomainError::new(
                RejectionCode::UnknownPartner,
                format!("partner {id} is not onboarded"),
            )
            .with_details(json!({ "partner_id": id }))
        })
}

/// The capacity slot a closing registration gives back to its partner: the slot it holds
/// by the partner's facts the decision read (`None` when the decision did not read them;
/// the engine finds the number before the account's write).
pub(super) fn release_slot(
    registration: &Registration,
    account: &AccountKey,
    ctx: &Context<'_>,
) -> Option<Event> {
    registration
        .holds_slot
        .then(|| Event::CapacitySlotReleased {
            partner_id: registration.partner_id,
            registration_id: registration.id,
            account: account.clone(),
            slot: ctx
                .partners
                .get(&registration.partner_id)
                .and_then(|p| p.slot_of(&registration.id)),
            at: ctx.now,
        })
}

pub(super) fn not_due<T>(what: &str, due: DateTime<Utc>) -> Result<T, DomainError> {
    Err(DomainError::new(
        RejectionCode::NotDue,
        format!("not yet: {what} at {}", due.to_rfc3339()),
    )
    .with_details(json!({ "due_at": due })))
}

/// Certification gates the right to register and to partner pricing (docs/RULES.md,
/// "Partner facts"), so it is checked again whenever protection is granted or extended:
/// a registration submitted on a certification's last day is not approved the day after.
pub(super) fn certified_now(
    ctx: &Context<'_>,
    registration: &Registration,
    doing: &str,
) -> Result<(), DomainError> {
    if !ctx.policy.requires_certification(registration.motion) {
        return Ok(());
    }
    let facts = partner(ctx, registration.partner_id)?;
    if facts.is_certified(&registration.product_line, ctx.now) {
        return Ok(());
    }
    let expired_on = facts.certifications.get(&registration.product_line);
    Err(DomainError::new(
        RejectionCode::NotCertified,
        format!(
            "cannot {doing} this registration: the partner's certification in `{}` is not current{}; recertify the partner first, or decline the registration",
            registration.product_line,
            expired_on.map(|d| format!(" (it ran out after {d})")).unwrap_or_default()
        ),
    )
    .with_details(json!({ "product_line": registration.product_line, "expired_on": expired_on })))
}
