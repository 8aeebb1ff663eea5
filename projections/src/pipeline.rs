//! Pipeline views: the vendor's full view of every registration, and each partner's view of
//! its own registrations with safe fields only.
//!
//! Why two types rather than one with optional fields: a partner view is built from
//! [`PartnerRow`], which has no field that could carry pricing, discounts, internal notes,
//! attribution or another partner's identity. What is not in the type cannot leak
//! (docs/ARCHITECTURE.md, invariant 7; docs/RULES.md, "Visibility").
//!
//! A partner sees what it is part of: the registrations it owns, and those it influences
//! (marked [`PartnerRole::Influencer`], without the owner's name or next step, until the
//! influence is removed). After a win its row shows when the deal renews and whether the
//! renewal is its own; the renewal is kept in a table of its own, so the vendor's rows (and
//! the pipeline old logs replay to) are unchanged.
//!
//! One type per contract. The view stores a `RegistrationRow` per registration: the
//! fold's state, private to this module. What leaves the projection is converted from it:
//!
//! - [`VendorRow`], the vendor's form: the vendor's pipeline answer (the NATS `pipeline`
//!   query, `dealreg view pipeline`, `dealreg replay`), the row of the vendor's
//!   `pipeline.registration` feed messages, and so what the CRM adapters map
//!   (`/row/...` pointers). These contracts are byte-identical today, so one type serves
//!   them; it is also, field for field, the stored row, because the feed hands the stored
//!   row over as it is (a test below holds the two to the same bytes).
//! - [`PartnerRow`], the partner's form: a partner's pipeline answer (its role, after a
//!   win the renewal) and the row of its feed messages (the owner's form of one row, which
//!   knows nothing of the renewal table), and the fields a CRM portal object may map.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use dealreg_domain::stages::stage_name;
use dealreg_domain::values::NoteVisibility;
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

/// The stored row of the view's `registration` table: everything the fold keeps of one
/// registration. Private to the projection: what is answered or published is converted
/// from it ([`VendorRow`], [`PartnerRow`]). The view's stored bytes are these rows, so
/// their serialisation (field names and order) is the replay fixtures' and the feed's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RegistrationRow {
    registration_id: RegistrationId,
    /// The owning partner: the row's scope (its feed, its queries).
    partner_id: PartnerId,
    partner: String,
    account: AccountKey,
    company: String,
    product_line: String,
    motion: Motion,
    stage: String,
    status: String,
    protection: ProtectionStatus,
    protection_expires_at: Option<DateTime<Utc>>,
    next_step: Option<String>,
    estimated_amount: Money,
    won_amount: Option<Money>,
    last_quoted_discount_percent: Option<u32>,
    /// Also what the fold reads to choose an influencer's rows.
    attribution: Attribution,
    internal_notes: Vec<String>,
    /// Notes the partner may read too (`add_note` with visibility `partner`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    submitted_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

// The vendor's form of a stored registration row. The contracts it serves (byte-identical
// today, hence one type): the vendor's pipeline answer (`schemas/answers/pipeline.schema.json`:
// the NATS `pipeline` query, `dealreg view pipeline --json`, `dealreg replay`), the row of
// the vendor's `pipeline.registration` feed messages
// (`schemas/rows/pipeline-registration.schema.json`; the feed hands over the stored row,
// which serialises as this type), and the CRM adapters' input (their mappings point into
// these fields). (A plain comment: the doc comment is the published schemas' description.)
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
    /// Notes the owning partner reads too (`<author>: <text>`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// The partner's form of a stored registration row. The contracts it serves: a partner's
// pipeline answer (`schemas/answers/pipeline-partner.schema.json`), the row of a partner's
// `pipeline.registration` feed messages
// (`schemas/rows/pipeline-registration-partner.schema.json`: always the owner's form,
// without the renewal), and the fields a CRM portal object may map. (A plain comment: the
// doc comment is the published schemas' description.)
/// What a partner may see of a registration it is part of: stage, owner, next step,
/// protection status and expiry, motion; its role on the deal; after a win, the renewal.
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
    /// Whether the viewer owns the registration or influences another partner's.
    pub role: PartnerRole,
    /// The partner organisation that owns the registration, shown to its owner only (the
    /// viewer itself): an influencer is never told who the owning partner is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner's next step; an influencer does not get it (it is the owner's plan).
    pub next_step: Option<String>,
    pub protection: ProtectionStatus,
    pub protection_expires_at: Option<DateTime<Utc>>,
    /// The partner-visible notes on the deal (`<author>: <text>`), to its owner only;
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// When the won deal renews (absent before a win, and for wins recorded without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<NaiveDate>,
    /// Who holds the renewal of the won deal, as the viewer may know it: itself or another
    /// partner, never which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_owner: Option<RenewalOwner>,
}

