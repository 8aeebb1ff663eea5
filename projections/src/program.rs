//! The program view: the figures a channel team reads about its partner program
//! (docs/RULES.md, "Metrics the program reviews"), vendor-only, never published.
//!
//! Why a view beside [`crate::metrics`] rather than new figures in it: the `metrics` view's
//! JSON is what old logs replay to, byte for byte (the replay fixtures), and it counts a won
//! deal with a sourcing partner as sourced in full. This view counts partner credit by its
//! share, so a channel team sees the same influence the commission ledger pays for.
//!
//! Counting rules, per motion and per currency, in minor units (`i128` sums):
//! - A won deal's amount is its won amount less any revenue reversed on it.
//! - Sourced and influenced: with a sourcing partner, the sourcing share (100 % less the
//!   influencers' total, rounded down to the minor unit) is sourced and the rest of the
//!   amount influenced; with influencers only, the whole amount is influenced (no partner
//!   sourced it); with neither, it is partner revenue credited to nobody.
//! - Open pipeline: registrations pending a decision or protected, at their estimated
//!   amounts, split by their attribution so far by the same rule.
//! - Win rate: won ÷ (won + lost). Average deal size: won amount ÷ wins, per currency.
//!   Cycle time: days from submission to win.
//! - Per partner: the registrations it owns now (a reassigned one counts for its new
//!   owner), decisions on them (the last one: an upheld appeal takes the decline back),
//!   wins, losses and won amounts.
//! - Partner against direct: the log records a direct opportunity when sales open it
//!   (`direct_opportunity_recorded`) and nothing of its outcome, so there is no direct win
//!   rate to compare with; the view gives what can be measured, the direct opportunities
//!   opened and their amounts beside the partner registrations, wins and win rate.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use dealreg_domain::money::format_amount;
use dealreg_domain::RegistrationId;
use dealreg_domain::{Attribution, Currency, Event, Money, Motion, PartnerId, Position};
use serde::{Deserialize, Serialize};

use crate::table::{Table, Tables, TablesMut};
use crate::Projection;

/// Where a registration stands, as far as the program's figures go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Submitted (or appealed and upheld), awaiting the vendor's decision.
    Pending,
    Protected,
    Won,
    Lost,
    /// Declined, expired, withdrawn or released: out of the pipeline without an outcome.
    Closed,
}

/// The vendor's last decision on a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Declined,
}

/// One registration as the program counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    /// The partner that owns it now.
    pub partner_id: PartnerId,
    pub motion: Motion,
    pub submitted_at: DateTime<Utc>,
    pub estimated: Money,
    pub standing: Standing,
    pub decision: Option<Decision>,
    pub attribution: Attribution,
    pub won: Option<WonDeal>,
}

/// What a win booked, and what was reversed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WonDeal {
    pub amount: Money,
    pub at: DateTime<Utc>,
    /// Revenue reversed on the deal (refunds), in the won amount's currency.
    pub reversed_minor: i128,
}

impl WonDeal {
    /// The won amount less what was reversed.
    pub fn net_minor(&self) -> i128 {
        i128::from(self.amount.amount_minor) - self.reversed_minor
    }
}

/// `amount` split into its sourced and influenced parts by `attribution` (see the module's
/// counting rules): the sourcing share rounded down, the influenced part the rest, so the
/// two add up to the amount whenever a sourcing partner is set.
pub fn credit_split(amount_minor: i128, attribution: &Attribution) -> (i128, i128) {
    if attribution.sourcing.is_some() {
        let sourced = amount_minor * i128::from(attribution.sourcing_share()) / 100;
        (sourced, amount_minor - sourced)
    } else if !attribution.influencers.is_empty() {
        (0, amount_minor)
    } else {
        (0, 0)
    }
}

/// The program view's state: registrations and partners as rows, direct opportunities
/// counted in the meta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    direct_opportunities: u64,
    direct_minor: BTreeMap<Currency, i128>,
    #[serde(skip)]
    partners: Table<PartnerId, String>,
    #[serde(skip)]
    deals: Table<RegistrationId, Deal>,
}

