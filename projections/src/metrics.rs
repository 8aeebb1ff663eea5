//! Program metrics: what a partner program reviews (docs/RULES.md, "Metrics the program
//! reviews"): partner-sourced and influenced amounts by motion, win rate and cycle time by
//! motion, approval SLA compliance, conflicts by kind and their time to resolution.
//!
//! Counting rules: a won deal with a sourcing partner counts as sourced (all of its
//! amount); one with influencers only counts as influenced. Amounts are per currency.
//!
//! So `influenced_minor` here is the revenue of influencer-only deals: a deal sourced by
//! one partner and influenced by others counts whole as sourced, though the ledger pays
//! the influencers their shares of it. These figures stay as they are because old logs
//! replay to them byte for byte (the replay fixtures); the `program` view
//! ([`crate::program`]) counts each partner credit by its share, and adds the open
//! pipeline, average deal size, partner deals beside direct ones and per-partner figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dealreg_domain::Position;
use dealreg_domain::{ConflictId, ConflictKind, Currency, Event, Motion, RegistrationId};
use serde::{Deserialize, Serialize};

use crate::table::{Table, Tables, TablesMut};
use crate::Projection;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotionMetrics {
    pub submitted: u64,
    pub won: u64,
    pub lost: u64,
    /// Won amount with a sourcing partner, per currency (minor units; `i128`, exact
    /// however many wins are summed).
    pub sourced_minor: BTreeMap<Currency, i128>,
    /// Won amount with influencers and no sourcing partner, per currency (influencer-only
    /// deals; the `program` view counts influence by its share).
    pub influenced_minor: BTreeMap<Currency, i128>,
    /// Sum of days from submission to win, to average.
    pub cycle_days_total: i64,
}

impl MotionMetrics {
    /// Won ÷ (won + lost), in basis points; None before any deal closed.
    pub fn win_rate_bps(&self) -> Option<u64> {
        let closed = self.won + self.lost;
        (closed > 0).then(|| self.won * 10_000 / closed)
    }

