//! Deadlines: what falls due when, for the timekeeper.
//!
//! Why it folds the domain's own account state: the due dates (approval SLA, expiry
//! reminder, protection expiry, inactivity) are exactly what the domain checks when the
//! timekeeper's commands arrive; computing them from the same fold means the projection and
//! the rules can never disagree about what is due.

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::account::ConflictStatus;
use dealreg_domain::announcement::{reaches_partner, CHASE_LEAD_HOURS};
use dealreg_domain::calendar::add_business_days;
use dealreg_domain::ids::AnnouncementId;
use dealreg_domain::program::Announcement;
use dealreg_domain::PartnerState;
use dealreg_domain::Position;
use dealreg_domain::{
    AccountKey, AccountState, ConflictId, ConflictSla, Event, PartnerId, Policy, RegistrationId,
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
    /// A referral made an opportunity the vendor accepted (Intro Logged left) within 24 h.
    ReferralSla,
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
    /// A capacity slot no registration of its account backs, for [`SLOT_GRACE`]: given
    /// back (`lapse_capacity_slot`).
    UnbackedSlot,
    /// The day after a next step's due day, with no new one set.
    NextStepOverdue,
    /// Two days before a partner's acknowledgement of an announcement is due, missing.
    AnnouncementChase,
}

/// How long a capacity slot may be held without its account backing it before the
/// timekeeper gives it back: far longer than a command takes between taking the slot and
/// the account's write (milliseconds), so only an interrupted command's slot lapses.
pub const SLOT_GRACE: Duration = Duration::minutes(2);

