//! What a history came to, in the terms a program owner compares two policies by: each
//! registration's decision, status and protection expiry; the conflicts raised; the SLA
//! breaches recorded; commission per partner and currency. One fold, run over the
//! recorded log and over the log decided again, and [`compare`] between the two.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use dealreg_domain::money::Currency;
use dealreg_domain::{Event, PartnerId, Position, RegistrationId};
use dealreg_projections::ledger::{EntryKind, Ledger};
use dealreg_projections::Projection;
use serde::Serialize;

/// One registration's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub partner_id: PartnerId,
    pub account: String,
    pub company: String,
    /// The final status's wire word (pending, protected, declined, expired, won, ...).
    pub status: &'static str,
    /// Approved at least once.
    pub approved: bool,
    /// Declined at least once.
    pub declined: bool,
    /// When its protection ended or ends (the last approval or extension).
    pub protection_expires: Option<DateTime<Utc>>,
}

/// A conflict as two runs can recognise it: its ids count per account and product line,
/// so one avoided conflict renumbers the later ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ConflictSeen {
    pub account: String,
    pub product_line: String,
    pub kind: String,
    /// The parties, each as its JSON (registrations with their partner, direct sales, ...).
    pub parties: Vec<String>,
}

/// An SLA breach recorded by the timekeeper.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Breach {
    /// approval, referral, conflict_acknowledgement or conflict_resolution_plan.
    pub sla: String,
    /// The registration, or the conflict (account / product line / kind).
    pub subject: String,
}

/// Commission of one partner in one currency, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Commission {
    /// Accruals less clawbacks: what the partner earned.
    pub earned_minor: i128,
    /// What is still owed after payouts.
    pub balance_minor: i128,
}

/// The fold.
#[derive(Default)]
pub struct Outcome {
    pub partners: BTreeMap<PartnerId, String>,
    pub registrations: BTreeMap<RegistrationId, Fate>,
    conflict_ids: BTreeMap<String, ConflictSeen>,
    pub conflicts: BTreeSet<ConflictSeen>,
    pub breaches: BTreeSet<Breach>,
    ledger: Ledger,
    /// Events folded.
    pub events: u64,
}

impl Outcome {
    pub fn apply(&mut self, position: Position, event: &Event) {
        self.events += 1;
        self.ledger.apply(position, event);
        let mut set = |id: &RegistrationId, change: &dyn Fn(&mut Fate)| {
            if let Some(fate) = self.registrations.get_mut(id) {
                change(fate);
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
                ..
            } => {
                self.registrations.insert(
                    *registration_id,
                    Fate {
                        partner_id: *partner_id,
                        account: account.0.clone(),
                        company: customer.company.clone(),
                        status: "pending",
                        approved: false,
                        declined: false,
                        protection_expires: None,
                    },
                );
            }
            Event::RegistrationApproved {
                registration_id,
                expires_at,
                ..
            } => set(registration_id, &|f| {
                f.status = "protected";
                f.approved = true;
                f.protection_expires = Some(*expires_at);
            }),
            Event::ProtectionExtended {
                registration_id,
                expires_at,
                ..
            } => set(registration_id, &|f| {
                f.protection_expires = Some(*expires_at)
            }),
            Event::RegistrationDeclined {
                registration_id, ..
            } => set(registration_id, &|f| {
                f.status = "declined";
                f.declined = true;
            }),
            Event::AppealDecided {
                registration_id,
                upheld: true,
                ..
            } => set(registration_id, &|f| f.status = "pending"),
            Event::RegistrationWithdrawn {
                registration_id, ..
            } => set(registration_id, &|f| f.status = "withdrawn"),
            Event::ProtectionExpired {
                registration_id, ..
            } => set(registration_id, &|f| f.status = "expired"),
            Event::DealWon {
                registration_id, ..
            } => set(registration_id, &|f| f.status = "won"),
            Event::DealLost {
                registration_id, ..
            } => set(registration_id, &|f| f.status = "lost"),
            Event::RegistrationReleased {
                registration_id, ..
            } => set(registration_id, &|f| f.status = "released"),
            Event::ConflictDetected {
                account,
                conflict_id,
                kind,
                product_line,
                parties,
                ..
            } => {
                let mut parties: Vec<String> = parties
                    .iter()
                    .map(|p| serde_json::to_string(p).unwrap_or_default())
                    .collect();
                parties.sort();
                let seen = ConflictSeen {
                    account: account.0.clone(),
                    product_line: product_line.clone(),
                    kind: word(kind),
                    parties,
                };
                self.conflict_ids
                    .insert(conflict_id.0.clone(), seen.clone());
                self.conflicts.insert(seen);
            }
            Event::ApprovalSlaBreached {
                registration_id, ..
            } => {
                self.breaches.insert(Breach {
                    sla: "approval".into(),
                    subject: registration_id.to_string(),
                });
            }
            Event::ReferralSlaBreached {
                registration_id, ..
            } => {
                self.breaches.insert(Breach {
                    sla: "referral".into(),
                    subject: registration_id.to_string(),
                });
            }
            Event::ConflictSlaBreached {
                conflict_id, sla, ..
            } => {
                let subject = match self.conflict_ids.get(&conflict_id.0) {
                    Some(c) => format!("{} / {} / {}", c.account, c.product_line, c.kind),
                    None => conflict_id.0.clone(),
                };
                self.breaches.insert(Breach {
                    sla: format!("conflict_{}", word(sla)),
                    subject,
                });
            }
            _ => {}
        }
    }

