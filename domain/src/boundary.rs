//! Consistency boundaries: each is one stream, and every decision reads and writes one
//! boundary (plus capacity slots of the partners it names).

use serde::{Deserialize, Serialize};

use crate::ids::{AccountKey, PartnerId};

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Boundary {
    /// The program: its policy versions.
    Program,
    /// A partner organisation: agreement, tier, certifications, capacity slots.
    Partner(PartnerId),
    /// A customer account: its registrations, direct opportunities, conflicts, renewal
    /// ownership. "One protected registration per customer and product line" is decided here.
    Account(AccountKey),
}

impl Boundary {
    pub fn stream_name(&self) -> String {
        match self {
            Boundary::Program => "program".to_string(),
            Boundary::Partner(id) => format!("partner-{id}"),
            Boundary::Account(key) => format!("account-{key}"),
        }
    }

    pub fn from_stream_name(name: &str) -> Option<Boundary> {
        if name == "program" {
            return Some(Boundary::Program);
        }
        if let Some(id) = name.strip_prefix("partner-") {
            return id.parse().ok().map(Boundary::Partner);
        }
        name.strip_prefix("account-")
            .filter(|k| !k.is_empty())
            .map(|k| Boundary::Account(AccountKey(k.to_string())))
    }
}
