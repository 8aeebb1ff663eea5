//! The commission ledger: accruals when a deal is won, by the attribution locked on it, and
//! clawbacks when revenue reverses within the policy's window. Exact integer minor units.
//!
//! Payouts (`commission_paid_out`, recorded by finance) are negative entries that settle
//! the balance; a clawback after a payout can leave a partner owing (a negative balance).
//!
//! Rounding: each entry is `amount × share% × rate_bps / 1_000_000`, rounded down to the
//! minor unit (never up: the vendor never pays a fraction it does not owe). A clawback takes
//! back the same proportion of each accrual that the reversal is of the won amount, rounded
//! down, and never more than what is left of that accrual.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::policy::{CommissionRule, Credit};
use dealreg_domain::Position;
use dealreg_domain::{Currency, Event, Motion, PartnerId, Policy, RegistrationId, Tier};
use serde::{Deserialize, Serialize};

use crate::table::{Scope, Table, Tables, TablesMut};
use crate::Projection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Accrual,
    Clawback,
    /// Money paid to the partner: settles its balance.
    Payout,
}

/// One line of the ledger. Clawbacks and payouts are negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Entry {
    pub position: Position,
    pub at: DateTime<Utc>,
    pub partner_id: PartnerId,
    /// The deal the entry is for (none for payouts).
    pub registration_id: Option<RegistrationId>,
    pub kind: EntryKind,
    /// Sourced or influenced (none for payouts).
    pub credit: Option<Credit>,
    pub rate_bps: u32,
    pub amount_minor: i64,
    pub currency: Currency,
    pub policy_version: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct WonDeal {
    won_at: Option<DateTime<Utc>>,
    amount_minor: i64,
    reversed_minor: i64,
    /// Sequence numbers of this deal's accrual entries.
    accruals: Vec<u64>,
    /// Already clawed back from each accrual, same order.
    clawed: Vec<i64>,
}

/// Entries belong to the partner they are owed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToPartner;

impl Scope<Entry> for ToPartner {
    fn scope(entry: &Entry) -> Option<String> {
        Some(entry.partner_id.to_string())
    }
}

/// A partner's balances, scoped to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Balances {
    pub partner_id: PartnerId,
    /// Currency -> balance in minor units. `i128`: a sum of `i64` entries, exact however
    /// many there are (an `i64` sum wrapped negative past 9.2 * 10^18).
    pub by_currency: BTreeMap<Currency, i128>,
}

impl Scope<Balances> for ToPartner {
    fn scope(balances: &Balances) -> Option<String> {
        Some(balances.partner_id.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    policy: Option<Policy>,
    #[serde(skip)]
    tiers: Table<PartnerId, Tier>,
    #[serde(skip)]
    deals: Table<RegistrationId, WonDeal>,
    /// Entries by sequence number (the order they were posted in).
    #[serde(skip)]
    entries: Table<u64, Entry, ToPartner>,
    next_entry: u64,
    #[serde(skip)]
    balances: Table<PartnerId, Balances, ToPartner>,
}

impl Ledger {
    /// Every entry, in the order it was posted.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.values()
    }

    /// Entries with their sequence numbers, in posting order.
    pub fn entries_by_sequence(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries.iter().map(|(n, e)| (*n, e))
    }

    pub fn entries_for(&self, partner: PartnerId) -> impl Iterator<Item = &Entry> {
        self.entries().filter(move |e| e.partner_id == partner)
    }

    pub fn balance(&self, partner: PartnerId, currency: &Currency) -> i128 {
        self.balances
            .get(&partner)
            .and_then(|b| b.by_currency.get(currency))
            .copied()
            .unwrap_or(0)
    }

    /// Each partner's balances by currency, partners in order.
    pub fn balances(&self) -> impl Iterator<Item = (&PartnerId, &BTreeMap<Currency, i128>)> {
        self.balances.iter().map(|(p, b)| (p, &b.by_currency))
    }

    fn post(&mut self, entry: Entry) -> u64 {
        if !self.balances.contains_key(&entry.partner_id) {
            self.balances.insert(
                entry.partner_id,
                Balances {
                    partner_id: entry.partner_id,
                    by_currency: BTreeMap::new(),
                },
            );
        }
        let Some(balances) = self.balances.get_mut(&entry.partner_id) else {
            return self.next_entry;
        };
        *balances
            .by_currency
            .entry(entry.currency.clone())
            .or_default() += i128::from(entry.amount_minor);
        let sequence = self.next_entry;
        self.next_entry += 1;
        self.entries.insert(sequence, entry);
        sequence
    }
}

/// The rate for a credit: the most specific matching rule wins (motion and tier, then
/// motion, then tier, then neither); no rule means no commission.
pub fn rate(rules: &[CommissionRule], motion: Motion, tier: Tier, credit: Credit) -> u32 {
    rules
        .iter()
        .filter(|r| {
            r.credit == credit
                && r.motion.is_none_or(|m| m == motion)
                && r.tier.is_none_or(|t| t == tier)
        })
        .max_by_key(|r| (r.motion.is_some() as u8) * 2 + r.tier.is_some() as u8)
        .map_or(0, |r| r.rate_bps)
}

/// `amount × percent% × rate_bps`, rounded down to the minor unit.
pub fn commission(amount_minor: i64, percent: u32, rate_bps: u32) -> i64 {
    let exact = i128::from(amount_minor) * i128::from(percent) * i128::from(rate_bps);
    i64::try_from(exact.div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

impl Projection for Ledger {
    const NAME: &'static str = "ledger";
    /// 2: stored as rows. 3: balances are `i128` sums (folded again so that a balance an
    /// `i64` sum wrapped is exact).
    const VERSION: u32 = 3;
    /// A partner's own commission entries and balances are its to see.
    const PUBLISHED: &'static [crate::Published] = &[
        crate::Published {
            table: "entry",
            for_partners: Some(crate::as_is),
        },
        crate::Published {
            table: "balance",
            for_partners: Some(crate::as_is),
        },
    ];

    fn tables(&self) -> Tables<'_> {
        vec![
            ("tier", &self.tiers),
            ("deal", &self.deals),
            ("entry", &self.entries),
            ("balance", &self.balances),
        ]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("tier", &mut self.tiers),
            ("deal", &mut self.deals),
            ("entry", &mut self.entries),
            ("balance", &mut self.balances),
        ]
    }

