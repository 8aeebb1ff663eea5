//! The customer account: the consistency boundary for registrations. Everything that must
//! be decided together lives here: the registrations, their protection windows and
//! attribution, direct-sales opportunities, conflicts, incumbency and renewal ownership.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::event::Event;
use crate::ids::{AccountKey, ConflictId, NoteId, OpportunityId, PartnerId, RegistrationId};
use crate::money::Money;
use crate::motion::{DealKind, Motion};
use crate::values::{ConflictKind, ConflictParty, ConflictSla, StageEvidence};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    Pending,
    Protected,
    Declined,
    Withdrawn,
    Expired,
    Won,
    Lost,
    Released,
}

impl RegistrationStatus {
    /// Pending or protected: counts against capacity and takes part in conflicts.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RegistrationStatus::Pending | RegistrationStatus::Protected
        )
    }

    /// The status's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Pending => "pending",
            RegistrationStatus::Protected => "protected",
            RegistrationStatus::Declined => "declined",
            RegistrationStatus::Withdrawn => "withdrawn",
            RegistrationStatus::Expired => "expired",
            RegistrationStatus::Won => "won",
            RegistrationStatus::Lost => "lost",
            RegistrationStatus::Released => "released",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: RegistrationId,
    pub partner_id: PartnerId,
    pub company: String,
    pub product_line: String,
    pub motion: Motion,
    pub kind: DealKind,
    pub estimated_amount: Money,
    pub status: RegistrationStatus,
    pub certified: bool,
    pub incumbent: bool,
    pub submitted_at: DateTime<Utc>,
    /// When the current approval decision is due (resets when an appeal reinstates it).
    pub approval_due_at: DateTime<Utc>,
    pub sla_breach_recorded: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub extensions: u32,
    /// The expiry a reminder was sent for (a new one after an extension).
    pub reminded_for: Option<DateTime<Utc>>,
    pub last_touch: DateTime<Utc>,
    pub inactive_flagged_at: Option<DateTime<Utc>>,
    pub appeal_until: Option<DateTime<Utc>>,
    pub appeal_filed: bool,
    pub appeal_decided: bool,
    pub stage: usize,
    pub attribution: Attribution,
    pub won_amount: Option<Money>,
    pub reversed_minor: i64,
    pub holds_slot: bool,
    /// A referral's clock to an accepted opportunity (None: not a referral, or recorded
    /// before the clock existed).
    #[serde(default)]
    pub intro_due_at: Option<DateTime<Utc>>,
    /// The referral left Intro Logged: the vendor created and accepted the opportunity.
    #[serde(default)]
    pub intro_logged: bool,
    #[serde(default)]
    pub referral_breach_recorded: bool,
    /// The marketplace transaction reference recorded at Procurement's exit.
    #[serde(default)]
    pub transaction_reference: Option<String>,
    /// The deal's next step, if one is set.
    #[serde(default)]
    pub next_step: Option<NextStep>,
    /// The ids of the notes on the registration (a note id is used once).
    #[serde(default)]
    pub notes: BTreeSet<NoteId>,
}

/// A deal's next step: what, by when, and whether its day passed unmet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    pub text: String,
    pub due_on: NaiveDate,
    pub overdue_flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectOpportunity {
    pub id: OpportunityId,
    pub owner: String,
    pub product_line: String,
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    Open,
    Acknowledged,
    Resolved,
    /// Ended by itself: fewer than two of its parties were still live.
    Closed,
}