/// The viewer's part in a registration shown in its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerRole {
    /// The registration is the viewer's (submitted by it or reassigned to it).
    Owner,
    /// Another partner's registration on which the viewer is an influencer.
    Influencer,
}

/// Who holds the renewal of a won deal, relative to the partner looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenewalOwner {
    /// The viewer owns the renewal.
    ThisPartner,
    /// Another partner owns it (reassigned, or the viewer only influenced the deal).
    AnotherPartner,
}

/// The renewal of a product line won on an account: the registration it was won with, its
/// current owner (the winner, unless confirmed for or reassigned to another) and date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    pub won_with: RegistrationId,
    pub owner: PartnerId,
    pub renewal_date: Option<NaiveDate>,
}

impl From<&RegistrationRow> for VendorRow {
    /// Every field, as stored (the stored row is destructured whole: a field added to it
    /// is a choice to make here, not a silent addition to the vendor's contracts).
    fn from(row: &RegistrationRow) -> Self {
        let RegistrationRow {
            registration_id,
            partner_id,
            partner,
            account,
            company,
            product_line,
            motion,
            stage,
            status,
            protection,
            protection_expires_at,
            next_step,
            estimated_amount,
            won_amount,
            last_quoted_discount_percent,
            attribution,
            internal_notes,
            notes,
            submitted_at,
            updated_at,
        } = row;
        VendorRow {
            registration_id: *registration_id,
            partner_id: *partner_id,
            partner: partner.clone(),
            account: account.clone(),
            company: company.clone(),
            product_line: product_line.clone(),
            motion: *motion,
            stage: stage.clone(),
            status: status.clone(),
            protection: *protection,
            protection_expires_at: *protection_expires_at,
            next_step: next_step.clone(),
            estimated_amount: estimated_amount.clone(),
            won_amount: won_amount.clone(),
            last_quoted_discount_percent: *last_quoted_discount_percent,
            attribution: attribution.clone(),
            internal_notes: internal_notes.clone(),
            notes: notes.clone(),
            submitted_at: *submitted_at,
            updated_at: *updated_at,
        }
    }
}

impl From<&RegistrationRow> for PartnerRow {
    /// The owner's form of its row (what the owner's feed carries: one row alone knows
    /// nothing of the renewal table).
    fn from(v: &RegistrationRow) -> Self {
        PartnerRow {
            registration_id: v.registration_id,
            account: v.account.clone(),
            company: v.company.clone(),
            product_line: v.product_line.clone(),
            motion: v.motion,
            stage: v.stage.clone(),
            status: v.status.clone(),
            role: PartnerRole::Owner,
            owner: Some(v.partner.clone()),
            next_step: v.next_step.clone(),
            protection: v.protection,
            protection_expires_at: v.protection_expires_at,
            notes: v.notes.clone(),
            renewal_date: None,
            renewal_owner: None,
        }
    }
}

/// Rows grouped by motion, then stage.
pub type Grouped<R> = BTreeMap<Motion, BTreeMap<String, Vec<R>>>;

/// Registration rows belong to their registration's partner (its feed, its queries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByOwner;

