//! Partners: the facts the rules read (motions, tier, certifications, territories,
//! capacity, status) and the decisions on the partner boundary.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, VendorRole};
use crate::command::Command;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::{Event, OpenSlot};
use crate::ids::{AccountKey, PartnerId, RegistrationId};
use crate::motion::{Motion, Tier};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Territory {
    pub region: String,
    pub vertical: String,
}

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
                self.open_slots.insert(*registration_id, account.clone());
            }
            Event::CapacitySlotReleased {
                registration_id, ..
            } => {
                self.open_slots.remove(registration_id);
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
    command: &Command,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if let Command::RecordCommissionPayout {
        partner_id,
        amount,
        reference,
    } = command
    {
        // Finance pays out, also after offboarding: balances outlive the agreement.
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
        non_empty(reference, "reference")?;
        if amount.amount_minor <= 0 {
            return Err(DomainError::new(
                RejectionCode::InvalidField,
                "a payout amount must be positive",
            )
            .with_details(serde_json::json!({ "field": "amount" })));
        }
        return Ok(vec![Event::CommissionPaidOut {
            partner_id: *partner_id,
            amount: amount.clone(),
            reference: reference.clone(),
            at: now,
        }]);
    }
    vendor_admin(actor)?;
    let exists = || {
        if state.status == PartnerStatus::Unknown {
            refuse(
                RejectionCode::UnknownPartner,
                "this partner is not onboarded; onboard it first",
            )
        } else if state.status == PartnerStatus::Offboarded {
            refuse(
                RejectionCode::PartnerNotActive,
                "this partner was offboarded; its record is closed",
            )
        } else {
            Ok(())
        }
    };
    match command {
        Command::OnboardPartner {
            partner_id,
            name,
            motions,
            tier,
            territories,
            capacity,
        } => {
            if state.status != PartnerStatus::Unknown {
                return refuse(
                    RejectionCode::PartnerExists,
                    format!("partner {partner_id} is already onboarded"),
                );
            }
            non_empty(name, "name")?;
            if motions.is_empty() {
                return Err(DomainError::new(
                    RejectionCode::MissingField,
                    "a partner needs at least one motion",
                )
                .with_details(serde_json::json!({ "field": "motions" })));
            }
            if *capacity == 0 {
                return Err(DomainError::new(
                    RejectionCode::InvalidField,
                    "capacity must be at least 1 open registration",
                )
                .with_details(serde_json::json!({ "field": "capacity" })));
            }
            let mut motions = motions.clone();
            motions.sort();
            motions.dedup();
            Ok(vec![Event::PartnerOnboarded {
                partner_id: *partner_id,
                name: name.trim().to_string(),
                motions,
                tier: *tier,
                territories: territories.clone(),
                capacity: *capacity,
                at: now,
            }])
        }
        Command::ChangePartnerTier {
            partner_id,
            tier,
            reason,
        } => {
            exists()?;
            non_empty(reason, "reason")?;
            if state.tier == Some(*tier) {
                return refuse(
                    RejectionCode::InvalidTransition,
                    format!("the partner is already {tier:?}"),
                );
            }
            Ok(vec![Event::PartnerTierChanged {
                partner_id: *partner_id,
                from: state.tier(),
                to: *tier,
                reason: reason.clone(),
                at: now,
            }])
        }
        Command::CertifyPartner {
            partner_id,
            product_line,
            expires_on,
        } => {
            exists()?;
            non_empty(product_line, "product_line")?;
            if *expires_on < now.date_naive() {
                return Err(DomainError::new(
                    RejectionCode::InvalidField,
                    "the certification already expired; send the new expiry date",
                )
                .with_details(serde_json::json!({ "field": "expires_on" })));
            }
            Ok(vec![Event::PartnerCertified {
                partner_id: *partner_id,
                product_line: crate::ids::normalise_product_line(product_line),
                expires_on: *expires_on,
                at: now,
            }])
        }
        Command::SetTerritories {
            partner_id,
            territories,
        } => {
            exists()?;
            Ok(vec![Event::PartnerTerritoriesSet {
                partner_id: *partner_id,
                territories: territories.clone(),
                at: now,
            }])
        }
        Command::SetCapacity {
            partner_id,
            capacity,
        } => {
            exists()?;
            if *capacity == 0 {
                return Err(DomainError::new(
                    RejectionCode::InvalidField,
                    "capacity must be at least 1",
                )
                .with_details(serde_json::json!({ "field": "capacity" })));
            }
            Ok(vec![Event::PartnerCapacitySet {
                partner_id: *partner_id,
                capacity: *capacity,
                at: now,
            }])
        }
        Command::OffboardPartner { partner_id, reason } => {
            exists()?;
            non_empty(reason, "reason")?;
            let open_registrations = state
                .open_slots
                .iter()
                .map(|(registration_id, account)| OpenSlot {
                    registration_id: *registration_id,
                    account: account.clone(),
                })
                .collect();
            Ok(vec![Event::PartnerOffboarded {
                partner_id: *partner_id,
                reason: reason.clone(),
                open_registrations,
                at: now,
            }])
        }
        _ => refuse(
            RejectionCode::WrongBoundary,
            "this command is not decided on a partner",
        ),
    }
}
