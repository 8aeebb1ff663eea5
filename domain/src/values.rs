//! Value types that commands, events and states share: the customer and its contact, stage
//! evidence, territories, and the vocabulary of conflicts.
//!
//! Why a module of their own: each of these is read by commands *and* events *and* states.
//! Kept beside their first user they made `command`, `event` and `partner` import each
//! other; here they depend on nothing but ids, so every import in the domain runs one way
//! (values → event/command → states → decisions).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountKey, OpportunityId, PartnerId, RegistrationId};
use crate::motion::{Motion, Tier};

/// Dates on the wire are `YYYY-MM-DD` exactly: four-digit year, zero-padded month and
/// day, nothing before or after. (chrono alone also reads `+10000-01-01` and `2026-9-5`;
/// two readers of one command must never disagree about the day it names.) Use with
/// `#[serde(deserialize_with = "strict_date")]` on input dates.
pub fn strict_date<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<chrono::NaiveDate, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(deserializer)?;
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(D::Error::custom(format!(
            "`{text}` is not a date written YYYY-MM-DD (e.g. 2026-09-05)"
        )));
    }
    chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|e| D::Error::custom(format!("`{text}` is not a calendar date ({e})")))
}

/// Someone at the end customer the partner works with: personal data (a name, an e-mail
/// address, a phone number), which the log never holds in clear (see [`ContactOnRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A contact as an event records it.
///
/// Why not the [`Contact`] itself: events are immutable, and a person may ask to be
/// erased. The engine stores the contact `sealed` (encrypted with a key of that person,
/// held outside the log); destroying the key (`dealreg forget`) leaves the event and its
/// hashes intact and the contact unreadable, which is then shown as `erased`. `clear` is
/// what a decision emits before the engine seals it, and what events written before
/// schema 3 hold (they cannot be erased without rewriting the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactOnRecord {
    Clear(Contact),
    Sealed(SealedContact),
    Erased(ErasedContact),
}

/// A contact encrypted under its person's key (ChaCha20-Poly1305; the person's id is the
/// associated data, so a ciphertext cannot be passed off as another person's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedContact {
    /// Whose key opens it: an id the key vault assigned, which says nothing about the person.
    pub person: uuid::Uuid,
    /// 12 bytes, hex.
    pub nonce: String,
    /// The contact's JSON, encrypted and authenticated, hex.
    pub ciphertext: String,
}

/// A sealed contact whose key was destroyed: what was there can no longer be read by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasedContact {
    pub person: uuid::Uuid,
}

impl ContactOnRecord {
    /// The e-mail address, when the contact is readable.
    pub fn email(&self) -> Option<&str> {
        match self {
            ContactOnRecord::Clear(c) => Some(&c.email),
            _ => None,
        }
    }
}

/// The end customer as the partner registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub company: String,
    pub domain: String,
    pub contact: Contact,
    /// Where the customer buys: checked against the partner's territories when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<String>,
}

impl Customer {
    /// The customer as a `registration_submitted` event records it: the contact in clear,
    /// for the engine to seal before the event is stored.
    pub fn on_record(&self) -> RegisteredCustomer {
        RegisteredCustomer {
            company: self.company.clone(),
            domain: self.domain.clone(),
            contact: ContactOnRecord::Clear(self.contact.clone()),
            region: self.region.clone(),
            vertical: self.vertical.clone(),
        }
    }
}

/// The end customer as a registration records it: [`Customer`] with its contact on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisteredCustomer {
    pub company: String,
    pub domain: String,
    pub contact: ContactOnRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<String>,
}

/// Evidence that a stage's exit criteria are met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageEvidence {
    #[serde(default)]
    pub note: String,
    /// The quoted discount, whole percent (Configure & Quote).
    #[serde(default)]
    pub discount_percent: Option<u32>,
    #[serde(default)]
    pub next_step: Option<String>,
    /// The vendor's owner who accepted the referred opportunity (referral Intro Logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_owner: Option<String>,
    /// The marketplace private offer's reference (marketplace Private Offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_reference: Option<String>,
    /// The marketplace transaction's reference (marketplace Procurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_reference: Option<String>,
    /// The joint success criteria agreed with the customer (services Solution Design).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_criteria: Option<String>,
    /// The integration the use case rests on (tech/ISV Integration Fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
}

/// Where a partner may sell: a region and a vertical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Territory {
    pub region: String,
    pub vertical: String,
}

impl Territory {
    /// Whether a customer in `region` (and `vertical`, when known) lies in this territory.
    /// Regions and verticals compare case-insensitively; a territory's region `global`
    /// covers every region and its vertical `any` every vertical.
    pub fn covers(&self, region: &str, vertical: Option<&str>) -> bool {
        let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        (same(&self.region, "global") || same(&self.region, region))
            && (same(&self.vertical, "any") || vertical.is_none_or(|v| same(&self.vertical, v)))
    }
}

/// The kinds of channel conflict (docs/RULES.md, "Conflict types and signals").
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
    /// Direct sales opened an opportunity on another product line of an account where a
    /// partner holds protection: a risk to watch, not a claim on the same deal.
    DirectOnProtectedAccount,
}

/// The two SLAs of a conflict.
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
pub enum ConflictSla {
    /// Acknowledged within 24 hours.
    Acknowledgement,
    /// A resolution plan within 5 business days.
    ResolutionPlan,
}

/// Who is in a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The partner whose named account the customer is.
    NamedPartner { partner_id: PartnerId },
    /// The partner that won the product line and owns its renewal, due on `renewal_date`.
    RenewalOwner {
        partner_id: PartnerId,
        renewal_date: NaiveDate,
    },
}

/// A registration a partner leaves open when it is offboarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpenSlot {
    pub registration_id: RegistrationId,
    pub account: AccountKey,
}

/// Who an announcement is for. Empty lists do not narrow: an audience with no tiers,
/// motions or partners named reaches every partner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub motions: Vec<Motion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<PartnerId>,
}

impl Audience {
    /// Whether a partner with these facts is in the audience: it is named, or (when no
    /// partner is named) it has one of the tiers and one of the motions named.
    pub fn reaches(&self, partner: PartnerId, tier: Tier, motions: &[Motion]) -> bool {
        if !self.partners.is_empty() {
            return self.partners.contains(&partner);
        }
        let tier_ok = self.tiers.is_empty() || self.tiers.contains(&tier);
        let motion_ok = self.motions.is_empty() || self.motions.iter().any(|m| motions.contains(m));
        tier_ok && motion_ok
    }
}

/// Quiet hours, in UTC: alerts falling between `start_hour` and `end_hour` wait until
/// `end_hour` (a window may wrap midnight: 20 to 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start_hour: u8,
    pub end_hour: u8,
}

/// Whether a note is for the partner's eyes too, or the vendor's only.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NoteVisibility {
    /// The owning partner and the vendor see it.
    #[default]
    Partner,
    /// The vendor only: never in a partner's view, reply or alert.
    Internal,
}