impl Scope<RegistrationRow> for ByOwner {
    fn scope(row: &RegistrationRow) -> Option<String> {
        Some(row.partner_id.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    #[serde(skip)]
    partners: Table<PartnerId, String>,
    #[serde(skip)]
    rows: Table<RegistrationId, RegistrationRow, ByOwner>,
    /// Renewals by `"<account>|<product line>"`: vendor-only rows, never published (a
    /// partner gets its part of them through [`Pipeline::partner_rows`]).
    #[serde(skip)]
    renewals: Table<String, Renewal>,
    last_position: Position,
}

fn renewal_key(account: &AccountKey, product_line: &str) -> String {
    format!("{}|{product_line}", account.0)
}

impl Pipeline {
    /// The vendor's view: every registration, every field.
    pub fn vendor_view(&self) -> Grouped<VendorRow> {
        group(self.rows())
    }

    /// One partner's view: the registrations it owns or influences, safe fields only.
    pub fn partner_view(&self, partner: PartnerId) -> Grouped<PartnerRow> {
        group(self.partner_rows(partner))
    }

    /// The registrations `partner` owns or influences as it may see them (safe fields
    /// only), in registration id order: the one place a partner's rows are chosen, whole
    /// view or page of it.
    pub fn partner_rows(&self, partner: PartnerId) -> impl Iterator<Item = PartnerRow> + '_ {
        self.rows
            .values()
            .filter_map(move |r| self.partner_row(r, partner))
    }

    /// The renewal of the deal `row` was won with, if it was.
    fn renewal(&self, row: &RegistrationRow) -> Option<&Renewal> {
        self.renewals
            .get(&renewal_key(&row.account, &row.product_line))
            .filter(|r| r.won_with == row.registration_id)
    }

    /// What `viewer` sees of `row`: all the safe fields when it owns it; without the owner
    /// and next step when it influences it; nothing otherwise.
    fn partner_row(&self, row: &RegistrationRow, viewer: PartnerId) -> Option<PartnerRow> {
        let mut seen = PartnerRow::from(row);
        if row.partner_id != viewer {
            if !row.attribution.influencers.contains_key(&viewer) {
                return None;
            }
            seen.role = PartnerRole::Influencer;
            seen.owner = None;
            seen.next_step = None;
            seen.notes = Vec::new();
        }
        if let Some(renewal) = self.renewal(row) {
            seen.renewal_date = renewal.renewal_date;
            seen.renewal_owner = Some(if renewal.owner == viewer {
                RenewalOwner::ThisPartner
            } else {
                RenewalOwner::AnotherPartner
            });
        }
        Some(seen)
    }

    /// Every registration as the vendor sees it, in registration id order (each converted
    /// from its stored row as it is taken).
    pub fn rows(&self) -> impl Iterator<Item = VendorRow> + '_ {
        self.rows.values().map(VendorRow::from)
    }

