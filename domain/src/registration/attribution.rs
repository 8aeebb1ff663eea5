//! Attribution on the deal as it unfolds: at most one sourcing partner, influencers with
//! whole-percent shares that never total more than 100, every change with an actor and a
//! reason, and nothing changes once the deal closed.

use serde_json::json;

use super::guards::{find, invalid, partner, require};
use crate::account::{AccountState, Registration, RegistrationStatus};
use crate::actor::{Actor, VendorRole};
use crate::command::{AddInfluencer, RemoveInfluencer, SetSourcingPartner};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{AccountKey, PartnerId};
use crate::motion::Motion;
use crate::route::AttributionCommand;

pub(super) fn decide(
    state: &AccountState,
    command: AttributionCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        AttributionCommand::SetSourcing(c) => set_sourcing(state, c, account, ctx),
        AttributionCommand::AddInfluencer(c) => add_influencer(state, c, account, ctx),
        AttributionCommand::RemoveInfluencer(c) => remove_influencer(state, c, account, ctx),
    }
}

/// The partner credited by an attribution command (its facts are read).
pub(super) fn subject(command: AttributionCommand<'_>) -> PartnerId {
    match command {
        AttributionCommand::SetSourcing(c) => c.partner_id,
        AttributionCommand::AddInfluencer(c) => c.partner_id,
        AttributionCommand::RemoveInfluencer(c) => c.partner_id,
    }
}

/// Attribution changes: a channel manager, or the owning partner about itself; never
/// after the win locked it.
fn change_allowed(actor: &Actor, r: &Registration, subject: PartnerId) -> Result<(), DomainError> {
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

fn set_sourcing(
    state: &AccountState,
    command: &SetSourcingPartner,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let partner_id = command.partner_id;
    let r = find(state, &command.registration_id, ctx.actor)?;
    change_allowed(ctx.actor, r, partner_id)?;
    require(&command.reason, "reason")?;
    let facts = partner(ctx, partner_id)?;
    if r.motion == Motion::TechIsv || facts.motions == [Motion::TechIsv] {
        return refuse(
            RejectionCode::SourcingNotAllowed,
            "tech/ISV credit is influence, not sourcing: add the partner as an influencer",
        );
    }
    if r.attribution.influencers.contains_key(&partner_id) {
        return refuse(
            RejectionCode::InvalidField,
            "this partner is an influencer on the deal; remove that first",
        );
    }
    match r.attribution.sourcing {
        Some(current) if current == partner_id => refuse(
            RejectionCode::AlreadyRecorded,
            "this partner is already the sourcing partner",
        ),
        Some(current) if !ctx.actor.is_role(VendorRole::ChannelManager) => Err(DomainError::new(
            RejectionCode::SourcingTaken,
            "the deal already has a sourcing partner; only a channel manager may change it",
        )
        .with_details(json!({ "sourcing": current }))),
        previous => Ok(vec![Event::SourcingPartnerSet {
            account,
            registration_id: r.id,
            partner_id,
            previous,
            actor: ctx.actor.label(),
            reason: command.reason.clone(),
            at: ctx.now,
        }]),
    }
}

fn add_influencer(
    state: &AccountState,
    command: &AddInfluencer,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let (partner_id, percent) = (command.partner_id, command.percent);
    let r = find(state, &command.registration_id, ctx.actor)?;
    change_allowed(ctx.actor, r, partner_id)?;
    require(&command.reason, "reason")?;
    partner(ctx, partner_id)?;
    if percent == 0 || percent > 100 {
        return Err(invalid("percent", "must be between 1 and 100"));
    }
    if r.attribution.sourcing == Some(partner_id) {
        return refuse(
            RejectionCode::InvalidField,
            "the sourcing partner cannot also be an influencer",
        );
    }
    let others: u32 = r
        .attribution
        .influencers
        .iter()
        .filter(|(p, _)| **p != partner_id)
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
        partner_id,
        percent,
        actor: ctx.actor.label(),
        reason: command.reason.clone(),
        at: ctx.now,
    }])
}

fn remove_influencer(
    state: &AccountState,
    command: &RemoveInfluencer,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let partner_id = command.partner_id;
    let r = find(state, &command.registration_id, ctx.actor)?;
    change_allowed(ctx.actor, r, partner_id)?;
    require(&command.reason, "reason")?;
    if !r.attribution.influencers.contains_key(&partner_id) {
        return refuse(
            RejectionCode::InvalidField,
            "this partner is not an influencer on the deal",
        );
    }
    Ok(vec![Event::InfluencerRemoved {
        account,
        registration_id: r.id,
        partner_id,
        actor: ctx.actor.label(),
        reason: command.reason.clone(),
        at: ctx.now,
    }])
}
