//! Partners: the facts the rules read (motions, tier, certifications, territories,
//! capacity, status) and the decisions on the partner boundary.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, VendorRole};
use crate::command::{OnboardPartner, RecordCommissionPayout};
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{normalise_product_line, AccountKey, AnnouncementId, PartnerId, RegistrationId};
use crate::motion::{Motion, Tier};
use crate::policy::Policy;
use crate::route::PartnerCommand;
use crate::subscription;
use crate::values::{OpenSlot, Territory};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    /// Not onboarded (no events yet).
    #[default]
    Unknown,
    /// Onboarded: the agreement is signed and the partner may register. (Onboarding and
    /// activation are one step here; the onboarding checklist lives in the PRM, not in
    /// the registration engine.)
    Active,
    Offboarded,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartnerState {
    pub partner_id: Option<PartnerId>,
    pub name: String,
    pub motions: Vec<Motion>,
    pub tier: Option<Tier>,
    pub territories: Vec<Territory>,
    pub capacity: u32,
    pub status: PartnerStatus,
    /// Product line -> last day the certification is valid.
    pub certifications: BTreeMap<String, NaiveDate>,
    /// Open registrations counted against capacity.
    pub open_slots: BTreeMap<RegistrationId, AccountKey>,
    /// How many slots were ever taken: the n-th taken is slot n.
    #[serde(default)]
    pub slots_taken: u64,
    /// The number of the slot each open registration holds.
    #[serde(default)]
    pub slot_numbers: BTreeMap<RegistrationId, u64>,
    /// The announcements the partner read, acknowledged, was chased for.
    #[serde(default)]
    pub receipts: PartnerReceipts,
}

impl PartnerState {
    pub fn status(&self) -> PartnerStatus {
        self.status
    }

    pub fn is_active(&self) -> bool {
        self.status == PartnerStatus::Active
    }

    pub fn tier(&self) -> Tier {
        self.tier.unwrap_or(Tier::Registered)
    }

    /// The number of the slot `registration` holds, if it holds one.
    pub fn slot_of(&self, registration: &RegistrationId) -> Option<u64> {
        self.open_slots
            .contains_key(registration)
            .then(|| self.slot_numbers.get(registration).copied().unwrap_or(0))
    }

    /// Whether another registration than `registration` would exceed the capacity: the
    /// slot a registration already holds is not counted twice.
    pub fn at_capacity(&self, registration: &RegistrationId) -> bool {
        !self.open_slots.contains_key(registration)
            && self.open_slots.len() >= self.capacity as usize
    }

    /// Certified in `product_line` on the day of `now`.
    pub fn is_certified(&self, product_line: &str, now: DateTime<Utc>) -> bool {
        self.certifications
            .get(product_line)
            .is_some_and(|expires_on| now.date_naive() <= *expires_on)
    }

    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::PartnerOnboarded {
                partner_id,
                name,
                motions,
                tier,
                territories,
                capacity,
                ..
            } => {
                self.partner_id = Some(*partner_id);
                self.name = name.clone();
                self.motions = motions.clone();
                self.tier = Some(*tier);
                self.territories = territories.clone();
                self.capacity = *capacity;
                self.status = PartnerStatus::Active;
            }
            Event::PartnerTierChanged { to, .. } => self.tier = Some(*to),
            Event::PartnerCertified {
                product_line,
                expires_on,
                ..
            } => {
                self.certifications
                    .insert(product_line.clone(), *expires_on);
            }
            Event::PartnerTerritoriesSet { territories, .. } => {
                self.territories = territories.clone()
            }
            Event::PartnerCapacitySet { capacity, .. } => self.capacity = *capacity,
            Event::PartnerOffboarded { .. } => self.status = PartnerStatus::Offboarded,
            Event::CapacitySlotTaken {
                registration_id,
                account,
                ..
            } => {
                self.slots_taken += 1;
                self.open_slots.insert(*registration_id, account.clone());
                self.slot_numbers.insert(*registration_id, self.slots_taken);
            }
            Event::CapacitySlotReleased {
                registration_id,
                slot,
                ..
            } => {
                let held = self.slot_of(registration_id);
                if slot.is_none() || *slot == held {
                    self.open_slots.remove(registration_id);
                    self.slot_numbers.remove(registration_id);
                }
            }
            Event::AnnouncementRead { .. }
            | Event::AnnouncementAcknowledged { .. }
            | Event::AnnouncementChased { .. } => self.receipts.evolve(event),
            _ => {}
        }
    }
}