    fn apply(&mut self, position: Position, event: &Event) {
        match event {
            Event::PolicyAdopted { policy, .. } => self.policy = Some(policy.clone()),
            Event::PartnerOnboarded {
                partner_id, tier, ..
            } => {
                self.tiers.insert(*partner_id, *tier);
            }
            Event::PartnerTierChanged { partner_id, to, .. } => {
                self.tiers.insert(*partner_id, *to);
            }
            Event::DealWon {
                registration_id,
                motion,
                amount,
                attribution,
                policy_version,
                at,
                ..
            } => {
                let rules = self
                    .policy
                    .as_ref()
                    .map(|p| p.commission.rules.clone())
                    .unwrap_or_default();
                let mut shares: Vec<(PartnerId, u32, Credit)> = Vec::new();
                if let Some(sourcing) = attribution.sourcing {
                    shares.push((sourcing, attribution.sourcing_share(), Credit::Sourced));
                }
                shares.extend(
                    attribution
                        .influencers
                        .iter()
                        .map(|(p, pct)| (*p, *pct, Credit::Influenced)),
                );
                let mut deal = WonDeal {
                    won_at: Some(*at),
                    amount_minor: amount.amount_minor,
                    ..WonDeal::default()
                };
                for (partner_id, percent, credit) in shares {
                    let tier = self
                        .tiers
                        .get(&partner_id)
                        .copied()
                        .unwrap_or(Tier::Registered);
                    let rate_bps = rate(&rules, *motion, tier, credit);
                    let amount_minor = commission(amount.amount_minor, percent, rate_bps);
                    if amount_minor == 0 {
                        continue;
                    }
                    let index = self.post(Entry {
                        position,
                        at: *at,
                        partner_id,
                        registration_id: Some(*registration_id),
                        kind: EntryKind::Accrual,
                        credit: Some(credit),
                        rate_bps,
                        amount_minor,
                        currency: amount.currency.clone(),
                        policy_version: *policy_version,
                    });
                    deal.accruals.push(index);
                    deal.clawed.push(0);
                }
                self.deals.insert(*registration_id, deal);
            }
            Event::CommissionPaidOut {
                partner_id,
                amount,
                at,
                ..
            } => {
                self.post(Entry {
                    position,
                    at: *at,
                    partner_id: *partner_id,
                    registration_id: None,
                    kind: EntryKind::Payout,
                    credit: None,
                    rate_bps: 0,
                    amount_minor: -amount.amount_minor,
                    currency: amount.currency.clone(),
                    policy_version: self.policy.as_ref().map_or(0, |p| p.version),
                });
            }
            Event::RevenueReversed {
                registration_id,
                amount,
                at,
                ..
            } => {
                let window = self
                    .policy
                    .as_ref()
                    .map_or(0, |p| p.commission.clawback_window_days);
                let Some(mut deal) = self.deals.remove(registration_id) else {
                    return;
                };
                let within = deal
                    .won_at
                    .is_some_and(|won| *at <= won + Duration::days(i64::from(window)));
                if within && deal.amount_minor > 0 {
                    deal.reversed_minor = deal
                        .reversed_minor
                        .saturating_add(amount.amount_minor)
                        .min(deal.amount_minor);
                    for (slot, &index) in deal.accruals.iter().enumerate() {
                        let Some(accrual) = self.entries.get(&index).cloned() else {
                            continue;
                        };
                        // What should have been clawed in total after this reversal.
                        let due = i64::try_from(
                            i128::from(accrual.amount_minor) * i128::from(deal.reversed_minor)
                                / i128::from(deal.amount_minor),
                        )
                        .unwrap_or(accrual.amount_minor)
                        .min(accrual.amount_minor);
                        let take = due - deal.clawed[slot];
                        if take <= 0 {
                            continue;
                        }
                        deal.clawed[slot] += take;
                        self.post(Entry {
                            position,
                            at: *at,
                            kind: EntryKind::Clawback,
                            amount_minor: -take,
                            ..accrual
                        });
                    }
                }
                self.deals.insert(*registration_id, deal);
            }
            _ => {}
        }
    }
}