/// The program's figures (`dealreg view program --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProgramReport {
    pub motions: BTreeMap<Motion, MotionFigures>,
    pub partner_vs_direct: PartnerVsDirect,
    /// Per partner, by id.
    pub partners: BTreeMap<PartnerId, PartnerFigures>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MotionFigures {
    pub registrations: u64,
    pub won: u64,
    pub lost: u64,
    /// Won ÷ (won + lost), in basis points (`null` before any deal closed).
    pub win_rate_bps: Option<u64>,
    /// Won amounts less reversals, per currency, in minor units.
    pub won_minor: BTreeMap<Currency, i128>,
    /// The sourcing partners' shares of the won amounts.
    pub sourced_minor: BTreeMap<Currency, i128>,
    /// The influencers' shares of the won amounts (the whole of influencer-only deals).
    pub influenced_minor: BTreeMap<Currency, i128>,
    /// Won amount ÷ wins in that currency.
    pub average_deal_minor: BTreeMap<Currency, i128>,
    /// Days from submission to win, averaged (`null` before any win).
    pub average_cycle_days: Option<i64>,
    pub open: OpenPipeline,
}

/// Registrations pending a decision or protected, at their estimated amounts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OpenPipeline {
    pub registrations: u64,
    pub estimated_minor: BTreeMap<Currency, i128>,
    pub sourced_minor: BTreeMap<Currency, i128>,
    pub influenced_minor: BTreeMap<Currency, i128>,
}

/// Partner deals beside direct ones, as far as the log can tell: it records no outcome of
/// a direct opportunity, so there is no direct win rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PartnerVsDirect {
    pub partner_registrations: u64,
    pub partner_won: u64,
    pub partner_lost: u64,
    pub partner_win_rate_bps: Option<u64>,
    pub partner_won_minor: BTreeMap<Currency, i128>,
    /// Direct opportunities recorded by sales.
    pub direct_opportunities: u64,
    pub direct_minor: BTreeMap<Currency, i128>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PartnerFigures {
    pub name: String,
    pub registrations: u64,
    pub approved: u64,
    pub declined: u64,
    /// Approved ÷ decided, in basis points (`null` before any decision).
    pub approval_rate_bps: Option<u64>,
    pub won: u64,
    pub lost: u64,
    pub win_rate_bps: Option<u64>,
    /// Won amounts of its registrations less reversals, per currency.
    pub won_minor: BTreeMap<Currency, i128>,
}

/// `part` ÷ `whole` in basis points; none of nothing.
fn bps(part: u64, whole: u64) -> Option<u64> {
    (whole > 0).then(|| part * 10_000 / whole)
}

fn add(to: &mut BTreeMap<Currency, i128>, currency: &Currency, minor: i128) {
    *to.entry(currency.clone()).or_default() += minor;
}

