//! The work on a deal between the partner and the vendor: notes, the next step and its
//! day, the partner's request for more protection time, the vendor's request for more
//! information. None of these changes who owns the deal; they are what people do with it
//! week by week, and what the alerts tell the other side.

use serde_json::json;

use crate::account::{AccountState, RegistrationStatus};
use crate::actor::{Actor, VendorRole};
use crate::command::{
    AddNote, FlagNextStepOverdue, RequestExtension, RequestMoreInformation, SetNextStep,
};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::AccountKey;
use crate::route::EngagementCommand;
use crate::values::NoteVisibility;

use super::guards::{channel_manager, find, invalid, require, status_is, system};

/// Longest note, request or question, in characters.
const TEXT_LIMIT: usize = 4_000;

/// Longest next step: one line (the pipeline shows it with its day, and CRMs keep it in a
/// 255-character text field); the detail belongs in a note.
const NEXT_STEP_LIMIT: usize = 200;

pub(super) fn decide(
    state: &AccountState,
    command: EngagementCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        EngagementCommand::AddNote(c) => add_note(state, c, account, ctx),
        EngagementCommand::SetNextStep(c) => set_next_step(state, c, account, ctx),
        EngagementCommand::FlagNextStepOverdue(c) => flag_overdue(state, c, account, ctx),
        EngagementCommand::RequestExtension(c) => request_extension(state, c, account, ctx),
        EngagementCommand::RequestMoreInformation(c) => request_information(state, c, account, ctx),
    }
}

/// The owning partner, or the vendor's channel team (a channel manager, RevOps, or an
/// adapter on their behalf).
fn owner_or_vendor(actor: &Actor, owner: crate::ids::PartnerId) -> Result<(), DomainError> {
    match actor {
        Actor::Partner { partner_id, .. } if *partner_id == owner => Ok(()),
        Actor::Vendor {
            role: VendorRole::ChannelManager | VendorRole::RevOps,
            ..
        }
        | Actor::System { .. } => Ok(()),
        _ => refuse(
            RejectionCode::NotAuthorised,
            format!("{} may not work on this registration", actor.label()),
        ),
    }
}

fn text_within(text: &str, field: &str, limit: usize) -> Result<(), DomainError> {
    require(text, field)?;
    if text.chars().count() > limit {
        return Err(invalid(
            field,
            &format!("is longer than {limit} characters"),
        ));
    }
    Ok(())
}

/// Who wrote it, as the log records it.
fn author(actor: &Actor) -> String {
    match actor {
        Actor::Partner { user, .. } | Actor::Vendor { user, .. } => user.clone(),
        Actor::System { component } => component.clone(),
    }
}

fn add_note(
    state: &AccountState,
    c: &AddNote,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let registration = find(state, &c.registration_id, ctx.actor)?;
    owner_or_vendor(ctx.actor, registration.partner_id)?;
    if ctx.actor.partner().is_some() && c.visibility == NoteVisibility::Internal {
        return refuse(
            RejectionCode::NotAuthorised,
            "internal notes are the vendor's; a partner's note is visible to the partner",
        );
    }
    text_within(&c.text, "text", TEXT_LIMIT)?;
    if registration.notes.contains(&c.note_id) {
        return Err(DomainError::new(
            RejectionCode::AlreadyRecorded,
            format!("note {} is already on this registration", c.note_id),
        )
        .with_details(json!({ "note_id": c.note_id })));
    }
    Ok(vec![Event::NoteAdded {
        account,
        registration_id: c.registration_id,
        partner_id: registration.partner_id,
        note_id: c.note_id,
        text: c.text.trim().to_string(),
        visibility: c.visibility,
        by: author(ctx.actor),
        from_partner: ctx.actor.partner().is_some(),
        at: ctx.now,
    }])
}

const WORKED: &[RegistrationStatus] = &[RegistrationStatus::Pending, RegistrationStatus::Protected];

fn set_next_step(
    state: &AccountState,
    c: &SetNextStep,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let registration = find(state, &c.registration_id, ctx.actor)?;
    owner_or_vendor(ctx.actor, registration.partner_id)?;
    status_is(registration, WORKED, "set a next step on")?;
    if c.text.contains(['\n', '\r']) {
        return Err(invalid("text", "is one line; put the detail in a note"));
    }
    text_within(&c.text, "text", NEXT_STEP_LIMIT)?;
    if c.due_on < ctx.now.date_naive() {
        return Err(invalid(
            "due_on",
            "is in the past; a next step is due today or later",
        ));
    }
    Ok(vec![Event::NextStepSet {
        account,
        registration_id: c.registration_id,
        partner_id: registration.partner_id,
        text: c.text.trim().to_string(),
        due_on: c.due_on,
        by: author(ctx.actor),
        at: ctx.now,
    }])
}

/// The timekeeper's: the day after the next step's due day, once per next step.
fn flag_overdue(
    state: &AccountState,
    c: &FlagNextStepOverdue,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    system(ctx.actor)?;
    let registration = find(state, &c.registration_id, ctx.actor)?;
    status_is(registration, WORKED, "flag the next step of")?;
    let Some(step) = &registration.next_step else {
        return refuse(RejectionCode::NotDue, "the registration has no next step");
    };
    if step.overdue_flagged {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this next step is already flagged overdue",
        );
    }
    if ctx.now.date_naive() <= step.due_on {
        return Err(DomainError::new(
            RejectionCode::NotDue,
            format!("not yet: the next step is due on {}", step.due_on),
        )
        .with_details(json!({ "due_on": step.due_on })));
    }
    Ok(vec![Event::NextStepOverdue {
        account,
        registration_id: c.registration_id,
        partner_id: registration.partner_id,
        due_on: step.due_on,
        at: ctx.now,
    }])
}

fn request_extension(
    state: &AccountState,
    c: &RequestExtension,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let registration = find(state, &c.registration_id, ctx.actor)?;
    match ctx.actor {
        Actor::Partner { partner_id, .. } if *partner_id == registration.partner_id => {}
        _ => {
            return refuse(
                RejectionCode::NotAuthorised,
                "the owning partner asks for an extension; a channel manager grants one with extend_protection",
            )
        }
    }
    if registration.status != RegistrationStatus::Protected {
        return Err(DomainError::new(
            RejectionCode::NotProtected,
            format!(
                "only a protected registration can be extended; this one is {}",
                registration.status.as_str()
            ),
        )
        .with_details(
            json!({ "registration_id": c.registration_id, "status": registration.status }),
        ));
    }
    if c.reason.chars().count() > TEXT_LIMIT {
        return Err(invalid(
            "reason",
            &format!("is longer than {TEXT_LIMIT} characters"),
        ));
    }
    Ok(vec![Event::ExtensionRequested {
        account,
        registration_id: c.registration_id,
        partner_id: registration.partner_id,
        reason: c.reason.trim().to_string(),
        at: ctx.now,
    }])
}

fn request_information(
    state: &AccountState,
    c: &RequestMoreInformation,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    channel_manager(ctx.actor)?;
    let registration = find(state, &c.registration_id, ctx.actor)?;
    status_is(registration, &[RegistrationStatus::Pending], "ask about")?;
    text_within(&c.question, "question", TEXT_LIMIT)?;
    Ok(vec![Event::MoreInformationRequested {
        account,
        registration_id: c.registration_id,
        partner_id: registration.partner_id,
        question: c.question.trim().to_string(),
        at: ctx.now,
    }])
}
