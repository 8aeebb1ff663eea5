//! `dealreg view ...`: a read model, brought up to date from its checkpoint through the
//! projection runner, printed as text (the words of the JSON) or as JSON.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use dealreg_domain::{AccountKey, PartnerId};
use dealreg_host::parallel::Folding;
use dealreg_host::registry::{conflicts_json, ledger_json};
use dealreg_host::runner::{self, CatchUp};
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::program::{self, Program};
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
    /// The program's figures (vendor-only): won and open pipeline sourced and influenced
    /// by share, win rate, average deal size and cycle time by motion, partner deals
    /// beside direct opportunities, and per partner registrations, approval rate, win
    /// rate and won revenue.
    Program {
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

/// Which moment a view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The log's head (the view is brought up to date from its checkpoint, and saved).
    Now,
    /// The log up to and including this position.
    Position(dealreg_events::Position),
    /// The log up to the last event at or before this time.
    Time(chrono::DateTime<chrono::Utc>),
}

impl AsOf {
    /// Whether the event at `position` is past this moment: the fold stops before it.
    /// Time never runs backwards in the log, so the first later event ends it.
    pub fn ends_before(
        self,
        position: dealreg_events::Position,
        event: &dealreg_domain::Event,
    ) -> bool {
        match self {
            AsOf::Now => false,
            AsOf::Position(until) => position > until,
            AsOf::Time(until) => event.at() > until,
        }
    }
}

impl std::str::FromStr for AsOf {
    type Err = String;
    fn from_str(text: &str) -> Result<AsOf, String> {
        if let Ok(position) = text.parse::<dealreg_events::Position>() {
            return Ok(AsOf::Position(position));
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| AsOf::Time(t.with_timezone(&chrono::Utc)))
            .map_err(|e| format!("`{text}` is neither a log position nor an RFC 3339 time ({e}); e.g. 1200 or 2026-03-02T09:00:00Z"))
    }
}

/// `P` as of `as_of`: brought up to date from its checkpoint for `Now`, else folded from
/// the origin in memory (nothing is written: a replay works on a read-only copy). Returns
/// the state and the position it covers.
pub async fn state<P: Projection>(
    spec: &super::store::StoreSpec,
    as_of: AsOf,
) -> Result<(P, dealreg_events::Position), String> {
    // A store file marked read-only is an auditor's copy: its view is folded in memory
    // and nothing (no views file, no checkpoint) is written beside it.
    let read_only = spec
        .sqlite_path()
        .is_some_and(|path| std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()));
    if as_of == AsOf::Now && !read_only {
        match caught_up::<P>(spec).await {
            Ok(found) => return Ok(found),
            // The views could not be written (a full disk, say): the view is still
            // folded from the log, in memory, once the log itself reads.
            Err(Unsaved::Views(e)) => {
                let store = super::store::open_read(spec).await.map_err(|_| e.clone())?;
                eprintln!(
                    "warning: the view's checkpoint was not saved ({e}); it is shown folded from the log in memory. Free space beside the store, or fix the views file, so the next view resumes from a checkpoint"
                );
                return folded::<P>(&store, as_of).await;
            }
            Err(Unsaved::Other(e)) => return Err(e),
        }
    }
    folded::<P>(&super::store::open_read(spec).await?, as_of).await
}

/// `P` folded from the origin of `store` up to `as_of`, in memory.
async fn folded<P: Projection>(
    store: &super::store::Log,
    as_of: AsOf,
) -> Result<(P, dealreg_events::Position), String> {
    let mut state = P::default();
    let (covered, _) =
        fold_log(store, as_of, |position, event| state.apply(position, event)).await?;
    Ok((state, covered))
}

/// A view of the catalogue (its empty state `fresh`) folded from the origin of the log
/// up to `as_of`, in memory: what `dealreg replay --view NAME` shows.
pub async fn folded_any(
    spec: &super::store::StoreSpec,
    mut fresh: Box<dyn Folding>,
    as_of: AsOf,
) -> Result<(Box<dyn Folding>, dealreg_events::Position), String> {
    let store = super::store::open_read(spec).await?;
    let (covered, _) =
        fold_log(&store, as_of, |position, event| fresh.fold(position, event)).await?;
    Ok((fresh, covered))
}

/// Why bringing a view up to date failed.
enum Unsaved {
    /// Opening the views or saving the checkpoint failed.
    Views(String),
    Other(String),
}

/// `P` brought up to date from its checkpoint, and saved.
async fn caught_up<P: Projection>(
    spec: &super::store::StoreSpec,
) -> Result<(P, dealreg_events::Position), Unsaved> {
    let (store, checkpoints) = super::store::open_existing(spec)
        .await
        .map_err(Unsaved::Views)?;
    let caught = runner::catch_up::<P, _, _>(&store, &checkpoints, CatchUp::default(), |_| {})
        .await
        .map_err(|e| match e {
            runner::ViewError::Store(_) => Unsaved::Views(e.to_string()),
            other => Unsaved::Other(other.to_string()),
        })?;
    if let Some(why) = &caught.rebuilt {
        eprintln!("note: {why}");
    }
    Ok((caught.state, caught.position))
}

/// Folds the log of `store` from the origin up to `as_of` through `apply`, in memory.
/// Gives the last position folded and how many events were.
async fn fold_log(
    store: &super::store::Log,
    as_of: AsOf,
    mut apply: impl FnMut(dealreg_events::Position, &dealreg_domain::Event),
) -> Result<(dealreg_events::Position, u64), String> {
    let mut pages = dealreg_events::LogPages::new(store, dealreg_events::Position::ORIGIN)
        .await
        .map_err(|e| e.to_string())?;
    let mut covered = dealreg_events::Position::ORIGIN;
    let mut folded = 0u64;
    'log: while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for recorded in &page {
            let event = dealreg_engine::decode_event(recorded).map_err(|e| e.to_string())?;
            if as_of.ends_before(recorded.position, &event) {
                break 'log;
            }
            apply(recorded.position, &event);
            covered = recorded.position;
            folded += 1;
        }
    }
    Ok((covered, folded))
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

pub async fn run(
    spec: &super::store::StoreSpec,
    what: ViewKind,
    as_of: AsOf,
) -> Result<ExitCode, String> {
    match what {
        ViewKind::Pipeline { partner, json, .. } => {
            let (pipeline, _) = state::<Pipeline>(spec, as_of).await?;
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
            let (flags, _) = state::<ConflictFlags>(spec, as_of).await?;
            let conflicts: Vec<_> = flags
                .all()
                .filter(|(k, _)| account.as_ref().is_none_or(|a| a == *k))
                .collect();
            let duplicates: Vec<_> = flags
                .duplicates()
                .filter(|d| account.as_ref().is_none_or(|a| d.accounts.contains(a)))
                .collect();
            let value = conflicts_json(&flags, account.as_ref());
            print(json, value, || text::conflicts(&conflicts, &duplicates))?;
        }
        ViewKind::Metrics { json } => {
            let (metrics, _) = state::<ProgramMetrics>(spec, as_of).await?;
            print(json, to_json(&metrics.report())?, || {
                text::metrics(&metrics)
            })?;
        }
        ViewKind::Program { json } => {
            let (state, _) = state::<Program>(spec, as_of).await?;
            let report = state.report();
            print(json, to_json(&report)?, || program::text(&report))?;
        }
        ViewKind::Ledger { partner, json } => {
            let (ledger, _) = state::<Ledger>(spec, as_of).await?;
            let partner = partner.map(PartnerId);
            let value = ledger_json(&ledger, partner);
            print(json, value, || text::ledger(&ledger, partner))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
