//! Pipeline views: the vendor's full view of every registration, and each partner's view of
//! its own registrations with safe fields only.
//!
//! Why two types rather than one with optional fields: a partner view is built from
//! [`PartnerRow`], which has no field that could carry pricing, discounts, internal notes,
//! attribution or another partner's identity. What is not in the type cannot leak
//! (docs/ARCHITECTURE.md, invariant 7; docs/RULES.md, "Visibility").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dealreg_domain::stages::stage_name;
use dealreg_domain::Position;
use dealreg_domain::{AccountKey, Attribution, Event, Money, Motion, PartnerId, RegistrationId};
use serde::{Deserialize, Serialize};

use crate::table::{Scope, Table, Tables, TablesMut};
use crate::Projection;

/// Where a registration's protection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionStatus {
    /// Submitted, not decided yet.
    AwaitingDecision,
    Protected,
    /// Protected, and the expiry reminder has gone out.
    ExpiringSoon,
    Expired,
    /// Closed for another reason (declined, withdrawn, won, lost, released).
    Ended,
}

/// Everything the vendor knows about one registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VendorRow {
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub partner: String,
    pub account: AccountKey,
    pub company: String,
    pub product_line: String,
    pub motion: Motion,
    pub stage: String,
    pub status: String,
    pub protection: ProtectionStatus,
    pub protection_expires_at: Option<DateTime<Utc>>,
    pub next_step: Option<String>,
    pub estimated_amount: Money,
    pub won_amount: Option<Money>,
    pub last_quoted_discount_percent: Option<u32>,
    pub attribution: Attribution,
    /// Rationales and reasons recorded by the vendor: internal notes, never shown to partners.
    pub internal_notes: Vec<String>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a partner may see of its own registration: stage, owner, next step, protection
/// status and expiry, motion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
// The published schema closes the row (`additionalProperties: false`): a partner client
// can then refuse any field that is not partner-safe.
#[schemars(deny_unknown_fields)]
pub struct PartnerRow {
    pub registration_id: RegistrationId,
    pub account: AccountKey,
    pub company: String,
    pub product_line: String,
    pub motion: Motion,
    pub stage: String,
    pub status: String,
    /// The partner organisation that owns the registration (the viewer itself).
    pub owner: String,
    pub next_step: Option<String>,
    pub protection: ProtectionStatus,
    pub protection_expires_at: Option<DateTime<Utc>>,
}

impl From<&VendorRow> for PartnerRow {
    fn from(v: &VendorRow) -> Self {
        PartnerRow {
            registration_id: v.registration_id,
            account: v.account.clone(),
            company: v.company.clone(),
            product_line: v.product_line.clone(),
            motion: v.motion,
            stage: v.stage.clone(),
            status: v.status.clone(),
            owner: v.partner.clone(),
            next_step: v.next_step.clone(),
            protection: v.protection,
            protection_expires_at: v.protection_expires_at,
        }
    }
}

/// Rows grouped by motion, then stage.
pub type Grouped<R> = BTreeMap<Motion, BTreeMap<String, Vec<R>>>;

/// Vendor rows belong to their registration's partner (its feed, its queries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByOwner;

