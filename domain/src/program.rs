//! The program boundary: which policy is in force.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, VendorRole};
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::policy::Policy;
use crate::route::ProgramCommand;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProgramState {
    policy: Option<Policy>,
}

impl ProgramState {
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    pub fn evolve(&mut self, event: &Event) {
        if let Event::PolicyAdopted { policy, .. } = event {
            self.policy = Some(policy.clone());
        }
    }
}

pub(crate) fn decide(
    state: &ProgramState,
    command: ProgramCommand<'_>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let ProgramCommand::AdoptPolicy(command) = command;
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