/// What a partner did with announcements: its fold on the partner stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartnerReceipts {
    #[serde(default)]
    pub read: BTreeSet<AnnouncementId>,
    #[serde(default)]
    pub acknowledged: BTreeSet<AnnouncementId>,
    #[serde(default)]
    pub chased: BTreeSet<AnnouncementId>,
}

impl PartnerReceipts {
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::AnnouncementRead {
                announcement_id, ..
            } => {
                self.read.insert(*announcement_id);
            }
            Event::AnnouncementAcknowledged {
                announcement_id, ..
            } => {
                self.acknowledged.insert(*announcement_id);
            }
            Event::AnnouncementChased {
                announcement_id, ..
            } => {
                self.chased.insert(*announcement_id);
            }
            _ => {}
        }
    }
}

fn vendor_admin(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_role(VendorRole::ChannelManager) || actor.is_role(VendorRole::RevOps) {
        Ok(())
    } else {
        refuse(
            RejectionCode::NotAuthorised,
            format!(
                "{} cannot manage partner agreements; ask a channel manager",
                actor.label()
            ),
        )
    }
}

fn non_empty(value: &str, field: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        Err(DomainError::new(
            RejectionCode::MissingField,
            format!("`{field}` is required"),
        )
        .with_details(serde_json::json!({ "field": field })))
    } else {
        Ok(())
    }
}

pub(crate) fn decide(
    state: &PartnerState,
    command: PartnerCommand<'_>,
    actor: &Actor,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        PartnerCommand::AcknowledgeAnnouncement(_)
        | PartnerCommand::RecordAnnouncementRead(_)
        | PartnerCommand::ChaseAnnouncement(_) => refuse(
            RejectionCode::WrongBoundary,
            "announcement receipts are decided by the announcement module",
        ),
        PartnerCommand::SetAlertSubscription(c) => {
            exists(state)?;
            subscription::decide(c, actor, now)
        }
        PartnerCommand::RecordPayout(c) => record_payout(state, c, actor, now),
        PartnerCommand::Onboard(c) => {
            vendor_admin(actor)?;
            onboard(state, c, now)
        }
        PartnerCommand::ChangeTier(c) => {
            vendor_admin(actor)?;
            exists(state)?;
            non_empty(&c.reason, "reason")?;
            if state.tier == Some(c.tier) {
                return refuse(
                    RejectionCode::InvalidTransition,
                    format!("the partner is already {:?}", c.tier),
                );
            }
            Ok(vec![Event::PartnerTierChanged {
                partner_id: c.partner_id,
                from: state.tier(),
                to: c.tier,
                reason: c.reason.clone(),
                at: now,
            }])
        }
        PartnerCommand::Certify(c) => {
            vendor_admin(actor)?;
            exists(state)?;
            non_empty(&c.product_line, "product_line")?;
            if c.expires_on < now.date_naive() {
                return Err(DomainError::new(
                    RejectionCode::InvalidField,
                    "the certification already expired; send the new expiry date",
                )
                .with_details(serde_json::json!({ "field": "expires_on" })));
            }
            let horizon = policy.horizons.certification_days;
            if c.expires_on > now.date_naive() + chrono::Duration::days(i64::from(horizon)) {
                return Err(DomainError::new(
                    RejectionCode::InvalidField,
                    format!("`expires_on` is more than {horizon} days ahead (the policy's horizon for certifications); check the year"),
                )
                .with_details(serde_json::json!({ "field": "expires_on" })));
            }
            Ok(vec![Event::PartnerCertified {
                partner_id: c.partner_id,
                product_line: normalise_product_line(&c.product_line),
                expires_on: c.expires_on,
                at: now,
            }])
        }
        PartnerCommand::SetTerritories(c) => {
            vendor_admin(actor)?;
            exists(state)?;
            Ok(vec![Event::PartnerTerritoriesSet {
                partner_id: c.partner_id,
                territories: c.territories.clone(),
                at: now,
            }])
        }
        PartnerCommand::SetCapacity(c) => {
            vendor_admin(actor)?;
            exists(state)?;
            positive_capacity(c.capacity)?;
            Ok(vec![Event::PartnerCapacitySet {
                partner_id: c.partner_id,
                capacity: c.capacity,
                at: now,
            }])
        }
        PartnerCommand::Offboard(c) => {
            vendor_admin(actor)?;
            exists(state)?;
            non_empty(&c.reason, "reason")?;
            let open_registrations = state
                .open_slots
                .iter()
                .map(|(registration_id, account)| OpenSlot {
                    registration_id: *registration_id,
                    account: account.clone(),
                })
                .collect();
            Ok(vec![Event::PartnerOffboarded {
                partner_id: c.partner_id,
                reason: c.reason.clone(),
                open_registrations,
                at: now,
            }])
        }
    }
}

