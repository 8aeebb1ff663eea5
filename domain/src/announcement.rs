//! Announcements: what the vendor tells its partners (a policy change, a new rule), who it
//! reaches, and each partner's read receipt and acknowledgement.
//!
//! Why the acknowledgement is the partner's fact (on its stream) while the announcement is
//! the program's: a partner acknowledges for itself, at its own pace, and the one decision
//! that reads both (a submission under a policy whose change the partner must acknowledge
//! first) already reads the partner. The program stream stays quiet.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::actor::{Actor, VendorRole};
use crate::command::{
    AcknowledgeAnnouncement, ChaseAnnouncement, PublishAnnouncement, RecordAnnouncementRead,
};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{AnnouncementId, PartnerId};
use crate::partner::PartnerState;
use crate::policy::Policy;
use crate::program::{Announcement, Announcements};
use crate::values::Audience;

/// How long before its acknowledgement date a missing acknowledgement is chased.
pub const CHASE_LEAD_HOURS: i64 = 48;

/// [`Audience::reaches`] for a partner's folded facts.
pub fn reaches_partner(audience: &Audience, partner: &PartnerState) -> bool {
    partner
        .partner_id
        .is_some_and(|id| audience.reaches(id, partner.tier(), &partner.motions))
}

/// RevOps or a channel manager publishes an announcement.
pub(crate) fn publish(
    announcements: &Announcements,
    c: &PublishAnnouncement,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if !(actor.is_role(VendorRole::RevOps) || actor.is_role(VendorRole::ChannelManager)) {
        return refuse(
            RejectionCode::NotAuthorised,
            "announcements are published by RevOps or a channel manager",
        );
    }
    if announcements.contains_key(&c.announcement_id) {
        return Err(DomainError::new(
            RejectionCode::AlreadyRecorded,
            format!(
                "announcement {} is already published; publish a new one with a new id",
                c.announcement_id
            ),
        )
        .with_details(json!({ "announcement_id": c.announcement_id })));
    }
    for (value, field, limit) in [(&c.title, "title", 200), (&c.text, "text", 20_000)] {
        if value.trim().is_empty() {
            return Err(DomainError::new(
                RejectionCode::MissingField,
                format!("`{field}` is required"),
            )
            .with_details(json!({ "field": field })));
        }
        if value.chars().count() > limit {
            return Err(DomainError::new(
                RejectionCode::InvalidField,
                format!("`{field}` is longer than {limit} characters"),
            )
            .with_details(json!({ "field": field })));
        }
    }
    if let Some(by) = c.acknowledge_by {
        if by <= now {
            return Err(DomainError::new(
                RejectionCode::InvalidField,
                "`acknowledge_by` is in the past; give partners time to acknowledge",
            )
            .with_details(json!({ "field": "acknowledge_by" })));
        }
    }
    Ok(vec![Event::AnnouncementPublished {
        announcement_id: c.announcement_id,
        title: c.title.trim().to_string(),
        text: c.text.clone(),
        policy_version: c.policy_version,
        audience: c.audience.clone(),
        acknowledge_by: c.acknowledge_by,
        at: now,
    }])
}

/// The announcement `id` as it reaches `partner`: it exists and the partner is in its
/// audience. A partner outside the audience is told it does not exist.
fn reaching<'c>(
    ctx: &'c Context<'_>,
    partner: &PartnerState,
    id: AnnouncementId,
) -> Result<&'c Announcement, DomainError> {
    ctx.program
        .announcements()
        .get(&id)
        .filter(|a| reaches_partner(&a.audience, partner))
        .ok_or_else(|| {
            DomainError::new(
                RejectionCode::UnknownAnnouncement,
                format!("no announcement {id} for this partner; check the id"),
            )
            .with_details(json!({ "announcement_id": id }))
        })
}

/// The partner's own user (or the system, for the timekeeper's chase).
fn partner_user(actor: &Actor, partner_id: PartnerId) -> Result<&str, DomainError> {
    match actor {
        Actor::Partner {
            partner_id: own,
            user,
        } if *own == partner_id => Ok(user),
        _ => refuse(
            RejectionCode::NotAuthorised,
            format!(
                "only a user of the partner acknowledges its announcements, not {}",
                actor.label()
            ),
        ),
    }
}

