//! What a channel manager wants to see after the demo: read from the projections (brought
//! up to date through the runner, so `dealreg view ...` answers at once afterwards) and
//! from the decoded log, never from the story's own bookkeeping.

use std::collections::BTreeMap;
use std::fmt::Write;

use dealreg_domain::{Currency, Event, Motion, PartnerId, RegistrationStatus};
use dealreg_engine::decode_event;
use dealreg_events::chain::ChainReport;
use dealreg_events::{EventStore, LogPages, Position};
use dealreg_host::runner::{self, CatchUp};
use dealreg_projections::conflicts::{ConflictFlags, FlagStatus};
use dealreg_projections::ledger::{EntryKind, Ledger};
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::program::{self, Program};
use dealreg_projections::text::{self, word};
use dealreg_views::CheckpointStore;

use crate::story::StoryReport;
use crate::DemoError;

/// Counts of what happened, folded from the decoded log.
#[derive(Debug, Default)]
struct Happened {
    events: u64,
    partners: BTreeMap<PartnerId, String>,
    conflicts: BTreeMap<String, usize>,
    conflict_examples: Vec<String>,
    rejections: BTreeMap<String, usize>,
    expired: Vec<String>,
    reminders: usize,
    sla_breaches: usize,
    conflict_sla_breaches: usize,
    inactive: usize,
    extensions: usize,
    appeals: usize,
    appeals_upheld: usize,
    released: usize,
    offboarded: Vec<String>,
    won: BTreeMap<(Motion, Currency), i64>,
}