    /// Commission by partner and currency.
    pub fn commission(&self) -> BTreeMap<(PartnerId, Currency), Commission> {
        let mut out: BTreeMap<(PartnerId, Currency), Commission> = BTreeMap::new();
        for entry in self.ledger.entries() {
            let c = out
                .entry((entry.partner_id, entry.currency.clone()))
                .or_default();
            let amount = i128::from(entry.amount_minor);
            if entry.kind != EntryKind::Payout {
                c.earned_minor += amount;
            }
            c.balance_minor += amount;
        }
        out
    }
}

/// An enum's JSON word (`horizontal`, `acknowledgement`).
fn word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A registration whose fate differs between the two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationChange {
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub partner: String,
    pub account: String,
    /// Its final status as recorded, and under the draft (`not_submitted` when the
    /// submission was refused in that run).
    pub was: String,
    pub now: String,
}

/// A protection that ends on another day under the draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryChange {
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub partner: String,
    pub account: String,
    pub was: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Negative: earlier under the draft.
    pub days: i64,
}

/// Commission of a partner in a currency that differs under the draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommissionChange {
    pub partner_id: PartnerId,
    pub partner: String,
    pub currency: Currency,
    pub was_earned_minor: i128,
    pub now_earned_minor: i128,
    pub earned_difference_minor: i128,
    pub was_balance_minor: i128,
    pub now_balance_minor: i128,
}

/// Everything that came out otherwise, each list in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Differences {
    /// Protected in one run only.
    pub protected_otherwise: Vec<RegistrationChange>,
    /// Declined in one run only.
    pub declined_otherwise: Vec<RegistrationChange>,
    /// Every registration whose final status differs (the two lists above and wins,
    /// expiries, refusals that came out otherwise).
    pub status_otherwise: Vec<RegistrationChange>,
    /// Protected in both runs, ending on another day.
    pub protection_expiry: Vec<ExpiryChange>,
    pub conflicts_raised: Vec<ConflictSeen>,
    pub conflicts_avoided: Vec<ConflictSeen>,
    pub commission: Vec<CommissionChange>,
    pub sla_breaches_raised: Vec<Breach>,
    pub sla_breaches_avoided: Vec<Breach>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self == &Differences::default()
    }
}

/// What differs between the recorded outcome `was` and the draft's `now`.
pub fn compare(was: &Outcome, now: &Outcome) -> Differences {
    let mut d = Differences::default();
    let name = |p: &PartnerId| {
        was.partners
            .get(p)
            .or_else(|| now.partners.get(p))
            .cloned()
            .unwrap_or_default()
    };
    let ids: BTreeSet<&RegistrationId> = was
        .registrations
        .keys()
        .chain(now.registrations.keys())
        .collect();
    for id in ids {
        let (a, b) = (was.registrations.get(id), now.registrations.get(id));
        let Some(any) = a.or(b) else { continue };
        let change = || RegistrationChange {
            registration_id: *id,
            partner_id: any.partner_id,
            partner: name(&any.partner_id),
            account: any.account.clone(),
            was: a.map_or("not_submitted", |f| f.status).to_string(),
            now: b.map_or("not_submitted", |f| f.status).to_string(),
        };
        let approved = |f: Option<&Fate>| f.is_some_and(|f| f.approved);
        let declined = |f: Option<&Fate>| f.is_some_and(|f| f.declined);
        if approved(a) != approved(b) {
            d.protected_otherwise.push(change());
        }
        if declined(a) != declined(b) {
            d.declined_otherwise.push(change());
        }
        if a.map(|f| f.status) != b.map(|f| f.status) {
            d.status_otherwise.push(change());
        }
        if let (Some(x), Some(y)) = (
            a.and_then(|f| f.protection_expires),
            b.and_then(|f| f.protection_expires),
        ) {
            if x != y {
                d.protection_expiry.push(ExpiryChange {
                    registration_id: *id,
                    partner_id: any.partner_id,
                    partner: name(&any.partner_id),
                    account: any.account.clone(),
                    was: x,
                    now: y,
                    days: (y - x).num_days(),
                });
            }
        }
    }
    d.conflicts_raised = now.conflicts.difference(&was.conflicts).cloned().collect();
    d.conflicts_avoided = was.conflicts.difference(&now.conflicts).cloned().collect();
    d.sla_breaches_raised = now.breaches.difference(&was.breaches).cloned().collect();
    d.sla_breaches_avoided = was.breaches.difference(&now.breaches).cloned().collect();
    let (cw, cn) = (was.commission(), now.commission());
    let keys: BTreeSet<&(PartnerId, Currency)> = cw.keys().chain(cn.keys()).collect();
    for key in keys {
        let x = cw.get(key).copied().unwrap_or_default();
        let y = cn.get(key).copied().unwrap_or_default();
        if x != y {
            d.commission.push(CommissionChange {
                partner_id: key.0,
                partner: name(&key.0),
                currency: key.1.clone(),
                was_earned_minor: x.earned_minor,
                now_earned_minor: y.earned_minor,
                earned_difference_minor: y.earned_minor - x.earned_minor,
                was_balance_minor: x.balance_minor,
                now_balance_minor: y.balance_minor,
            });
        }
    }
    d
}
