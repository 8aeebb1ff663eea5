//! The demo's last section: the projections a channel manager and finance open next,
//! brought up to date through the projection runner (so they are checkpointed in the
//! store and `dealreg view ...` answers at once afterwards).

use std::path::Path;

use dealreg_projections::conflicts::{ConflictFlags, FlagStatus};
use dealreg_projections::ledger::{EntryKind, Ledger};
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_store::sqlite::SqliteStore;

use super::summary::money;
use crate::projector::{catch_up, ViewStore};

pub async fn print(store: &SqliteStore, path: &Path) -> Result<(), String> {
    let views = ViewStore::open(path).map_err(|e| e.to_string())?;
    let (_, pipeline) = catch_up::<Pipeline, _>(store, &views, 10_000, None, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let (_, flags) = catch_up::<ConflictFlags, _>(store, &views, 10_000, None, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let (_, ledger) = catch_up::<Ledger, _>(store, &views, 10_000, None, |_| {})
        .await
        .map_err(|e| e.to_string())?;

    println!();
    println!("Pipeline (vendor view): open registrations by motion and stage");
    for (motion, stages) in pipeline.vendor_view() {
        let open: Vec<String> = stages
            .iter()
            .map(|(stage, rows)| {
                (
                    stage,
                    rows.iter()
                        .filter(|r| r.status == "protected" || r.status == "pending")
                        .count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .map(|(stage, n)| format!("{stage} {n}"))
            .collect();
        println!(
            "  {:<12} {}",
            motion.as_str(),
            if open.is_empty() {
                "-".to_string()
            } else {
                open.join(", ")
            }
        );
    }

    let all: Vec<_> = flags.all().collect();
    let active = all
        .iter()
        .filter(|(_, f)| f.status == FlagStatus::Active)
        .count();
    let late = all
        .iter()
        .filter(|(_, f)| f.acknowledged_at.is_some_and(|a| a > f.acknowledge_by))
        .count();
    let unacknowledged = all
        .iter()
        .filter(|(_, f)| f.acknowledged_at.is_none())
        .count();
    println!();
    println!(
        "Conflict flags: {} in all, {active} active, {} resolved; {late} acknowledged after the 24 h SLA, {unacknowledged} not acknowledged yet",
        all.len(),
        all.len() - active
    );
    let duplicates: Vec<_> = flags.duplicates().collect();
    println!("Likely duplicate accounts: {}", duplicates.len());
    for d in duplicates.iter().take(3) {
        println!(
            "  {} ~ {}: {}",
            d.accounts[0],
            d.accounts[1],
            d.reasons.join("; ")
        );
    }

    let accrued: i64 = ledger
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Accrual)
        .map(|e| e.amount_minor)
        .sum();
    let clawed: i64 = -ledger
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Clawback)
        .map(|e| e.amount_minor)
        .sum::<i64>();
    let names: std::collections::BTreeMap<_, _> = pipeline
        .partners()
        .map(|(id, name)| (*id, name.clone()))
        .collect();
    println!();
    println!(
        "Commission ledger: USD {} accrued, USD {} clawed back on refunds; balances:",
        money(accrued),
        money(clawed)
    );
    for (partner, by_currency) in ledger.balances() {
        for (currency, minor) in by_currency {
            println!(
                "  {:<26} {currency} {:>14}",
                names
                    .get(partner)
                    .cloned()
                    .unwrap_or_else(|| partner.to_string()),
                money(*minor)
            );
        }
    }
    let (_, metrics) = catch_up::<ProgramMetrics, _>(store, &views, 10_000, None, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    println!();
    println!("Program metrics");
    crate::cli::view::print_metrics(&mut std::io::stdout().lock(), &metrics)
        .map_err(|e| e.to_string())?;
    if let Some((id, name)) = pipeline.partners().next() {
        println!();
        println!(
            "Next: `dealreg --store {} view pipeline --partner {id}` shows what {name} sees;",
            path.display()
        );
        println!("      `view pipeline --vendor`, `view conflicts`, `view ledger`, `view metrics`, `timekeeper`, `rebuild` and `events` show the rest.");
    }
    Ok(())
}