impl Happened {
    fn apply(&mut self, event: &Event) {
        self.events += 1;
        match event {
            Event::PartnerOnboarded {
                partner_id, name, ..
            } => {
                self.partners.insert(*partner_id, name.clone());
            }
            Event::PartnerOffboarded { partner_id, .. } => self.offboarded.push(
                self.partners
                    .get(partner_id)
                    .cloned()
                    .unwrap_or_else(|| partner_id.to_string()),
            ),
            Event::RegistrationReleased { .. } => self.released += 1,
            Event::DealWon { motion, amount, .. } => {
                *self
                    .won
                    .entry((*motion, amount.currency.clone()))
                    .or_default() += amount.amount_minor;
            }
            Event::ProtectionExpired {
                account,
                partner_id,
                expired_at,
                ..
            } => self.expired.push(format!(
                "{account} · {} · expired {}",
                self.partners.get(partner_id).cloned().unwrap_or_default(),
                expired_at.format("%Y-%m-%d")
            )),
            Event::AppealFiled { .. } => self.appeals += 1,
            Event::AppealDecided { upheld: true, .. } => self.appeals_upheld += 1,
            Event::ProtectionExtended { .. } => self.extensions += 1,
            Event::ExpiryReminderSent { .. } => self.reminders += 1,
            Event::ApprovalSlaBreached { .. } => self.sla_breaches += 1,
            Event::ConflictSlaBreached { .. } => self.conflict_sla_breaches += 1,
            Event::RegistrationFlaggedInactive { .. } => self.inactive += 1,
            Event::ConflictDetected {
                kind,
                account,
                reasons,
                ..
            } => {
                let kind = word(kind);
                *self.conflicts.entry(kind.clone()).or_default() += 1;
                if self.conflict_examples.len() < 6 {
                    self.conflict_examples
                        .push(format!("{kind:<22} {account} {}", reasons.join("; ")));
                }
            }
            Event::CommandRejected { code, .. } => {
                *self.rejections.entry(code.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
}

use dealreg_domain::money::format_amount as money;

/// Renders the demo's closing report.
pub async fn render<S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    report: &StoryReport,
    chains: &ChainReport,
) -> Result<String, DemoError> {
    let mut happened = Happened::default();
    let mut pages = LogPages::new(store, Position::ORIGIN).await?;
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            happened.apply(&decode_event(recorded).map_err(dealreg_engine::EngineError::from)?);
        }
    }
    let how = CatchUp::default();
    let pipeline = runner::catch_up::<Pipeline, S, K>(store, checkpoints, how, |_| {})
        .await?
        .state;
    let flags = runner::catch_up::<ConflictFlags, S, K>(store, checkpoints, how, |_| {})
        .await?
        .state;
    let ledger = runner::catch_up::<Ledger, S, K>(store, checkpoints, how, |_| {})
        .await?
        .state;
    let metrics = runner::catch_up::<ProgramMetrics, S, K>(store, checkpoints, how, |_| {})
        .await?
        .state;
    let program = runner::catch_up::<Program, S, K>(store, checkpoints, how, |_| {})
        .await?
        .state;

    let mut out = String::new();
    let h = &happened;
    let _ = writeln!(out, "dealreg demo: {} simulated days, {} partners, {} commands ({} accepted, {} refused by the rules; {} issued by the timekeeper), {} events", report.days, h.partners.len(), report.commands, report.accepted, report.rejected, report.timekeeper_commands, h.events);
    let _ = writeln!(out, "\nRegistrations by status and motion");
    const STATUSES: [RegistrationStatus; 8] = [
        RegistrationStatus::Pending,
        RegistrationStatus::Protected,
        RegistrationStatus::Won,
        RegistrationStatus::Lost,
        RegistrationStatus::Declined,
        RegistrationStatus::Expired,
        RegistrationStatus::Withdrawn,
        RegistrationStatus::Released,
    ];
    let _ = write!(out, "  {:<12}", "motion");
    for status in STATUSES {
        let _ = write!(out, "{:>10}", status.as_str());
    }
    let _ = writeln!(out, "{:>10}", "total");
    let mut totals = [0usize; 9];
    let rows: Vec<_> = pipeline.rows().collect();
    for motion in Motion::ALL {
        let _ = write!(out, "  {:<12}", motion.as_str());
        let mut row_total = 0;
        for (i, status) in STATUSES.iter().enumerate() {
            let n = rows
                .iter()
                .filter(|r| r.motion == motion && r.status == status.as_str())
                .count();
            row_total += n;
            totals[i] += n;
            let _ = write!(out, "{n:>10}");
        }
        totals[8] += row_total;
        let _ = writeln!(out, "{row_total:>10}");
    }
    let _ = write!(out, "  {:<12}", "all");
    for n in totals {
        let _ = write!(out, "{n:>10}");
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "\nWon (sourced and influenced deals, exact amounts)");
    for ((motion, currency), minor) in &h.won {
        let _ = writeln!(
            out,
            "  {:<12} {:>20}",
            motion.as_str(),
            money(*minor, currency)
        );
    }

    let _ = writeln!(
        out,
        "\nConflicts caught: {}",
        h.conflicts.values().sum::<usize>()
    );
    for (kind, n) in &h.conflicts {
        let _ = writeln!(out, "  {kind:<24}{n:>6}");
    }
    for example in &h.conflict_examples {
        let _ = writeln!(out, "    e.g. {example}");
    }
    let _ = writeln!(
        out,
        "\nProtection windows: {} expired, {} reminders sent ahead of expiry, {} extended",
        h.expired.len(),
        h.reminders,
        h.extensions
    );
    for line in h.expired.iter().take(10) {
        let _ = writeln!(out, "  expired: {line}");
    }
    if h.expired.len() > 10 {
        let _ = writeln!(out, "  ... and {} more", h.expired.len() - 10);
    }
    let _ = writeln!(out, "\nSLAs and follow-up: {} approval SLA breaches, {} conflict SLA breaches, {} registrations flagged inactive", h.sla_breaches, h.conflict_sla_breaches, h.inactive);
    let _ = writeln!(
        out,
        "Appeals: {} filed, {} upheld",
        h.appeals, h.appeals_upheld
    );
    let _ = writeln!(
        out,
        "Offboarded: {} ({} open registrations released)",
        if h.offboarded.is_empty() {
            "none".to_string()
        } else {
            h.offboarded.join(", ")
        },
        h.released
    );
    let _ = writeln!(
        out,
        "\nRefused by the rules (every attempt is recorded as command_rejected):"
    );
    for (code, n) in &h.rejections {
        let _ = writeln!(out, "  {code:<32}{n:>6}");
    }

    let all: Vec<_> = flags.all().collect();
    let active = all
        .iter()
        .filter(|(_, f)| f.status == FlagStatus::Active)
        .count();
    // Resolved means resolved by the desk (a decision recorded); a conflict that closed by
    // itself when fewer than two parties were left live was never resolved, and one
    // neither resolved nor closed is still open (`dealreg view conflicts` counts the same).
    let closed = all.iter().filter(|(_, f)| f.closed.is_some()).count();
    let resolved = all
        .iter()
        .filter(|(_, f)| f.closed.is_none() && f.resolved_at.is_some())
        .count();
    let open = all.len() - closed - resolved;
    let late = all
        .iter()
        .filter(|(_, f)| f.acknowledged_at.is_some_and(|a| a > f.acknowledge_by))
        .count();
    let unacknowledged = all
        .iter()
        .filter(|(_, f)| f.acknowledged_at.is_none())
        .count();
    let _ = writeln!(
        out,
        "\nConflict flags: {} in all, {open} open ({active} active), {resolved} resolved by the desk, {closed} closed by themselves; {late} acknowledged after the SLA, {unacknowledged} not acknowledged yet",
        all.len(),
    );
    let duplicates: Vec<_> = flags.duplicates().collect();
    let _ = writeln!(out, "Likely duplicate accounts: {}", duplicates.len());
    for d in duplicates.iter().take(3) {
        let _ = writeln!(
            out,
            "  {} ~ {}: {}",
            d.accounts[0],
            d.accounts[1],
            d.reasons.join("; ")
        );
    }

    let mut accrued: BTreeMap<&Currency, i64> = BTreeMap::new();
    let mut clawed: BTreeMap<&Currency, i64> = BTreeMap::new();
    for e in ledger.entries() {
        match e.kind {
            EntryKind::Accrual => *accrued.entry(&e.currency).or_default() += e.amount_minor,
            EntryKind::Clawback => *clawed.entry(&e.currency).or_default() -= e.amount_minor,
            EntryKind::Payout => {}
        }
    }
    let sums = |by: &BTreeMap<&Currency, i64>| {
        by.iter()
            .map(|(c, m)| money(*m, c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "\nCommission ledger: {} accrued, {} clawed back on refunds; balances:",
        sums(&accrued),
        sums(&clawed)
    );
    for (partner, by_currency) in ledger.balances() {
        for (currency, minor) in by_currency {
            let _ = writeln!(
                out,
                "  {:<26} {:>20}",
                h.partners
                    .get(partner)
                    .cloned()
                    .unwrap_or_else(|| partner.to_string()),
                money(*minor, currency)
            );
        }
    }
    let _ = writeln!(out, "\nProgram metrics");
    out.push_str(&text::metrics(&metrics));
    // The program view counts partner credit by its share (a reseller win sourced 80 %
    // and influenced 20 % shows 20 % as influenced), which the metrics above do not.
    let _ = writeln!(
        out,
        "\nProgram figures (shares of partner credit, open pipeline, per partner)"
    );
    out.push_str(&program::text(&program.report()));
    let _ = writeln!(
        out,
        "\nHash chains: {} events in {} streams, {}",
        chains.events,
        chains.streams,
        if chains.breaks.is_empty() {
            "all intact".to_string()
        } else {
            format!("{} BREAKS", chains.breaks.len())
        }
    );
    if let Some((id, name)) = pipeline.partners().next() {
        let _ = writeln!(out, "\nNext: `view pipeline --partner {id}` shows what {name} sees; `view pipeline --vendor`, `view conflicts`, `view ledger`, `view metrics`, `view program`, `timekeeper`, `rebuild` and `events` show the rest.");
    }
    Ok(out)
}