    /// The vendor's form of a stored `registration` row (its bytes as the views store
    /// holds them, `registration/<id>`): what reads one row without the whole view (a
    /// registration's history) are given.
    pub fn stored_registration(bytes: &[u8]) -> Result<VendorRow, serde_json::Error> {
        let stored: RegistrationRow = serde_json::from_slice(bytes)?;
        Ok(VendorRow::from(&stored))
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
    /// 4: renewals of won deals (a table of their own). 5: next steps set by people, notes.
    const VERSION: u32 = 5;
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
        vec![
            ("partner", &self.partners),
            ("registration", &self.rows),
            ("renewal", &self.renewals),
        ]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("partner", &mut self.partners),
            ("registration", &mut self.rows),
            ("renewal", &mut self.renewals),
        ]
    }

    fn apply(&mut self, position: Position, event: &Event) {
        self.last_position = position;
        let mut update =
            |id: &RegistrationId, at: &DateTime<Utc>, f: &mut dyn FnMut(&mut RegistrationRow)| {
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
                    RegistrationRow {
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
                        notes: Vec::new(),
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
            Event::NextStepSet {
                registration_id,
                text,
                due_on,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                r.next_step = Some(format!("{text} (due {due_on})"));
            }),
            Event::NextStepOverdue {
                registration_id,
                due_on,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                if let Some(step) = r.next_step.as_mut() {
                    if !step.contains(": overdue since") {
                        step.push_str(&format!(": overdue since {due_on}"));
                    }
                }
            }),
            Event::NoteAdded {
                registration_id,
                text,
                visibility,
                by,
                at,
                ..
            } => update(registration_id, at, &mut |r| {
                let line = format!("{by}: {text}");
                match visibility {
                    NoteVisibility::Partner => r.notes.push(line.clone()),
                    NoteVisibility::Internal => r.internal_notes.push(format!("note {line}")),
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
                account,
                registration_id,
                partner_id,
                product_line,
                amount,
                attribution,
                renewal_date,
                at,
                ..
            } => {
                update(registration_id, at, &mut |r| {
                    r.status = "won".into();
                    r.protection = ProtectionStatus::Ended;
                    r.won_amount = Some(amount.clone());
                    r.attribution = attribution.clone();
                    r.next_step = None;
                });
                // The winner is the incumbent and owns the renewal (as the account does).
                self.renewals.insert(
                    renewal_key(account, product_line),
                    Renewal {
                        won_with: *registration_id,
                        owner: *partner_id,
                        renewal_date: *renewal_date,
                    },
                );
            }
            Event::RenewalOwnershipConfirmed {
                account,
                product_line,
                partner_id,
                renewal_date,
                ..
            } => {
                if let Some(r) = self.renewals.get_mut(&renewal_key(account, product_line)) {
                    r.owner = *partner_id;
                    r.renewal_date = Some(*renewal_date);
                }
            }
            Event::RenewalOwnershipReassigned {
                account,
                product_line,
                to,
                ..
            } => {
                if let Some(r) = self.renewals.get_mut(&renewal_key(account, product_line)) {
                    r.owner = *to;
                }
            }
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

/// What a partner sees of its registration row: the [`PartnerRow`] of the stored row.
fn partner_form(row: &serde_json::Value) -> Option<serde_json::Value> {
    let stored: RegistrationRow = serde_json::from_value(row.clone()).ok()?;
    serde_json::to_value(PartnerRow::from(&stored)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowTable;

    /// A stored row with every optional field set and every collection filled.
    fn full_row() -> RegistrationRow {
        let at = DateTime::parse_from_rfc3339("2026-03-01T09:30:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let owner = PartnerId(uuid::Uuid::from_u128(1));
        let influencer = PartnerId(uuid::Uuid::from_u128(2));
        RegistrationRow {
            registration_id: RegistrationId(uuid::Uuid::from_u128(3)),
            partner_id: owner,
            partner: "Northwind Traders".into(),
            account: AccountKey("acme.com".into()),
            company: "Acme".into(),
            product_line: "analytics".into(),
            motion: Motion::Reseller,
            stage: "qualification".into(),
            status: "won".into(),
            protection: ProtectionStatus::Ended,
            protection_expires_at: Some(at),
            next_step: Some("call the buyer".into()),
            estimated_amount: Money::new(480_000, "EUR").expect("money"),
            won_amount: Some(Money::new(500_000, "EUR").expect("money")),
            last_quoted_discount_percent: Some(12),
            attribution: Attribution {
                sourcing: Some(owner),
                influencers: BTreeMap::from([(influencer, 20)]),
            },
            internal_notes: vec!["approved: fits".into(), "stage note: met".into()],
            notes: Vec::new(),
            submitted_at: at,
            updated_at: at,
        }
    }

    /// The feed hands over the stored row as it is, for the vendor's form: the two must be
    /// the same bytes, and a stored row must read back as the vendor's form.
    #[test]
    fn a_stored_row_is_byte_for_byte_its_vendor_form() {
        for row in [
            full_row(),
            RegistrationRow {
                protection_expires_at: None,
                next_step: None,
                won_amount: None,
                last_quoted_discount_percent: None,
                attribution: Attribution::default(),
                internal_notes: Vec::new(),
                ..full_row()
            },
        ] {
            let stored = serde_json::to_vec(&row).expect("a stored row serialises");
            let vendor = VendorRow::from(&row);
            assert_eq!(
                String::from_utf8(stored.clone()).expect("utf-8"),
                serde_json::to_string(&vendor).expect("a vendor row serialises")
            );
            assert_eq!(
                Pipeline::stored_registration(&stored).expect("a stored row reads"),
                vendor
            );
            let back: VendorRow = serde_json::from_slice(&stored).expect("the wire form reads");
            assert_eq!(back, vendor);
        }
    }

    /// The table stores the row in the same bytes, and the view answers its vendor form.
    #[test]
    fn the_view_stores_and_answers_the_same_bytes() {
        let row = full_row();
        let mut pipeline = Pipeline::default();
        pipeline.rows.insert(row.registration_id, row.clone());
        let stored = pipeline.rows.snapshot().expect("the table serialises");
        let (_, value) = stored.first().expect("one row");
        assert_eq!(
            value,
            &serde_json::to_value(VendorRow::from(&row)).expect("json")
        );
        assert_eq!(
            pipeline.rows().collect::<Vec<_>>(),
            vec![VendorRow::from(&row)]
        );
        let partner = partner_form(value).expect("the owner's form");
        assert_eq!(
            partner,
            serde_json::to_value(PartnerRow::from(&row)).expect("json")
        );
        assert!(partner.get("internal_notes").is_none());
    }
}