impl Scope<VendorRow> for ByOwner {
    fn scope(row: &VendorRow) -> Option<String> {
        Some(row.partner_id.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    #[serde(skip)]
    partners: Table<PartnerId, String>,
    #[serde(skip)]
    rows: Table<RegistrationId, VendorRow, ByOwner>,
    last_position: Position,
}

impl Pipeline {
    /// The vendor's view: every registration, every field.
    pub fn vendor_view(&self) -> Grouped<VendorRow> {
        group(self.rows.values().cloned())
    }

    /// One partner's view: its own registrations, safe fields only.
    pub fn partner_view(&self, partner: PartnerId) -> Grouped<PartnerRow> {
        group(self.partner_rows(partner))
    }

    /// One partner's registrations as it may see them (safe fields only), in registration
    /// id order: the one place a partner's rows are chosen, whole view or page of it.
    pub fn partner_rows(&self, partner: PartnerId) -> impl Iterator<Item = PartnerRow> + '_ {
        self.rows
            .values()
            .filter(move |r| r.partner_id == partner)
            .map(PartnerRow::from)
    }

    /// Every registration's row, in registration id order.
    pub fn rows(&self) -> impl Iterator<Item = &VendorRow> {
        self.rows.values()
    }

    pub fn partners(&self) -> impl Iterator<Item = (&PartnerId, &String)> {
        self.partners.iter()
    }

    pub fn last_position(&self) -> Position {
        self.last_position
    }
}

/// A row that can be grouped by motion and stage (a vendor's or a partner's).
pub trait Grouping {
    fn motion(&self) -> Motion;
    fn stage(&self) -> &str;
}

impl Grouping for VendorRow {
    fn motion(&self) -> Motion {
        self.motion
    }
    fn stage(&self) -> &str {
        &self.stage
    }
}

impl<R: Grouping> Grouping for &R {
    fn motion(&self) -> Motion {
        (**self).motion()
    }
    fn stage(&self) -> &str {
        (**self).stage()
    }
}

impl Grouping for PartnerRow {
    fn motion(&self) -> Motion {
        self.motion
    }
    fn stage(&self) -> &str {
        &self.stage
    }
}

/// Rows grouped by motion, then stage, in the order given within a group (the form the
/// pipeline is answered in, whole or one page of it).
pub fn group<R: Grouping>(rows: impl IntoIterator<Item = R>) -> Grouped<R> {
    let mut grouped: Grouped<R> = BTreeMap::new();
    for row in rows {
        grouped
            .entry(row.motion())
            .or_default()
            .entry(row.stage().to_string())
            .or_default()
            .push(row);
    }
    grouped
}

impl Projection for Pipeline {
    const NAME: &'static str = "pipeline";
    /// 2: a reassigned registration moves to its new partner's view. 3: stored as rows.
    const VERSION: u32 = 3;
    /// Registrations (a partner gets its own as a [`PartnerRow`]) and the partners'
    /// summaries (the vendor's only).
    const PUBLISHED: &'static [crate::Published] = &[
        crate::Published {
            table: "registration",
            for_partners: Some(partner_form),
        },
        crate::Published {
            table: "partner",
            for_partners: None,
        },
    ];

