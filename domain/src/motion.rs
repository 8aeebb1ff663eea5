//! Partner motions, tiers and deal kinds: the vocabulary every rule is written in.

use serde::{Deserialize, Serialize};

/// How a partner makes money with the vendor.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    Referral,
    Reseller,
    Marketplace,
    /// Services-led: SIs and MSPs.
    Services,
    TechIsv,
}

impl Motion {
    pub const ALL: [Motion; 5] = [
        Motion::Referral,
        Motion::Reseller,
        Motion::Marketplace,
        Motion::Services,
        Motion::TechIsv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Motion::Referral => "referral",
            Motion::Reseller => "reseller",
            Motion::Marketplace => "marketplace",
            Motion::Services => "services",
            Motion::TechIsv => "tech_isv",
        }
    }
}

/// Partner tier; the order is the priority order (`Platinum` highest).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Registered,
    Silver,
    Gold,
    Platinum,
}

/// What the registered deal is for the customer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DealKind {
    #[default]
    NewBusiness,
    Renewal,
    Expansion,
}
