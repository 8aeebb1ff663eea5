//! Value types that commands, events and states share: the customer and its contact, stage
//! evidence, territories, and the vocabulary of conflicts.
//!
//! Why a module of their own: each of these is read by commands *and* events *and* states.
//! Kept beside their first user they made `command`, `event` and `partner` import each
//! other; here they depend on nothing but ids, so every import in the domain runs one way
//! (values → event/command → states → decisions).

use serde::{Deserialize, Serialize};

use crate::ids::{AccountKey, OpportunityId, PartnerId, RegistrationId};

/// Someone at the end customer the partner works with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// The end customer as the partner registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub company: String,
    pub domain: String,
    pub contact: Contact,
}

/// Evidence that a stage's exit criteria are met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageEvidence {
    #[serde(default)]
    pub note: String,
    /// The quoted discount, whole percent (Configure & Quote).
    #[serde(default)]
    pub discount_percent: Option<u32>,
    #[serde(default)]
    pub next_step: Option<String>,
}

/// Where a partner may sell: a region and a vertical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Territory {
    pub region: String,
    pub vertical: String,
}

/// The kinds of channel conflict (docs/RULES.md, "Conflict types and signals").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Two partners pursue the same account and product line.
    Horizontal,
    /// Direct sales works an account a partner registered.
    Vertical,
    /// Different motions (referral, reseller, marketplace, SI) overlap on one account.
    MultiChannel,
    /// A renewal is claimed where ownership is not clear.
    RenewalOwnership,
    /// Price protection of two registrations would overlap.
    OverlappingProtection,
}

/// The two SLAs of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictSla {
    /// Acknowledged within 24 hours.
    Acknowledgement,
    /// A resolution plan within 5 business days.
    ResolutionPlan,
}

/// Who is in a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConflictParty {
    Registration {
        registration_id: RegistrationId,
        partner_id: PartnerId,
    },
    DirectSales {
        opportunity_id: OpportunityId,
        owner: String,
    },
}

/// A registration a partner leaves open when it is offboarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSlot {
    pub registration_id: RegistrationId,
    pub account: AccountKey,
}
