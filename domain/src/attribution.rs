//! Attribution: who gets credit for a deal. At most one sourcing partner; any number of
//! influencers with whole-percent shares; the total never above 100. The sourcing partner's
//! share is what the influencers leave (100 minus their total).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::PartnerId;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attribution {
    pub sourcing: Option<PartnerId>,
    /// Influencer -> whole percent.
    pub influencers: BTreeMap<PartnerId, u32>,
}

impl Attribution {
    pub fn influenced_total(&self) -> u32 {
        self.influencers.values().sum()
    }

    /// The sourcing partner's share in percent (0 when there is none).
    pub fn sourcing_share(&self) -> u32 {
        if self.sourcing.is_some() {
            100u32.saturating_sub(self.influenced_total())
        } else {
            0
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sourcing.is_none() && self.influencers.is_empty()
    }

    /// Whether `partner` has any credit on the deal.
    pub fn credits(&self, partner: PartnerId) -> bool {
        self.sourcing == Some(partner) || self.influencers.contains_key(&partner)
    }
}
