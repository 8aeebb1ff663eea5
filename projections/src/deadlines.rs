//! Deadlines: what falls due when, for the timekeeper.
//!
//! Why it folds the domain's own account state: the due dates (approval SLA, expiry
//! reminder, protection expiry, inactivity) are exactly what the domain checks when the
//! timekeeper's commands arrive; computing them from the same fold means the projection and
//! the rules can never disagree about what is due.

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::account::ConflictStatus;
use dealreg_domain::calendar::add_business_days;
use dealreg_domain::{
    AccountKey, AccountState, ConflictId, ConflictSla, Event, Policy, RegistrationId,
    RegistrationStatus,
};
use serde::{Deserialize, Serialize};

use crate::table::{Table, Tables, TablesMut};
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
    /// A conflict acknowledged within 24 h.
    ConflictAcknowledgement,
    /// A conflict's resolution plan within 5 business days.
    ConflictResolutionPlan,
    /// Renewal ownership confirmed at least 90 days before the renewal.
    RenewalOwnershipReview,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub due_at: DateTime<Utc>,
    pub kind: DeadlineKind,
    pub account: AccountKey,
    /// The registration it is about (registration deadlines).
    pub registration_id: Option<RegistrationId>,
    /// The conflict it is about (conflict SLAs).
    pub conflict_id: Option<ConflictId>,
    /// The product line it is about (renewal ownership).
    #[serde(default)]
    pub product_line: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlines {
    policy: Option<Policy>,
    #[serde(skip)]
    accounts: Table<AccountKey, AccountState>,
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
        for (account, state) in self.accounts.iter() {
            for r in state.registrations.values() {
                let mut push = |kind, due_at| {
                    out.push(Deadline {
                        due_at,
                        kind,
                        account: account.clone(),
                        registration_id: Some(r.id),
                        conflict_id: None,
                        product_line: None,
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
        for (account, state) in self.accounts.iter() {
            for c in state.conflicts.values() {
                let mut push = |kind, due_at| {
                    out.push(Deadline {
                        due_at,
                        kind,
                        account: account.clone(),
                        registration_id: None,
                        conflict_id: Some(c.id.clone()),
                        product_line: None,
                    })
                };
                if c.status == ConflictStatus::Open
                    && !c.breached.contains(&ConflictSla::Acknowledgement)
                {
                    push(DeadlineKind::ConflictAcknowledgement, c.acknowledge_by);
                }
                if !c.status.is_settled() && !c.breached.contains(&ConflictSla::ResolutionPlan) {
                    let due = c.resolution_plan_by.unwrap_or_else(|| {
                        add_business_days(
                            c.detected_at,
                            policy.sla.conflict_resolution_business_days,
                        )
                    });
                    push(DeadlineKind::ConflictResolutionPlan, due);
                }
            }
        }
        let review = Duration::days(i64::from(policy.timing.renewal_confirmation_days));
        for (account, state) in self.accounts.iter() {
            for (line, renewal_date) in &state.renewal_dates {
                let confirmed =
                    state.renewals.get(line).and_then(|r| r.confirmed_for) == Some(*renewal_date);
                if confirmed
                    || state
                        .renewal_reviews
                        .contains(&(line.clone(), *renewal_date))
                {
                    continue;
                }
                let due = (*renewal_date - review)
                    .and_time(chrono::NaiveTime::MIN)
                    .and_utc();
                out.push(Deadline {
                    due_at: due,
                    kind: DeadlineKind::RenewalOwnershipReview,
                    account: account.clone(),
                    registration_id: None,
                    conflict_id: None,
                    product_line: Some(line.clone()),
                });
            }
        }
        out.sort_by(|a, b| {
            (a.due_at, a.kind, &a.registration_id, &a.conflict_id).cmp(&(
                b.due_at,
                b.kind,
                &b.registration_id,
                &b.conflict_id,
            ))
        });
        out
    }

    /// The deadlines due at `now`. An expiry that is due makes its reminder moot.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Deadline> {
        let open = self.open();
        let expiring: Vec<Option<RegistrationId>> = open
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
    /// 2: closed conflicts, reassigned and named-account state in the folded accounts.
    /// 3: stored as rows.
    const VERSION: u32 = 3;

    fn tables(&self) -> Tables<'_> {
        vec![("account", &self.accounts)]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![("account", &mut self.accounts)]
    }

    fn apply(&mut self, _position: u64, event: &Event) {
        if let Event::PolicyAdopted { policy, .. } = event {
            self.policy = Some(policy.clone());
            return;
        }
        if let dealreg_domain::Boundary::Account(key) = event.boundary() {
            if matches!(event, Event::CommandRejected { .. }) {
                return;
            }
            self.accounts.entry_or_default(key).evolve(event);
        }
    }
}