/// A capacity slot held on a partner's stream, as the timekeeper watches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSlot {
    /// Its number: the partner's n-th slot taken.
    pub slot: u64,
    /// Since when no registration of the account backs it (`None`: one does).
    pub unbacked_since: Option<DateTime<Utc>>,
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
    /// The partner and the number of the capacity slot it is about (unbacked slots).
    #[serde(default)]
    pub slot: Option<(PartnerId, u64)>,
    /// The partner and the announcement it is about (acknowledgement chases; `account`
    /// is empty then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<(PartnerId, AnnouncementId)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlines {
    policy: Option<Policy>,
    #[serde(skip)]
    accounts: Table<AccountKey, AccountState>,
    /// Capacity slots held, by account, registration and partner.
    #[serde(skip)]
    slots: Table<(AccountKey, RegistrationId, PartnerId), HeldSlot>,
    /// How many slots each partner ever took (the next one's number is one more).
    #[serde(skip)]
    slots_taken: Table<PartnerId, u64>,
    /// The partners' facts and announcement receipts (who an announcement reaches, who
    /// acknowledged it).
    #[serde(skip)]
    partners: Table<PartnerId, PartnerState>,
    /// The announcements that ask for an acknowledgement.
    #[serde(skip)]
    announcements: Table<AnnouncementId, Announcement>,
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
                        slot: None,
                        announcement: None,
                    })
                };
                if let Some(step) = &r.next_step {
                    if r.status.is_open() && !step.overdue_flagged {
                        let day_after = (step.due_on + Duration::days(1))
                            .and_time(chrono::NaiveTime::MIN)
                            .and_utc();
                        push(DeadlineKind::NextStepOverdue, day_after);
                    }
                }
                if let Some(due) = r.intro_due_at {
                    if r.status.is_open() && !r.intro_logged && !r.referral_breach_recorded {
                        push(DeadlineKind::ReferralSla, due);
                    }
                }
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
                        slot: None,
                        announcement: None,
                    })
                };
                if c.status == ConflictStatus::Open
                    && !c.breached.contains(&ConflictSla::Acknowledgement)
                {
                    push(DeadlineKind::ConflictAcknowledgement, c.acknowledge_by);
                }
                if !c.status.is_settled()
                    && c.plan.is_none()
                    && !c.breached.contains(&ConflictSla::ResolutionPlan)
                {
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
                    slot: None,
                    announcement: None,
                });
            }
        }
        for ((account, registration, partner), held) in self.slots.iter() {
            if let Some(since) = held.unbacked_since {
                out.push(Deadline {
                    due_at: since + SLOT_GRACE,
                    kind: DeadlineKind::UnbackedSlot,
                    account: account.clone(),
                    registration_id: Some(*registration),
                    conflict_id: None,
                    product_line: None,
                    slot: Some((*partner, held.slot)),
                    announcement: None,
                });
            }
        }
        for (id, announcement) in self.announcements.iter() {
            let Some(due) = announcement.acknowledge_by else {
                continue;
            };
            for (partner_id, partner) in self.partners.iter() {
                if partner.is_active()
                    && reaches_partner(&announcement.audience, partner)
                    && !partner.receipts.acknowledged.contains(id)
                    && !partner.receipts.chased.contains(id)
                {
                    out.push(Deadline {
                        due_at: due - Duration::hours(CHASE_LEAD_HOURS),
                        kind: DeadlineKind::AnnouncementChase,
                        account: AccountKey(String::new()),
                        registration_id: None,
                        conflict_id: None,
                        product_line: None,
                        slot: None,
                        announcement: Some((*partner_id, *id)),
                    });
                }
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

impl Deadlines {
    /// Whether a registration of the account holds the slot (account, registration,
    /// partner) names.
    fn backs(
        &self,
        (account, registration, partner): &(AccountKey, RegistrationId, PartnerId),
    ) -> bool {
        self.accounts
            .get(account)
            .and_then(|a| a.registrations.get(registration))
            .is_some_and(|r| r.partner_id == *partner && r.holds_slot)
    }

    /// After an event of `account`: the slots held for it, backed or since when not.
    fn check_backing(&mut self, account: &AccountKey, at: DateTime<Utc>) {
        let from = (
            account.clone(),
            RegistrationId(uuid::Uuid::nil()),
            PartnerId(uuid::Uuid::nil()),
        );
        let keys: Vec<_> = self
            .slots
            .range(from..)
            .take_while(|(k, _)| k.0 == *account)
            .map(|(k, held)| (k.clone(), held.unbacked_since))
            .collect();
        for (key, since) in keys {
            let backed = self.backs(&key);
            let wanted = if backed {
                None
            } else {
                Some(since.unwrap_or(at))
            };
            if wanted != since {
                if let Some(held) = self.slots.get_mut(&key) {
                    held.unbacked_since = wanted;
                }
            }
        }
    }
}

impl Projection for Deadlines {
    const NAME: &'static str = "deadlines";
    /// 2: closed conflicts, reassigned and named-account state in the folded accounts.
    /// 3: stored as rows.
    /// 4: capacity slots no account backs. 5: the referral's own clock; resolution plans.
    /// 6: next steps overdue; announcements' acknowledgements chased.
    const VERSION: u32 = 6;

    fn tables(&self) -> Tables<'_> {
        vec![
            ("account", &self.accounts),
            ("slot", &self.slots),
            ("slots_taken", &self.slots_taken),
            ("partner", &self.partners),
            ("announcement", &self.announcements),
        ]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("account", &mut self.accounts),
            ("slot", &mut self.slots),
            ("slots_taken", &mut self.slots_taken),
            ("partner", &mut self.partners),
            ("announcement", &mut self.announcements),
        ]
    }

    fn apply(&mut self, _position: Position, event: &Event) {
        if let Event::PolicyAdopted { policy, .. } = event {
            self.policy = Some(policy.clone());
            return;
        }
        if let Some(announcement) = Announcement::published(event) {
            // Only those that ask for an acknowledgement are chased.
            if announcement.acknowledge_by.is_some() {
                self.announcements.insert(announcement.id, announcement);
            }
            return;
        }
        if let dealreg_domain::Boundary::Partner(id) = event.boundary() {
            if matches!(
                event,
                Event::PartnerOnboarded { .. }
                    | Event::PartnerTierChanged { .. }
                    | Event::PartnerOffboarded { .. }
                    | Event::AnnouncementAcknowledged { .. }
                    | Event::AnnouncementChased { .. }
            ) {
                self.partners.entry_or_default(id).evolve(event);
                return;
            }
        }
        match event {
            Event::CapacitySlotTaken {
                partner_id,
                registration_id,
                account,
                at,
            } => {
                let taken = self.slots_taken.entry_or_default(*partner_id);
                *taken += 1;
                let slot = *taken;
                let key = (account.clone(), *registration_id, *partner_id);
                let backed = self.backs(&key);
                self.slots.insert(
                    key,
                    HeldSlot {
                        slot,
                        unbacked_since: (!backed).then_some(*at),
                    },
                );
                return;
            }
            Event::CapacitySlotReleased {
                partner_id,
                registration_id,
                account,
                slot,
                ..
            } => {
                let key = (account.clone(), *registration_id, *partner_id);
                if self
                    .slots
                    .get(&key)
                    .is_some_and(|held| slot.is_none() || *slot == Some(held.slot))
                {
                    self.slots.remove(&key);
                }
                return;
            }
            _ => {}
        }
        if let dealreg_domain::Boundary::Account(key) = event.boundary() {
            if matches!(event, Event::CommandRejected { .. }) {
                return;
            }
            self.accounts.entry_or_default(key.clone()).evolve(event);
            self.check_backing(&key, event.at());
        }
    }
}
