//! The program boundary: which policy is in force.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, VendorRole};
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::AnnouncementId;
use crate::policy::Policy;
use crate::route::ProgramCommand;
use crate::values::Audience;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProgramState {
    policy: Option<Policy>,
    #[serde(default)]
    announcements: Announcements,
}

impl ProgramState {
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The announcements published, by id.
    pub fn announcements(&self) -> &Announcements {
        &self.announcements
    }

    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::PolicyAdopted { policy, .. } => self.policy = Some(policy.clone()),
            Event::AnnouncementPublished { .. } => {
                if let Some(announcement) = Announcement::published(event) {
                    self.announcements.insert(announcement.id, announcement);
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn decide(
    state: &ProgramState,
    command: ProgramCommand<'_>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let ProgramCommand::AdoptPolicy(command) = command else {
        return refuse(
            RejectionCode::WrongBoundary,
            "announcements and subscriptions are decided by their own modules",
        );
    };
    let policy = &command.policy;
    if !(actor.is_role(VendorRole::RevOps)
        || actor.is_role(VendorRole::ChannelManager)
        || actor.is_system())
    {
        return refuse(
            RejectionCode::NotAuthorised,
            "the program policy is set by RevOps or a channel manager",
        );
    }
    policy.check()?;
    if let Some(current) = &state.policy {
        if policy.version <= current.version {
            return Err(DomainError::new(
                RejectionCode::PolicyVersionNotNewer,
                format!(
                    "policy version {} is in force; a new policy needs a higher version",
                    current.version
                ),
            )
            .with_details(serde_json::json!({ "current_version": current.version })));
        }
    }
    Ok(vec![Event::PolicyAdopted {
        policy: policy.clone(),
        at: now,
    }])
}

/// An announcement as the program holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub id: AnnouncementId,
    pub title: String,
    /// The policy version it concerns, if it announces a policy change.
    pub policy_version: Option<u32>,
    pub audience: Audience,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub published_at: DateTime<Utc>,
}

/// The announcements of the program, by id.
pub type Announcements = BTreeMap<AnnouncementId, Announcement>;

impl Announcement {
    /// The announcement an `announcement_published` event records (`None` for any other
    /// event): one reading for the program's fold and every view that keeps them.
    pub fn published(event: &Event) -> Option<Announcement> {
        let Event::AnnouncementPublished {
            announcement_id,
            title,
            policy_version,
            audience,
            acknowledge_by,
            at,
            ..
        } = event
        else {
            return None;
        };
        Some(Announcement {
            id: *announcement_id,
            title: title.clone(),
            policy_version: *policy_version,
            audience: audience.clone(),
            acknowledge_by: *acknowledge_by,
            published_at: *at,
        })
    }
}