impl Program {
    /// The figures, computed from the registrations as they stand.
    pub fn report(&self) -> ProgramReport {
        let mut report = ProgramReport::default();
        // Per motion: cycle days summed, wins per currency, to average.
        let mut cycle_days: BTreeMap<Motion, i64> = BTreeMap::new();
        let mut wins: BTreeMap<(Motion, Currency), i128> = BTreeMap::new();
        for deal in self.deals.values() {
            let m = report.motions.entry(deal.motion).or_default();
            let p = report.partners.entry(deal.partner_id).or_default();
            m.registrations += 1;
            p.registrations += 1;
            match deal.decision {
                Some(Decision::Approved) => p.approved += 1,
                Some(Decision::Declined) => p.declined += 1,
                None => {}
            }
            match deal.standing {
                Standing::Pending | Standing::Protected => {
                    let currency = &deal.estimated.currency;
                    let minor = i128::from(deal.estimated.amount_minor);
                    let (sourced, influenced) = credit_split(minor, &deal.attribution);
                    m.open.registrations += 1;
                    add(&mut m.open.estimated_minor, currency, minor);
                    add(&mut m.open.sourced_minor, currency, sourced);
                    add(&mut m.open.influenced_minor, currency, influenced);
                }
                Standing::Lost => {
                    m.lost += 1;
                    p.lost += 1;
                }
                Standing::Won | Standing::Closed => {}
            }
            if let (Standing::Won, Some(won)) = (deal.standing, &deal.won) {
                let currency = &won.amount.currency;
                let net = won.net_minor();
                let (sourced, influenced) = credit_split(net, &deal.attribution);
                m.won += 1;
                p.won += 1;
                add(&mut m.won_minor, currency, net);
                add(&mut m.sourced_minor, currency, sourced);
                add(&mut m.influenced_minor, currency, influenced);
                add(&mut p.won_minor, currency, net);
                *cycle_days.entry(deal.motion).or_default() +=
                    (won.at - deal.submitted_at).num_days();
                *wins.entry((deal.motion, currency.clone())).or_default() += 1;
            }
        }
        for (motion, m) in report.motions.iter_mut() {
            m.win_rate_bps = bps(m.won, m.won + m.lost);
            m.average_cycle_days = (m.won > 0)
                .then(|| cycle_days.get(motion).copied().unwrap_or_default() / m.won as i64);
            m.average_deal_minor = m
                .won_minor
                .iter()
                .filter_map(|(currency, total)| {
                    let n = wins.get(&(*motion, currency.clone())).copied()?;
                    (n > 0).then(|| (currency.clone(), total / n))
                })
                .collect();
            let d = &mut report.partner_vs_direct;
            d.partner_registrations += m.registrations;
            d.partner_won += m.won;
            d.partner_lost += m.lost;
            for (currency, minor) in &m.won_minor {
                add(&mut d.partner_won_minor, currency, *minor);
            }
        }
        let d = &mut report.partner_vs_direct;
        d.partner_win_rate_bps = bps(d.partner_won, d.partner_won + d.partner_lost);
        d.direct_opportunities = self.direct_opportunities;
        d.direct_minor = self.direct_minor.clone();
        for (id, p) in report.partners.iter_mut() {
            p.name = self.partners.get(id).cloned().unwrap_or_default();
            p.approval_rate_bps = bps(p.approved, p.approved + p.declined);
            p.win_rate_bps = bps(p.won, p.won + p.lost);
        }
        report
    }

    fn deal(&mut self, id: &RegistrationId, f: impl FnOnce(&mut Deal)) {
        if let Some(deal) = self.deals.get_mut(id) {
            f(deal);
        }
    }
}

impl Projection for Program {
    const NAME: &'static str = "program";
    const VERSION: u32 = 1;

    fn tables(&self) -> Tables<'_> {
        vec![("partner", &self.partners), ("deal", &self.deals)]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![("partner", &mut self.partners), ("deal", &mut self.deals)]
    }

    fn apply(&mut self, _position: Position, event: &Event) {
        match event {
            Event::PartnerOnboarded {
                partner_id, name, ..
            } => {
                self.partners.insert(*partner_id, name.clone());
            }
            Event::RegistrationSubmitted {
                registration_id,
                partner_id,
                motion,
                estimated_amount,
                at,
                ..
            } => {
                self.deals.insert(
                    *registration_id,
                    Deal {
                        partner_id: *partner_id,
                        motion: *motion,
                        submitted_at: *at,
                        estimated: estimated_amount.clone(),
                        standing: Standing::Pending,
                        decision: None,
                        attribution: Attribution::default(),
                        won: None,
                    },
                );
            }
            Event::RegistrationApproved {
                registration_id, ..
            } => self.deal(registration_id, |d| {
                d.standing = Standing::Protected;
                d.decision = Some(Decision::Approved);
            }),
            Event::RegistrationDeclined {
                registration_id, ..
            } => self.deal(registration_id, |d| {
                d.standing = Standing::Closed;
                d.decision = Some(Decision::Declined);
            }),
            // An upheld appeal takes the decline back: the registration awaits a decision.
            Event::AppealDecided {
                registration_id,
                upheld: true,
                ..
            } => self.deal(registration_id, |d| {
                d.standing = Standing::Pending;
                d.decision = None;
            }),
            Event::ProtectionExpired {
                registration_id, ..
            }
            | Event::RegistrationWithdrawn {
                registration_id, ..
            }
            | Event::RegistrationReleased {
                registration_id, ..
            } => self.deal(registration_id, |d| d.standing = Standing::Closed),
            Event::RegistrationReassigned {
                registration_id,
                to,
                ..
            } => self.deal(registration_id, |d| d.partner_id = *to),
            Event::SourcingPartnerSet {
                registration_id,
                partner_id,
                ..
            } => self.deal(registration_id, |d| {
                d.attribution.sourcing = Some(*partner_id)
            }),
            Event::InfluencerAdded {
                registration_id,
                partner_id,
                percent,
                ..
            } => self.deal(registration_id, |d| {
                d.attribution.influencers.insert(*partner_id, *percent);
            }),
            Event::InfluencerRemoved {
                registration_id,
                partner_id,
                ..
            } => self.deal(registration_id, |d| {
                d.attribution.influencers.remove(partner_id);
            }),
            Event::DealWon {
                registration_id,
                amount,
                attribution,
                at,
                ..
            } => self.deal(registration_id, |d| {
                d.standing = Standing::Won;
                d.attribution = attribution.clone();
                d.won = Some(WonDeal {
                    amount: amount.clone(),
                    at: *at,
                    reversed_minor: 0,
                });
            }),
            Event::DealLost {
                registration_id, ..
            } => self.deal(registration_id, |d| d.standing = Standing::Lost),
            Event::RevenueReversed {
                registration_id,
                amount,
                ..
            } => self.deal(registration_id, |d| {
                // A reversal in another currency than the win cannot be netted in minor
                // units; the engine refuses one, so it is only ignored here.
                if let Some(won) = d
                    .won
                    .as_mut()
                    .filter(|w| w.amount.currency == amount.currency)
                {
                    won.reversed_minor += i128::from(amount.amount_minor);
                }
            }),
            Event::DirectOpportunityRecorded { amount, .. } => {
                self.direct_opportunities += 1;
                add(
                    &mut self.direct_minor,
                    &amount.currency,
                    i128::from(amount.amount_minor),
                );
            }
            _ => {}
        }
    }
}

