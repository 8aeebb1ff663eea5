//! Deadlines: what falls due when, for the timekeeper.
//!
//! Why it folds the domain's own account state: the due dates (approval SLA, expiry
//! reminder, protection expiry, inactivity) are exactly what the domain checks when the
//! timekeeper's commands arrive; computing them from the same fold means the projection and
//! the rules can never disagree about what is due.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::{AccountKey, AccountState, Event, Policy, RegistrationId, RegistrationStatus};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// The registration decision is due within 48 h of submission.
    ApprovalSla,
    /// Reminder 7 days before protection expires.
    ExpiryReminder,
    /// Protection ends.
    ProtectionExpiry,
    /// No touch for 30 days.
    Inactivity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub due_at: DateTime<Utc>,
    pub kind: DeadlineKind,
    pub account: AccountKey,
    pub registration_id: RegistrationId,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlines {
    policy: Option<Policy>,
    accounts: BTreeMap<AccountKey, AccountState>,
}

impl Deadlines {
    /// Every deadline still open, earliest first.
    pub fn open(&self) -> Vec<Deadline> {
        let Some(policy) = &self.policy else {
            return Vec::new();
        };
        let lead = Duration::days(i64::from(policy.timing.reminder_lead_days));
        let inactivity = Duration::days(i64::from(policy.timing.inactivity_days));
        let mut out = Vec::new();
        for (account, state) in &self.accounts {
            for r in state.registrations.values() {
                let mut push = |kind, due_at| {
                    out.push(Deadline {
                        due_at,
                        kind,
                        account: account.clone(),
                        registration_id: r.id,
                    })
                };
                match r.status {
                    RegistrationStatus::Pending => {
                        if !r.sla_breach_recorded {
                            push(DeadlineKind::ApprovalSla, r.approval_due_at);
                        }
                    }
                    RegistrationStatus::Protected => {
                        if let Some(expires_at) = r.expires_at {
                            push(DeadlineKind::ProtectionExpiry, expires_at);
                            if r.reminded_for != Some(expires_at) {
                                push(DeadlineKind::ExpiryReminder, expires_at - lead);
                            }
                        }
                    }
                    _ => continue,
                }
                if r.inactive_flagged_at
                    .is_none_or(|flagged| flagged < r.last_touch)
                {
                    push(DeadlineKind::Inactivity, r.last_touch + inactivity);
                }
            }
        }
        out.sort_by(|a, b| {
            (a.due_at, a.kind, &a.registration_id).cmp(&(b.due_at, b.kind, &b.registration_id))
        });
        out
    }

    /// The deadlines due at `now`. An expiry that is due makes its reminder moot.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Deadline> {
        let open = self.open();
        let expiring: Vec<RegistrationId> = open
            .iter()
            .filter(|d| d.kind == DeadlineKind::ProtectionExpiry && d.due_at <= now)
            .map(|d| d.registration_id)
            .collect();
        open.into_iter()
            .filter(|d| d.due_at <= now)
            .filter(|d| {
                !(expiring.contains(&d.registration_id)
                    && matches!(
                        d.kind,
                        DeadlineKind::ExpiryReminder | DeadlineKind::Inactivity
                    ))
            })
            .collect()
    }
}

impl Projection for Deadlines {
    const NAME: &'static str = "deadlines";

    fn apply(&mut self, _position: u64, event: &Event) {
        if let Event::PolicyAdopted { policy, .. } = event {
            self.policy = Some(policy.clone());
            return;
        }
        if let dealreg_domain::Boundary::Account(key) = event.boundary() {
            if matches!(event, Event::CommandRejected { .. }) {
                return;
            }
            self.accounts.entry(key).or_default().evolve(event);
        }
    }
}