/// Agreements change only while the partner is in the program.
fn exists(state: &PartnerState) -> Result<(), DomainError> {
    match state.status {
        PartnerStatus::Unknown => refuse(
            RejectionCode::UnknownPartner,
            "this partner is not onboarded; onboard it first",
        ),
        PartnerStatus::Offboarded => refuse(
            RejectionCode::PartnerNotActive,
            "this partner was offboarded; its record is closed",
        ),
        PartnerStatus::Active => Ok(()),
    }
}

fn positive_capacity(capacity: u32) -> Result<(), DomainError> {
    if capacity == 0 {
        Err(DomainError::new(
            RejectionCode::InvalidField,
            "capacity must be at least 1 open registration",
        )
        .with_details(serde_json::json!({ "field": "capacity" })))
    } else {
        Ok(())
    }
}

fn onboard(
    state: &PartnerState,
    c: &OnboardPartner,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if state.status != PartnerStatus::Unknown {
        return refuse(
            RejectionCode::PartnerExists,
            format!("partner {} is already onboarded", c.partner_id),
        );
    }
    non_empty(&c.name, "name")?;
    if c.motions.is_empty() {
        return Err(DomainError::new(
            RejectionCode::MissingField,
            "a partner needs at least one motion",
        )
        .with_details(serde_json::json!({ "field": "motions" })));
    }
    positive_capacity(c.capacity)?;
    let mut motions = c.motions.clone();
    motions.sort();
    motions.dedup();
    Ok(vec![Event::PartnerOnboarded {
        partner_id: c.partner_id,
        name: c.name.trim().to_string(),
        motions,
        tier: c.tier,
        territories: c.territories.clone(),
        capacity: c.capacity,
        at: now,
    }])
}

/// Finance pays out, also after offboarding: balances outlive the agreement.
fn record_payout(
    state: &PartnerState,
    c: &RecordCommissionPayout,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if !actor.is_role(VendorRole::RevOps) {
        return refuse(
            RejectionCode::NotAuthorised,
            "commission payouts are recorded by RevOps/finance",
        );
    }
    if state.status == PartnerStatus::Unknown {
        return refuse(
            RejectionCode::UnknownPartner,
            "this partner is not onboarded",
        );
    }
    non_empty(&c.reference, "reference")?;
    c.amount.require_positive("amount")?;
    Ok(vec![Event::CommissionPaidOut {
        partner_id: c.partner_id,
        amount: c.amount.clone(),
        reference: c.reference.clone(),
        at: now,
    }])
}

/// Takes a capacity slot for `registration` of `account` on the partner's stream: the
/// reservation the engine makes before the account records what needs the slot. Nothing
/// to take when the registration holds one already (a retried command). Decided at the
/// partner stream's exact version, this is where capacity is exact: two accounts racing
/// for the last slot cannot both get it.
pub fn take_slot(
    state: &PartnerState,
    registration: RegistrationId,
    account: &AccountKey,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let Some(partner_id) = state.partner_id else {
        return refuse(
            RejectionCode::UnknownPartner,
            "the partner is not onboarded",
        );
    };
    if !state.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "the partner is not active in the program",
        );
    }
    if state.open_slots.contains_key(&registration) {
        return Ok(Vec::new());
    }
    if state.at_capacity(&registration) {
        return Err(DomainError::new(
            RejectionCode::CapacityReached,
            format!(
                "the partner has {} open registrations, its capacity; close or withdraw one first",
                state.open_slots.len()
            ),
        )
        .with_details(serde_json::json!({ "capacity": state.capacity })));
    }
    Ok(vec![Event::CapacitySlotTaken {
        partner_id,
        registration_id: registration,
        account: account.clone(),
        at: now,
    }])
}

/// Gives back slot `slot` of `registration`, if the registration still holds that very
/// slot (a newer one, taken after the slot was given up on, is left alone).
pub fn release_slot(
    state: &PartnerState,
    registration: RegistrationId,
    slot: u64,
    now: DateTime<Utc>,
) -> Vec<Event> {
    match (state.partner_id, state.open_slots.get(&registration)) {
        (Some(partner_id), Some(account)) if state.slot_of(&registration) == Some(slot) => {
            vec![Event::CapacitySlotReleased {
                partner_id,
                registration_id: registration,
                account: account.clone(),
                slot: Some(slot),
                at: now,
            }]
        }
        _ => Vec::new(),
    }
}