/// The program view as text (`dealreg view program`).
pub fn text(report: &ProgramReport) -> String {
    let amounts = |by: &BTreeMap<Currency, i128>| {
        if by.is_empty() {
            "-".to_string()
        } else {
            by.iter()
                .map(|(c, m)| format_amount(*m, c))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let pct =
        |bps: Option<u64>| bps.map_or("-".to_string(), |b| format!("{:.1} %", b as f64 / 100.0));
    let mut out = String::new();
    for (motion, m) in &report.motions {
        let _ = writeln!(
            out,
            "{}: {} registrations, {} won, {} lost (win rate {}), average cycle {}",
            motion.as_str(),
            m.registrations,
            m.won,
            m.lost,
            pct(m.win_rate_bps),
            m.average_cycle_days
                .map_or("-".to_string(), |d| format!("{d} days"))
        );
        let _ = writeln!(
            out,
            "  won {} (sourced {}, influenced {}), average deal {}",
            amounts(&m.won_minor),
            amounts(&m.sourced_minor),
            amounts(&m.influenced_minor),
            amounts(&m.average_deal_minor)
        );
        let _ = writeln!(
            out,
            "  open pipeline: {} registrations, {} (sourced {}, influenced {})",
            m.open.registrations,
            amounts(&m.open.estimated_minor),
            amounts(&m.open.sourced_minor),
            amounts(&m.open.influenced_minor)
        );
    }
    let d = &report.partner_vs_direct;
    let _ = writeln!(
        out,
        "partner deals: {} registrations, {} won, {} lost (win rate {}), won {}",
        d.partner_registrations,
        d.partner_won,
        d.partner_lost,
        pct(d.partner_win_rate_bps),
        amounts(&d.partner_won_minor)
    );
    let _ = writeln!(
        out,
        "direct opportunities: {} opened, {} (the log records no direct outcome, so no direct win rate)",
        d.direct_opportunities,
        amounts(&d.direct_minor)
    );
    for p in report.partners.values() {
        let _ = writeln!(
            out,
            "partner {:<26} {:>4} registrations, approval {:>7}, {:>3} won, {:>3} lost (win rate {}), won {}",
            p.name,
            p.registrations,
            pct(p.approval_rate_bps),
            p.won,
            p.lost,
            pct(p.win_rate_bps),
            amounts(&p.won_minor)
        );
    }
    out
}