    pub fn average_cycle_days(&self) -> Option<i64> {
        (self.won > 0).then(|| self.cycle_days_total / self.won as i64)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictMetrics {
    pub detected: u64,
    pub resolved: u64,
    pub resolution_hours_total: i64,
    /// Closed by themselves when fewer than two parties were live (not resolved by the desk).
    #[serde(default)]
    pub closed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramMetrics {
    pub motions: BTreeMap<Motion, MotionMetrics>,
    /// Decisions (approve or decline) made within the approval SLA, and in all.
    pub decisions_on_time: u64,
    pub decisions: u64,
    pub conflicts: BTreeMap<ConflictKind, ConflictMetrics>,
    /// Per registration: motion, submitted at, decision due at.
    #[serde(skip)]
    submitted: Table<RegistrationId, (Motion, DateTime<Utc>, DateTime<Utc>)>,
    #[serde(skip)]
    open_conflicts: Table<ConflictId, (ConflictKind, DateTime<Utc>)>,
}

/// The metrics as a program reads them (`dealreg view metrics --json`): figures, not the
/// fold's working state.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MetricsReport {
    pub motions: BTreeMap<Motion, MotionReport>,
    pub approval_sla: SlaReport,
    pub conflicts: BTreeMap<ConflictKind, ConflictReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MotionReport {
    pub submitted: u64,
    pub won: u64,
    pub lost: u64,
    /// Won ÷ (won + lost), in basis points (`null` before any deal closed).
    pub win_rate_bps: Option<u64>,
    pub average_cycle_days: Option<i64>,
    /// Won amounts with a sourcing partner, per currency, in minor units.
    pub sourced_minor: BTreeMap<Currency, i128>,
    /// Won amounts with influencers only, per currency, in minor units (influencer-only
    /// deals; the `program` view counts influence by its share).
    pub influenced_minor: BTreeMap<Currency, i128>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SlaReport {
    pub decisions: u64,
    pub on_time: u64,
    pub compliance_bps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ConflictReport {
    pub detected: u64,
    pub resolved: u64,
    pub closed_by_themselves: u64,
    pub average_hours_to_resolve: Option<i64>,
}

impl ProgramMetrics {
    /// The public figures.
    pub fn report(&self) -> MetricsReport {
        MetricsReport {
            motions: self
                .motions
                .iter()
                .map(|(motion, m)| {
                    (
                        *motion,
                        MotionReport {
                            submitted: m.submitted,
                            won: m.won,
                            lost: m.lost,
                            win_rate_bps: m.win_rate_bps(),
                            average_cycle_days: m.average_cycle_days(),
                            sourced_minor: m.sourced_minor.clone(),
                            influenced_minor: m.influenced_minor.clone(),
                        },
                    )
                })
                .collect(),
            approval_sla: SlaReport {
                decisions: self.decisions,
                on_time: self.decisions_on_time,
                compliance_bps: self.sla_compliance_bps(),
            },
            conflicts: self
                .conflicts
                .iter()
                .map(|(kind, c)| {
                    (
                        *kind,
                        ConflictReport {
                            detected: c.detected,
                            resolved: c.resolved,
                            closed_by_themselves: c.closed,
                            average_hours_to_resolve: (c.resolved > 0)
                                .then(|| c.resolution_hours_total / c.resolved as i64),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Share of decisions made within the SLA, in basis points.
    pub fn sla_compliance_bps(&self) -> Option<u64> {
        (self.decisions > 0).then(|| self.decisions_on_time * 10_000 / self.decisions)
    }

    fn decided(&mut self, registration: &RegistrationId, at: DateTime<Utc>) {
        if let Some((_, _, due)) = self.submitted.get(registration) {
            self.decisions += 1;
            if at <= *due {
                self.decisions_on_time += 1;
            }
        }
    }
}

impl Projection for ProgramMetrics {
    const NAME: &'static str = "metrics";
    /// 2: conflicts that closed by themselves are counted apart. 3: stored as rows. 4: won
    /// amounts are `i128` sums.
    const VERSION: u32 = 4;

    fn tables(&self) -> Tables<'_> {
        vec![
            ("submitted", &self.submitted),
            ("open_conflict", &self.open_conflicts),
        ]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("submitted", &mut self.submitted),
            ("open_conflict", &mut self.open_conflicts),
        ]
    }

    fn apply(&mut self, _position: Position, event: &Event) {
        match event {
            Event::RegistrationSubmitted {
                registration_id,
                motion,
                approval_due_at,
                at,
                ..
            } => {
                self.motions.entry(*motion).or_default().submitted += 1;
                self.submitted
                    .insert(*registration_id, (*motion, *at, *approval_due_at));
            }
            Event::AppealDecided {
                registration_id,
                approval_due_at: Some(due),
                ..
            } => {
                if let Some(entry) = self.submitted.get_mut(registration_id) {
                    entry.2 = *due;
                }
            }
            Event::RegistrationApproved {
                registration_id,
                at,
                ..
            }
            | Event::RegistrationDeclined {
                registration_id,
                at,
                ..
            } => {
                self.decided(registration_id, *at);
            }
            Event::DealWon {
                registration_id,
                motion,
                amount,
                attribution,
                at,
                ..
            } => {
                let m = self.motions.entry(*motion).or_default();
                m.won += 1;
                if let Some((_, submitted_at, _)) = self.submitted.get(registration_id) {
                    m.cycle_days_total += (*at - *submitted_at).num_days();
                }
                let bucket = if attribution.sourcing.is_some() {
                    Some(&mut m.sourced_minor)
                } else if !attribution.influencers.is_empty() {
                    Some(&mut m.influenced_minor)
                } else {
                    None
                };
                if let Some(bucket) = bucket {
                    *bucket.entry(amount.currency.clone()).or_default() +=
                        i128::from(amount.amount_minor);
                }
            }
            Event::DealLost {
                registration_id, ..
            } => {
                if let Some((motion, _, _)) = self.submitted.get(registration_id) {
                    self.motions.entry(*motion).or_default().lost += 1;
                }
            }
            Event::ConflictDetected {
                conflict_id,
                kind,
                at,
                ..
            } => {
                self.conflicts.entry(*kind).or_default().detected += 1;
                self.open_conflicts
                    .insert(conflict_id.clone(), (*kind, *at));
            }
            Event::ConflictResolved {
                conflict_id, at, ..
            } => {
                if let Some((kind, detected_at)) = self.open_conflicts.remove(conflict_id) {
                    let c = self.conflicts.entry(kind).or_default();
                    c.resolved += 1;
                    c.resolution_hours_total += (*at - detected_at).num_hours();
                }
            }
            Event::ConflictClosed { conflict_id, .. } => {
                if let Some((kind, _)) = self.open_conflicts.remove(conflict_id) {
                    self.conflicts.entry(kind).or_default().closed += 1;
                }
            }
            _ => {}
        }
    }
}
