//! `dealreg view pipeline --partner ID | --vendor`: pipeline views folded from the log.
//!
//! Today the views are folded from the whole log on each call (a pure fold, so the answer
//! is exactly what a rebuild gives). Checkpointed, incrementally maintained views arrive
//! with the projection runner.

use std::io::Write;

use dealreg_projections::pipeline::{Grouped, PartnerRow, Pipeline, VendorRow};
use dealreg_projections::Projection;
use dealreg_store::{EventStore, GlobalPosition, LogPages};

use crate::engine::decode_event;
use crate::EngineError;

/// Folds the whole log into the pipeline projection.
pub async fn fold_pipeline<S: EventStore>(store: &S) -> Result<Pipeline, EngineError> {
    let mut pipeline = Pipeline::default();
    let mut pages = LogPages::new(store, GlobalPosition::ORIGIN, 4096);
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            pipeline.apply(recorded.position.0, &decode_event(recorded)?);
        }
    }
    Ok(pipeline)
}

/// A one-line progress bar on stderr.
pub fn progress_bar(name: &str, p: crate::projector::Progress) {
    let done = p.position.0 as f64 / p.head.0.max(1) as f64;
    let filled = (done * 30.0).round().clamp(0.0, 30.0) as usize;
    eprint!(
        "\rrebuilding {name} [{}{}] {:>3.0}% {}/{} events",
        "#".repeat(filled),
        "-".repeat(30 - filled),
        done * 100.0,
        p.position.0,
        p.head.0
    );
}