pub(crate) fn acknowledge(
    state: &PartnerState,
    c: &AcknowledgeAnnouncement,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let user = partner_user(ctx.actor, c.partner_id)?;
    reaching(ctx, state, c.announcement_id)?;
    if state.receipts.acknowledged.contains(&c.announcement_id) {
        return Err(DomainError::new(
            RejectionCode::AlreadyRecorded,
            "the partner already acknowledged this announcement",
        )
        .with_details(json!({ "announcement_id": c.announcement_id })));
    }
    Ok(vec![Event::AnnouncementAcknowledged {
        partner_id: c.partner_id,
        announcement_id: c.announcement_id,
        by: user.to_string(),
        at: ctx.now,
    }])
}

/// The first time a user of the partner opened the announcement: the read receipt.
pub(crate) fn record_read(
    state: &PartnerState,
    c: &RecordAnnouncementRead,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let user = partner_user(ctx.actor, c.partner_id)?;
    reaching(ctx, state, c.announcement_id)?;
    if state.receipts.read.contains(&c.announcement_id) {
        return Err(DomainError::new(
            RejectionCode::AlreadyRecorded,
            "the partner's first read of this announcement is already recorded",
        )
        .with_details(json!({ "announcement_id": c.announcement_id })));
    }
    Ok(vec![Event::AnnouncementRead {
        partner_id: c.partner_id,
        announcement_id: c.announcement_id,
        by: user.to_string(),
        at: ctx.now,
    }])
}

/// The timekeeper's: the acknowledgement is due within [`CHASE_LEAD_HOURS`] (or past
/// due) and missing. Once per announcement and partner.
pub(crate) fn chase(
    state: &PartnerState,
    c: &ChaseAnnouncement,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !ctx.actor.is_system() {
        return refuse(
            RejectionCode::NotAuthorised,
            "this is the timekeeper's command; it runs when the acknowledgement falls due",
        );
    }
    let announcement = reaching(ctx, state, c.announcement_id)?;
    let Some(due) = announcement.acknowledge_by else {
        return refuse(
            RejectionCode::NotDue,
            "the announcement asks for no acknowledgement",
        );
    };
    if state.receipts.acknowledged.contains(&c.announcement_id)
        || state.receipts.chased.contains(&c.announcement_id)
    {
        return Err(DomainError::new(
            RejectionCode::AlreadyRecorded,
            "the announcement is acknowledged or was chased already",
        )
        .with_details(json!({ "announcement_id": c.announcement_id })));
    }
    let chase_at = due - Duration::hours(CHASE_LEAD_HOURS);
    if ctx.now < chase_at {
        return Err(DomainError::new(
            RejectionCode::NotDue,
            format!("not yet: the chase is due at {}", chase_at.to_rfc3339()),
        )
        .with_details(json!({ "due_at": chase_at })));
    }
    Ok(vec![Event::AnnouncementChased {
        partner_id: c.partner_id,
        announcement_id: c.announcement_id,
        acknowledge_by: due,
        at: ctx.now,
    }])
}

/// The registration gate: under a policy that requires it, a partner registers under a
/// policy version only once it acknowledged every announcement of that version that
/// reaches it. The refusal names the announcement.
pub(crate) fn gate(
    policy: &Policy,
    announcements: &Announcements,
    partner: &PartnerState,
) -> Result<(), DomainError> {
    if !policy.require_acknowledgement {
        return Ok(());
    }
    let missing = announcements.values().find(|a| {
        a.policy_version == Some(policy.version)
            && reaches_partner(&a.audience, partner)
            && !partner.receipts.acknowledged.contains(&a.id)
    });
    match missing {
        None => Ok(()),
        Some(a) => Err(DomainError::new(
            RejectionCode::AnnouncementNotAcknowledged,
            format!(
                "policy version {} changed the rules: acknowledge the announcement \"{}\" ({}) before registering under it",
                policy.version, a.title, a.id
            ),
        )
        .with_details(json!({
            "announcement_id": a.id,
            "title": a.title,
            "policy_version": policy.version,
        }))),
    }
}