impl ConflictStatus {
    /// Resolved by the desk or closed by itself: no SLA runs any more.
    pub fn is_settled(self) -> bool {
        matches!(self, ConflictStatus::Resolved | ConflictStatus::Closed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub id: ConflictId,
    pub kind: ConflictKind,
    pub product_line: String,
    pub parties: Vec<ConflictParty>,
    pub status: ConflictStatus,
    pub detected_at: DateTime<Utc>,
    pub acknowledge_by: DateTime<Utc>,
    pub resolution_plan_by: Option<DateTime<Utc>>,
    /// SLAs already recorded as breached.
    pub breached: Vec<ConflictSla>,
    /// The resolution plan recorded last: (owner, steps, resolve by).
    #[serde(default)]
    pub plan: Option<(String, Vec<String>, NaiveDate)>,
}

/// The partner the customer is a named account of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedAccount {
    pub partner_id: PartnerId,
    pub exclusive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalOwnership {
    pub owner: PartnerId,
    pub confirmed_for: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountState {
    pub key: Option<AccountKey>,
    pub company: String,
    /// Keyed by UUID v7 id: iteration is submission order.
    pub registrations: BTreeMap<RegistrationId, Registration>,
    pub direct_opportunities: Vec<DirectOpportunity>,
    pub conflicts: BTreeMap<ConflictId, Conflict>,
    /// Product line -> the partner that won it last (the incumbent).
    pub incumbents: BTreeMap<String, PartnerId>,
    /// Product line -> who owns the renewal (the incumbent unless reassigned).
    pub renewals: BTreeMap<String, RenewalOwnership>,
    /// Product line -> the next renewal date of its won contract.
    #[serde(default)]
    pub renewal_dates: BTreeMap<String, NaiveDate>,
    /// (product line, renewal date) pairs whose ownership review was flagged.
    #[serde(default)]
    pub renewal_reviews: Vec<(String, NaiveDate)>,
    /// Whose named account the customer is, if anyone's.
    #[serde(default)]
    pub named_account: Option<NamedAccount>,
    /// Capacity slots (partner, registration, slot number) this account gave up on: it
    /// never uses them again (see `registration::capacity`).
    #[serde(default)]
    pub lapsed_slots: BTreeSet<(PartnerId, RegistrationId, u64)>,
}

impl AccountState {
    pub fn registration(&self, id: &RegistrationId) -> Option<&Registration> {
        self.registrations.get(id)
    }

    /// The registration holding protection on `product_line`, if any.
    pub fn protected_on(&self, product_line: &str) -> Option<&Registration> {
        self.registrations
            .values()
            .find(|r| r.status == RegistrationStatus::Protected && r.product_line == product_line)
    }

    /// The renewal date of `product_line` when `today` is inside its renewal window: from
    /// `lead_days` before the renewal date through the renewal date itself. Inside it the
    /// renewal belongs to its owner, whatever kind of deal another partner registers.
    pub fn renewal_window(
        &self,
        product_line: &str,
        today: NaiveDate,
        lead_days: u32,
    ) -> Option<NaiveDate> {
        let renews = *self.renewal_dates.get(product_line)?;
        let opens = renews - chrono::Duration::days(i64::from(lead_days));
        (opens <= today && today <= renews).then_some(renews)
    }

    /// The renewal owner of a product line: the reassigned owner, else the incumbent.
    pub fn renewal_owner(&self, product_line: &str) -> Option<PartnerId> {
        self.renewals
            .get(product_line)
            .map(|r| r.owner)
            .or_else(|| self.incumbents.get(product_line).copied())
    }

    /// Folds one event into the account. This only routes: each event reaches the fold of
    /// the concern that decides it (the same split as `registration`'s deciders), so a
    /// reader finds an event's effect beside its siblings'. Events of other aggregates
    /// (the program's, the partners', capacity slots taken and released) change nothing.
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::RegistrationSubmitted { .. } => self.fold_submission(event),
            Event::RegistrationApproved { .. }
            | Event::RegistrationDeclined { .. }
            | Event::ApprovalSlaBreached { .. }
            | Event::ReferralSlaBreached { .. }
            | Event::AppealFiled { .. }
            | Event::AppealDecided { .. } => self.fold_review(event),
            Event::ProtectionExtended { .. }
            | Event::ProtectionExpired { .. }
            | Event::ExpiryReminderSent { .. }
            | Event::RegistrationFlaggedInactive { .. }
            | Event::RegistrationReassigned { .. } => self.fold_protection(event),
            Event::StageAdvanced { .. }
            | Event::DealWon { .. }
            | Event::DealLost { .. }
            | Event::RevenueReversed { .. }
            | Event::RegistrationWithdrawn { .. }
            | Event::RegistrationReleased { .. } => self.fold_deal(event),
            Event::SourcingPartnerSet { .. }
            | Event::InfluencerAdded { .. }
            | Event::InfluencerRemoved { .. } => self.fold_attribution(event),
            Event::DirectOpportunityRecorded { .. }
            | Event::ConflictDetected { .. }
            | Event::ConflictSlaBreached { .. }
            | Event::ConflictAcknowledged { .. }
            | Event::ConflictResolutionPlanRecorded { .. }
            | Event::ConflictResolved { .. }
            | Event::ConflictClosed { .. }
            | Event::NamedAccountAssigned { .. } => self.fold_conflicts(event),
            Event::RenewalOwnershipReviewDue { .. }
            | Event::RenewalOwnershipConfirmed { .. }
            | Event::RenewalOwnershipReassigned { .. } => self.fold_renewals(event),
            Event::NoteAdded { .. }
            | Event::NextStepSet { .. }
            | Event::NextStepOverdue { .. }
            | Event::ExtensionRequested { .. }
            | Event::MoreInformationRequested { .. } => self.fold_engagement(event),
            Event::CapacitySlotLapsed {
                registration_id,
                partner_id,
                slot,
                ..
            } => {
                // The account never uses a slot it gave up on again (`registration::capacity`).
                self.lapsed_slots
                    .insert((*partner_id, *registration_id, *slot));
            }
            _ => {}
        }
    }

    /// Notes, next steps and requests: a partner's note, next step or extension request
    /// is the partner working the deal (it touches the registration, as a stage does).
    fn fold_engagement(&mut self, event: &Event) {
        match event {
            Event::NoteAdded {
                registration_id,
                note_id,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.notes.insert(*note_id);
                r.last_touch = *at;
            }),
            Event::NextStepSet {
                registration_id,
                text,
                due_on,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.next_step = Some(NextStep {
                    text: text.clone(),
                    due_on: *due_on,
                    overdue_flagged: false,
                });
                r.last_touch = *at;
            }),
            Event::NextStepOverdue {
                registration_id, ..
            } => self.with_registration(registration_id, |r| {
                if let Some(step) = r.next_step.as_mut() {
                    step.overdue_flagged = true;
                }
            }),
            Event::ExtensionRequested {
                registration_id,
                at,
                ..
            } => self.with_registration(registration_id, |r| r.last_touch = *at),
            _ => {}
        }
    }

    /// Applies `change` to a registration of this account. An event naming a registration
    /// the account does not hold changes nothing: folding never fails, whatever the log.
    fn with_registration(&mut self, id: &RegistrationId, change: impl FnOnce(&mut Registration)) {
        if let Some(r) = self.registrations.get_mut(id) {
            change(r);
        }
    }

    /// A submission opens the account (its key, and its company name from the first one)
    /// and records the registration pending, holding a capacity slot, with every later
    /// fact (protection, appeal, stage, attribution, win) still unset.
    fn fold_submission(&mut self, event: &Event) {
        let Event::RegistrationSubmitted {
            account,
            registration_id,
            partner_id,
            customer,
            product_line,
            motion,
            kind,
            estimated_amount,
            certified,
            incumbent,
            approval_due_at,
            intro_due_at,
            at,
            ..
        } = event
        else {
            return;
        };
        self.key = Some(account.clone());
        if self.company.is_empty() {
            self.company = customer.company.clone();
        }
        self.registrations.insert(
            *registration_id,
            Registration {
                id: *registration_id,
                partner_id: *partner_id,
                company: customer.company.clone(),
                product_line: product_line.clone(),
                motion: *motion,
                kind: *kind,
                estimated_amount: estimated_amount.clone(),
                status: RegistrationStatus::Pending,
                certified: *certified,
                incumbent: *incumbent,
                submitted_at: *at,
                approval_due_at: *approval_due_at,
                sla_breach_recorded: false,
                expires_at: None,
                extensions: 0,
                reminded_for: None,
                last_touch: *at,
                inactive_flagged_at: None,
                appeal_until: None,
                appeal_filed: false,
                appeal_decided: false,
                stage: 0,
                attribution: Attribution::default(),
                won_amount: None,
                reversed_minor: 0,
                holds_slot: true,
                intro_due_at: *intro_due_at,
                intro_logged: false,
                referral_breach_recorded: false,
                transaction_reference: None,
                next_step: None,
                notes: BTreeSet::new(),
            },
        );
    }

    /// The vendor's review: approval starts protection, a decline frees the slot and
    /// opens the appeal window, an upheld appeal puts the registration back to pending
    /// with a fresh approval clock. The SLA breaches are recorded once, so they are not
    /// reported again.
    fn fold_review(&mut self, event: &Event) {
        match event {
            Event::RegistrationApproved {
                registration_id,
                expires_at,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Protected;
                r.expires_at = Some(*expires_at);
                r.last_touch = *at;
            }),
            Event::RegistrationDeclined {
                registration_id,
                appeal_until,
                ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Declined;
                r.appeal_until = Some(*appeal_until);
                r.holds_slot = false;
            }),
            Event::ApprovalSlaBreached {
                registration_id, ..
            } => self.with_registration(registration_id, |r| r.sla_breach_recorded = true),
            Event::ReferralSlaBreached {
                registration_id, ..
            } => self.with_registration(registration_id, |r| r.referral_breach_recorded = true),
            Event::AppealFiled {
                registration_id, ..
            } => self.with_registration(registration_id, |r| r.appeal_filed = true),
            Event::AppealDecided {
                registration_id,
                upheld,
                approval_due_at,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.appeal_decided = true;
                if *upheld {
                    r.status = RegistrationStatus::Pending;
                    r.holds_slot = true;
                    r.approval_due_at = approval_due_at.unwrap_or(*at);
                    r.sla_breach_recorded = false;
                    r.last_touch = *at;
                }
            }),
            _ => {}
        }
    }

    /// The protection window: extended (counted, so the policy's limit holds), reminded
    /// about once per expiry, expired (the slot is freed), flagged inactive, or handed to
    /// another partner (who is not the incumbent, and whose deal counts as touched).
    fn fold_protection(&mut self, event: &Event) {
        match event {
            Event::ProtectionExtended {
                registration_id,
                expires_at,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.extensions += 1;
                r.expires_at = Some(*expires_at);
                r.last_touch = *at;
            }),
            Event::ProtectionExpired {
                registration_id, ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Expired;
                r.holds_slot = false;
            }),
            Event::ExpiryReminderSent {
                registration_id,
                expires_at,
                ..
            } => self.with_registration(registration_id, |r| r.reminded_for = Some(*expires_at)),
            Event::RegistrationFlaggedInactive {
                registration_id,
                at,
                ..
            } => self.with_registration(registration_id, |r| r.inactive_flagged_at = Some(*at)),
            Event::RegistrationReassigned {
                registration_id,
                to,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.partner_id = *to;
                r.incumbent = false;
                r.last_touch = *at;
                r.inactive_flagged_at = None;
            }),
            _ => {}
        }
    }

    /// The deal: its stages, and its end. Every end but a win only closes the
    /// registration and frees its slot; a win also makes the partner the product line's
    /// incumbent, sets the renewal date when one is known, and drops any reassigned
    /// renewal owner (the new incumbent owns the renewal). Reversed revenue accumulates.
    fn fold_deal(&mut self, event: &Event) {
        match event {
            Event::StageAdvanced {
                registration_id,
                from_stage,
                to_stage,
                evidence,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                stage_advanced(r, from_stage, to_stage, evidence, *at)
            }),
            Event::DealWon {
                registration_id,
                partner_id,
                product_line,
                amount,
                renewal_date,
                ..
            } => {
                self.with_registration(registration_id, |r| {
                    r.status = RegistrationStatus::Won;
                    r.won_amount = Some(amount.clone());
                    r.holds_slot = false;
                });
                self.incumbents.insert(product_line.clone(), *partner_id);
                if let Some(date) = renewal_date {
                    self.renewal_dates.insert(product_line.clone(), *date);
                }
                self.renewals.remove(product_line);
            }
            Event::DealLost {
                registration_id, ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Lost;
                r.holds_slot = false;
            }),
            Event::RevenueReversed {
                registration_id,
                amount,
                ..
            } => {
                self.with_registration(registration_id, |r| r.reversed_minor += amount.amount_minor)
            }
            Event::RegistrationWithdrawn {
                registration_id, ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Withdrawn;
                r.holds_slot = false;
            }),
            Event::RegistrationReleased {
                registration_id, ..
            } => self.with_registration(registration_id, |r| {
                r.status = RegistrationStatus::Released;
                r.holds_slot = false;
            }),
            _ => {}
        }
    }

    /// Attribution: the sourcing partner and the influencers with their percentages.
    /// Setting either counts as touching the deal; removing an influencer does not.
    fn fold_attribution(&mut self, event: &Event) {
        match event {
            Event::SourcingPartnerSet {
                registration_id,
                partner_id,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.attribution.sourcing = Some(*partner_id);
                r.last_touch = *at;
            }),
            Event::InfluencerAdded {
                registration_id,
                partner_id,
                percent,
                at,
                ..
            } => self.with_registration(registration_id, |r| {
                r.attribution.influencers.insert(*partner_id, *percent);
                r.last_touch = *at;
            }),
            Event::InfluencerRemoved {
                registration_id,
                partner_id,
                ..
            } => self.with_registration(registration_id, |r| {
                r.attribution.influencers.remove(partner_id);
            }),
            _ => {}
        }
    }

    /// Conflicts and the facts that raise them: direct-sales opportunities and named
    /// accounts (either can open the account, so they set its key), then each conflict's
    /// life: detected open, acknowledged, planned, resolved or closed by itself, with the
    /// SLAs it breached recorded once.
    fn fold_conflicts(&mut self, event: &Event) {
        match event {
            Event::DirectOpportunityRecorded {
                account,
                opportunity_id,
                owner,
                product_line,
                amount,
                ..
            } => {
                self.key = Some(account.clone());
                self.direct_opportunities.push(DirectOpportunity {
                    id: *opportunity_id,
                    owner: owner.clone(),
                    product_line: product_line.clone(),
                    amount: amount.clone(),
                });
            }
            Event::NamedAccountAssigned {
                account,
                partner_id,
                exclusive,
                ..
            } => {
                self.key = Some(account.clone());
                self.named_account = Some(NamedAccount {
                    partner_id: *partner_id,
                    exclusive: *exclusive,
                });
            }
            Event::ConflictDetected {
                conflict_id,
                kind,
                product_line,
                parties,
                acknowledge_by,
                resolution_plan_by,
                at,
                ..
            } => {
                self.conflicts.insert(
                    conflict_id.clone(),
                    Conflict {
                        id: conflict_id.clone(),
                        kind: *kind,
                        product_line: product_line.clone(),
                        parties: parties.clone(),
                        status: ConflictStatus::Open,
                        detected_at: *at,
                        acknowledge_by: *acknowledge_by,
                        resolution_plan_by: *resolution_plan_by,
                        breached: Vec::new(),
                        plan: None,
                    },
                );
            }
            Event::ConflictSlaBreached {
                conflict_id, sla, ..
            } => self.with_conflict(conflict_id, |c| c.breached.push(*sla)),
            Event::ConflictAcknowledged { conflict_id, .. } => {
                self.with_conflict(conflict_id, |c| c.status = ConflictStatus::Acknowledged)
            }
            Event::ConflictResolutionPlanRecorded {
                conflict_id,
                owner,
                steps,
                resolve_by,
                ..
            } => self.with_conflict(conflict_id, |c| {
                c.plan = Some((owner.clone(), steps.clone(), *resolve_by))
            }),
            Event::ConflictResolved { conflict_id, .. } => {
                self.with_conflict(conflict_id, |c| c.status = ConflictStatus::Resolved)
            }
            Event::ConflictClosed { conflict_id, .. } => {
                self.with_conflict(conflict_id, |c| c.status = ConflictStatus::Closed)
            }
            _ => {}
        }
    }

    /// Applies `change` to a conflict of this account; like [`Self::with_registration`],
    /// an event naming an unknown conflict changes nothing.
    fn with_conflict(&mut self, id: &ConflictId, change: impl FnOnce(&mut Conflict)) {
        if let Some(c) = self.conflicts.get_mut(id) {
            change(c);
        }
    }

    /// Renewal ownership: a flagged review is remembered so it is flagged once per
    /// renewal date; a confirmation records the owner for that date; a reassignment
    /// records the new owner, not yet confirmed for any date.
    fn fold_renewals(&mut self, event: &Event) {
        match event {
            Event::RenewalOwnershipReviewDue {
                product_line,
                renewal_date,
                ..
            } => {
                self.renewal_reviews
                    .push((product_line.clone(), *renewal_date));
            }
            Event::RenewalOwnershipConfirmed {
                product_line,
                partner_id,
                renewal_date,
                ..
            } => {
                self.renewals.insert(
                    product_line.clone(),
                    RenewalOwnership {
                        owner: *partner_id,
                        confirmed_for: Some(*renewal_date),
                    },
                );
            }
            Event::RenewalOwnershipReassigned {
                product_line, to, ..
            } => {
                self.renewals.insert(
                    product_line.clone(),
                    RenewalOwnership {
                        owner: *to,
                        confirmed_for: None,
                    },
                );
            }
            _ => {}
        }
    }
}

/// A stage advance, found by the stage's name rather than by counting: after a win
/// recorded before wins waited for the closing stage, the first post-sale stage can lie
/// more than one step ahead. Leaving a referral's first stage (Intro Logged) stops its
/// intro clock; Procurement's exit may carry the marketplace transaction reference. Any
/// advance touches the deal and clears an inactivity flag.
fn stage_advanced(
    r: &mut Registration,
    from_stage: &str,
    to_stage: &str,
    evidence: &StageEvidence,
    at: DateTime<Utc>,
) {
    let names = crate::stages::stages(r.motion);
    r.stage = names
        .iter()
        .position(|s| *s == to_stage)
        .unwrap_or(r.stage + 1);
    if r.motion == crate::motion::Motion::Referral && from_stage == names[0] {
        r.intro_logged = true;
    }
    if let Some(reference) = &evidence.transaction_reference {
        r.transaction_reference = Some(reference.clone());
    }
    r.last_touch = at;
    r.inactive_flagged_at = None;
}