    fn tables(&self) -> Tables<'_> {
        vec![("partner", &self.partners), ("registration", &self.rows)]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("partner", &mut self.partners),
            ("registration", &mut self.rows),
        ]
    }

    fn apply(&mut self, position: Position, event: &Event) {
        self.last_position = position;
        let mut update =
            |id: &RegistrationId, at: &DateTime<Utc>, f: &mut dyn FnMut(&mut VendorRow)| {
                if let Some(row) = self.rows.get_mut(id) {
                    f(row);
                    row.updated_at = *at;
                }
            };
        match event {
            Event::PartnerOnboarded {
                partner_id, name, ..
            } => {
                self.partners.insert(*partner_id, name.clone());
            }
            Event::RegistrationSubmitted {
                account,
                registration_id,
                partner_id,
                customer,
                product_line,
                motion,
                estimated_amount,
                at,
                ..
            } => {
                self.rows.insert(
                    *registration_id,
                    VendorRow {
                        registration_id: *registration_id,
                        partner_id: *partner_id,
                        partner: self.partners.get(partner_id).cloned().unwrap_or_default(),
                        account: account.clone(),
                        company: customer.company.clone(),
                        product_line: product_line.clone(),
                        motion: *motion,
                        stage: stage_name(*motion, 0).to_string(),
                        status: "pending".into(),
                        protection: ProtectionStatus::AwaitingDecision,
                        protection_expires_at: None,
                        next_step: Some("awaiting the vendor's decision".into()),
                        estimated_amount: estimated_amount.clone(),
                        won_amount: None,
                        last_quoted_discount_percent: None,
                        attribution: Attribution::default(),
                        internal_notes: Vec::new(),
                        submitted_at: *at,
                        updated_at: *at,
                    },
                );
            }
            Event::RegistrationApproved {
                registration_id,
                expires_at,
                rationale,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "protected".into();
                r.protection = ProtectionStatus::Protected;
                r.protection_expires_at = Some(*expires_at);
                r.next_step = Some(format!("advance from {}", r.stage));
                r.internal_notes.push(format!("approved: {rationale}"));
            }),
            Event::RegistrationDeclined {
                registration_id,
                reason_code,
                rationale,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "declined".into();
                r.protection = ProtectionStatus::Ended;
                r.next_step = Some("appeal within the window, or close".into());
                r.internal_notes
                    .push(format!("declined ({reason_code}): {rationale}"));
            }),
            Event::ProtectionExtended {
                registration_id,
                expires_at,
                reason,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.protection = ProtectionStatus::Protected;
                r.protection_expires_at = Some(*expires_at);
                r.internal_notes.push(format!("extended: {reason}"));
            }),
            Event::ExpiryReminderSent {
                registration_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.protection = ProtectionStatus::ExpiringSoon;
                r.next_step =
                    Some("progress the deal or request an extension before expiry".into());
            }),
            Event::ProtectionExpired {
                registration_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "expired".into();
                r.protection = ProtectionStatus::Expired;
                r.next_step = None;
            }),
            Event::AppealFiled {
                registration_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "appealed".into();
                r.next_step = Some("awaiting the appeal decision".into());
            }),
            Event::AppealDecided {
                registration_id,
                upheld,
                rationale,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                if *upheld {
                    r.status = "pending".into();
                    r.protection = ProtectionStatus::AwaitingDecision;
                    r.next_step = Some("awaiting the vendor's decision".into());
                } else {
                    r.status = "declined".into();
                    r.next_step = None;
                }
                r.internal_notes.push(format!(
                    "appeal {}: {rationale}",
                    if *upheld { "upheld" } else { "denied" }
                ));
            }),
            Event::StageAdvanced {
                registration_id,
                to_stage,
                evidence,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.stage = to_stage.clone();
                r.next_step = evidence
                    .next_step
                    .clone()
                    .or_else(|| Some(format!("advance from {to_stage}")));
                if let Some(pct) = evidence.discount_percent {
                    r.last_quoted_discount_percent = Some(pct);
                }
                if !evidence.note.is_empty() {
                    r.internal_notes
                        .push(format!("stage note: {}", evidence.note));
                }
            }),
            Event::SourcingPartnerSet {
                registration_id,
                partner_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.attribution.sourcing = Some(*partner_id)
            }),
            Event::InfluencerAdded {
                registration_id,
                partner_id,
                percent,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.attribution.influencers.insert(*partner_id, *percent);
            }),
            Event::InfluencerRemoved {
                registration_id,
                partner_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.attribution.influencers.remove(partner_id);
            }),
            Event::DealWon {
                registration_id,
                amount,
                attribution,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "won".into();
                r.protection = ProtectionStatus::Ended;
                r.won_amount = Some(amount.clone());
                r.attribution = attribution.clone();
                r.next_step = None;
            }),
            Event::DealLost {
                registration_id,
                reason,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "lost".into();
                r.protection = ProtectionStatus::Ended;
                r.next_step = None;
                r.internal_notes.push(format!("lost: {reason}"));
            }),
            Event::RegistrationWithdrawn {
                registration_id,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "withdrawn".into();
                r.protection = ProtectionStatus::Ended;
                r.next_step = None;
            }),
            Event::RegistrationReleased {
                registration_id,
                reason,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.status = "released".into();
                r.protection = ProtectionStatus::Ended;
                r.next_step = None;
                r.internal_notes.push(format!("released: {reason}"));
            }),
            Event::RegistrationReassigned {
                registration_id,
                to,
                reason,
                at,
                ..
            } => {
                let name = self
                    .partners
                    .get(to)
                    .cloned()
                    .unwrap_or_else(|| to.to_string());
                update(registration_id, at, &mut |r| {
                    r.partner_id = *to;
                    r.partner = name.clone();
                    r.internal_notes.push(format!("reassigned: {reason}"));
                })
            }
            _ => {}
        }
    }
}

/// What a partner sees of its registration row: the [`PartnerRow`] of the vendor's row.
fn partner_form(row: &serde_json::Value) -> Option<serde_json::Value> {
    let vendor: VendorRow = serde_json::from_value(row.clone()).ok()?;
    serde_json::to_value(PartnerRow::from(&vendor)).ok()
}
