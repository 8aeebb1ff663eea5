//! `dealreg view ...`: a read model, brought up to date from its checkpoint through the
//! projection runner, printed as text (the words of the JSON) or as JSON.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use dealreg_domain::{AccountKey, PartnerId};
use dealreg_engine::runner::{self, CatchUp};
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::{text, Projection};

#[derive(Subcommand)]
pub enum ViewKind {
    /// Registrations grouped by motion and stage: a partner's own (safe fields only), or
    /// the vendor's full view.
    Pipeline {
        /// Show this partner's view (its own registrations, no pricing or notes).
        #[arg(long, conflicts_with = "vendor", required_unless_present = "vendor")]
        partner: Option<uuid::Uuid>,
        /// Show the vendor's full view.
        #[arg(long)]
        vendor: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Conflict flags per account (with SLA clocks) and likely duplicate accounts.
    Conflicts {
        /// Only this account (any spelling of its domain).
        #[arg(long)]
        account: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Program metrics: sourced and influenced amounts, win rate and cycle time by motion,
    /// approval SLA compliance, conflicts by kind and time to resolution.
    Metrics {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The commission ledger: accruals, clawbacks and payouts with balances, for one
    /// partner or all.
    Ledger {
        #[arg(long)]
        partner: Option<uuid::Uuid>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `P` brought up to the log's head from its checkpoint (the one catch-up every view uses).
async fn fresh<P: Projection>(path: &Path) -> Result<P, String> {
    let (store, checkpoints) = super::store::open_existing(path)?;
    let caught = runner::catch_up::<P, _, _>(&store, &checkpoints, CatchUp::default(), |_| {})
        .await
        .map_err(|e| e.to_string())?;
    if let Some(why) = &caught.rebuilt {
        eprintln!("note: {why}");
    }
    Ok(caught.state)
}

fn print(
    json: bool,
    value: serde_json::Value,
    text: impl FnOnce() -> String,
) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &value)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        out.write_all(text().as_bytes())
    };
    written.map_err(|e| e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

pub async fn run(path: &Path, what: ViewKind) -> Result<ExitCode, String> {
    match what {
        ViewKind::Pipeline { partner, json, .. } => {
            let pipeline = fresh::<Pipeline>(path).await?;
            match partner {
                Some(id) => {
                    let view = pipeline.partner_view(PartnerId(id));
                    print(json, to_json(&view)?, || text::partner_pipeline(&view))?;
                }
                None => {
                    let view = pipeline.vendor_view();
                    print(json, to_json(&view)?, || text::vendor_pipeline(&view))?;
                }
            }
        }
        ViewKind::Conflicts { account, json } => {
            let account = account
                .map(|a| AccountKey::from_domain(&a).map_err(|e| e.message))
                .transpose()?;
            let flags = fresh::<ConflictFlags>(path).await?;
            let conflicts: Vec<_> = flags
                .all()
                .filter(|(k, _)| account.as_ref().is_none_or(|a| a == *k))
                .collect();
            let duplicates: Vec<_> = flags
                .duplicates()
                .filter(|d| account.as_ref().is_none_or(|a| d.accounts.contains(a)))
                .collect();
            let mut by_account: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
            for (account, flag) in &conflicts {
                by_account
                    .entry(account.0.as_str())
                    .or_default()
                    .push(*flag);
            }
            let value =
                serde_json::json!({ "conflicts": by_account, "likely_duplicates": duplicates });
            print(json, value, || text::conflicts(&conflicts, &duplicates))?;
        }
        ViewKind::Metrics { json } => {
            let metrics = fresh::<ProgramMetrics>(path).await?;
            print(json, to_json(&metrics.report())?, || {
                text::metrics(&metrics)
            })?;
        }
        ViewKind::Ledger { partner, json } => {
            let ledger = fresh::<Ledger>(path).await?;
            let partner = partner.map(PartnerId);
            let entries: Vec<_> = ledger
                .entries()
                .filter(|e| partner.is_none_or(|p| p == e.partner_id))
                .collect();
            let balances: std::collections::BTreeMap<String, _> = ledger
                .balances()
                .filter(|(p, _)| partner.is_none_or(|q| q == **p))
                .map(|(p, by_currency)| (p.to_string(), by_currency))
                .collect();
            let value = serde_json::json!({ "entries": entries, "balances": balances });
            print(json, value, || text::ledger(&ledger, partner))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
