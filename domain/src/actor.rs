//! Who sends a command. Authorisation is decided in the domain (invariant 7): the actor is
//! an input like the time.

use serde::{Deserialize, Serialize};

use crate::ids::PartnerId;

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
pub enum VendorRole {
    /// Approves, declines, extends, resolves conflicts.
    ChannelManager,
    /// Commission rules, payouts, revenue events.
    RevOps,
    /// Reads everything, writes nothing.
    Auditor,
    /// Owns direct opportunities.
    DirectSales,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// A partner user, acting for its own organisation only.
    Partner { partner_id: PartnerId, user: String },
    /// A vendor employee in a role.
    Vendor { role: VendorRole, user: String },
    /// The engine itself (timekeeper, offboarding) or an adapter (CRM sync).
    System { component: String },
}

impl Actor {
    pub fn is_role(&self, wanted: VendorRole) -> bool {
        matches!(self, Actor::Vendor { role, .. } if *role == wanted)
    }

    pub fn is_system(&self) -> bool {
        matches!(self, Actor::System { .. })
    }

    pub fn partner(&self) -> Option<PartnerId> {
        match self {
            Actor::Partner { partner_id, .. } => Some(*partner_id),
            _ => None,
        }
    }

    /// A short label for messages.
    pub fn label(&self) -> String {
        match self {
            Actor::Partner { partner_id, user } => format!("partner {partner_id} ({user})"),
            Actor::Vendor { role, user } => format!("{role:?} {user}"),
            Actor::System { component } => format!("system {component}"),
        }
    }
}