fn date(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Prints rows grouped by motion, then stage, one line per row.
fn print_grouped<W: Write, R>(
    out: &mut W,
    view: &Grouped<R>,
    line: impl Fn(&R) -> String,
) -> std::io::Result<()> {
    for (motion, stages) in view {
        writeln!(out, "{}", motion.as_str())?;
        for (stage, rows) in stages {
            writeln!(out, "  {stage} ({})", rows.len())?;
            for row in rows {
                writeln!(out, "    {}", line(row))?;
            }
        }
    }
    Ok(())
}

pub fn print_partner_table<W: Write>(
    out: &mut W,
    view: &Grouped<PartnerRow>,
) -> std::io::Result<()> {
    print_grouped(out, view, |r| {
        format!(
            "{:<28} {:<10} {:<10} {:<18} expires {:<10}  next: {}",
            r.company,
            r.product_line,
            r.status,
            format!("{:?}", r.protection),
            date(r.protection_expires_at),
            r.next_step.as_deref().unwrap_or("-")
        )
    })
}

pub fn print_vendor_table<W: Write>(out: &mut W, view: &Grouped<VendorRow>) -> std::io::Result<()> {
    print_grouped(out, view, |r| {
        format!(
            "{:<24} {:<26} {:<10} {:<10} {:>16} expires {:<10}",
            r.partner,
            r.company,
            r.product_line,
            r.status,
            r.won_amount
                .as_ref()
                .unwrap_or(&r.estimated_amount)
                .to_string(),
            date(r.protection_expires_at),
        )
    })
}

/// The ledger as a table: balances, then entries, in exact currency units.
pub fn print_ledger<W: Write>(
    out: &mut W,
    ledger: &dealreg_projections::ledger::Ledger,
    partner: Option<dealreg_domain::PartnerId>,
) -> std::io::Result<()> {
    let money = |minor: i64, currency: &dealreg_domain::Currency| {
        dealreg_domain::Money {
            amount_minor: minor,
            currency: currency.clone(),
        }
        .to_string()
    };
    writeln!(out, "balances")?;
    for (p, by_currency) in ledger.balances() {
        if partner.is_some_and(|q| q != *p) {
            continue;
        }
        for (currency, minor) in by_currency {
            writeln!(out, "  {p}  {:>18}", money(*minor, currency))?;
        }
    }
    writeln!(out, "entries")?;
    for e in ledger
        .entries()
        .iter()
        .filter(|e| partner.is_none_or(|p| p == e.partner_id))
    {
        writeln!(
            out,
            "  {}  {:<8?} {:<10} {:>5} bps  {:>16}  {}  policy v{}",
            e.at.format("%Y-%m-%d"),
            e.kind,
            e.credit.map_or("-".to_string(), |c| format!("{c:?}")),
            e.rate_bps,
            money(e.amount_minor, &e.currency),
            e.registration_id
                .map_or("payout".to_string(), |r| r.to_string()),
            e.policy_version
        )?;
    }
    Ok(())
}

/// Conflict flags and likely duplicates as a table.
pub fn print_conflicts<W: Write>(
    out: &mut W,
    conflicts: &[(
        &dealreg_domain::AccountKey,
        &dealreg_projections::conflicts::ConflictFlag,
    )],
    duplicates: &[&dealreg_projections::conflicts::DuplicateFlag],
) -> std::io::Result<()> {
    writeln!(out, "conflicts ({})", conflicts.len())?;
    for (account, f) in conflicts {
        writeln!(
            out,
            "  {:<22} {:<24} {:<10} {:<7?} ack by {} {}  plan by {}  {}",
            account.0,
            format!("{:?}", f.kind),
            f.product_line,
            f.status,
            f.acknowledge_by.format("%Y-%m-%d %H:%M"),
            if f.acknowledged_at.is_some() {
                "(done)"
            } else {
                "      "
            },
            f.resolution_plan_by.format("%Y-%m-%d"),
            f.reasons.join("; ")
        )?;
    }
    writeln!(out, "likely duplicate accounts ({})", duplicates.len())?;
    for d in duplicates {
        writeln!(
            out,
            "  {} ~ {}  {}",
            d.accounts[0],
            d.accounts[1],
            d.reasons.join("; ")
        )?;
    }
    Ok(())
}

/// Program metrics as a table.
pub fn print_metrics<W: Write>(
    out: &mut W,
    m: &dealreg_projections::metrics::ProgramMetrics,
) -> std::io::Result<()> {
    let pct =
        |bps: Option<u64>| bps.map_or("-".to_string(), |b| format!("{}.{:02} %", b / 100, b % 100));
    let amounts = |by: &std::collections::BTreeMap<dealreg_domain::Currency, i64>| {
        if by.is_empty() {
            return "-".to_string();
        }
        by.iter()
            .map(|(c, minor)| {
                dealreg_domain::Money {
                    amount_minor: *minor,
                    currency: c.clone(),
                }
                .to_string()
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "{:<12} {:>9} {:>5} {:>5} {:>9} {:>10} {:>20} {:>20}",
        "motion", "submitted", "won", "lost", "win rate", "cycle", "sourced", "influenced"
    )?;
    for (motion, x) in &m.motions {
        writeln!(
            out,
            "{:<12} {:>9} {:>5} {:>5} {:>9} {:>10} {:>20} {:>20}",
            motion.as_str(),
            x.submitted,
            x.won,
            x.lost,
            pct(x.win_rate_bps()),
            x.average_cycle_days()
                .map_or("-".to_string(), |d| format!("{d} days")),
            amounts(&x.sourced_minor),
            amounts(&x.influenced_minor)
        )?;
    }
    writeln!(
        out,
        "approval SLA compliance: {} of {} decisions on time ({})",
        m.decisions_on_time,
        m.decisions,
        pct(m.sla_compliance_bps())
    )?;
    for (kind, c) in &m.conflicts {
        let hours = if c.resolved > 0 {
            format!(
                "{} h average to resolve",
                c.resolution_hours_total / c.resolved as i64
            )
        } else {
            "none resolved".into()
        };
        writeln!(
            out,
            "conflicts {:<24} {:>4} detected, {:>4} resolved, {hours}",
            format!("{kind:?}"),
            c.detected,
            c.resolved
        )?;
    }
    Ok(())
}
