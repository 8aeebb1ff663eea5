//! `dealreg what-if --policy draft.toml [--from TIME]`: the recorded history decided
//! again under a draft policy, in a scratch store, and what would have come out
//! otherwise: registrations protected or declined otherwise, protections ending earlier
//! or later, conflicts raised or avoided, commission per partner (exact, by currency),
//! SLA breaches. As text, JSON or a page (docs/WHAT-IF.md).
//!
//! Nothing is written to the program's store: the history is read once, and decided
//! again on a fresh SQLite log (in `/dev/shm` where there is one, since it is thrown
//! away), deleted when the run ends.

mod history;
mod outcome;
mod page;
mod rerun;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::Policy;
use serde::Serialize;

pub use outcome::Differences;
use rerun::{Coverage, DecidedOtherwise, Rerun};

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// The draft policy (TOML, the shape of domain/policy/default.toml).
    #[arg(long)]
    pub policy: PathBuf,
    /// The draft is in force from this time (RFC 3339); before it, the recorded policies.
    /// Default: from the program's start (the draft replaces its first policy).
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// text, json or html.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How often (seconds of the history's time) the timekeeper of the scratch run looks
    /// for deadlines that fell due; each one is then issued at its own due time.
    #[arg(long, default_value_t = 60)]
    pub tick_secs: u64,
}

/// The report: what was decided again, and what came out otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub draft: DraftSeen,
    pub history: HistorySeen,
    pub coverage: Coverage,
    /// Recorded commands answered otherwise (accepted where they were refused, refused
    /// where they were accepted, or refused for another reason), in the log's order.
    pub decided_otherwise: Vec<DecidedOtherwise>,
    pub differences: Differences,
}

#[derive(Debug, Clone, Serialize)]
pub struct DraftSeen {
    pub name: String,
    /// The version the draft was adopted as in the scratch run.
    pub adopted_as_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistorySeen {
    pub events: u64,
    pub commands: u64,
    pub first_at: DateTime<Utc>,
    /// The run decides up to the last recorded event's time.
    pub until: DateTime<Utc>,
}

/// The scratch store's directory: memory-backed where the machine has one.
fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("dealreg-what-if-")
            .tempdir_in(shm)
            .or_else(|_| {
                tempfile::Builder::new()
                    .prefix("dealreg-what-if-")
                    .tempdir()
            })
    } else {
        tempfile::Builder::new()
            .prefix("dealreg-what-if-")
            .tempdir()
    };
    made.map_err(|e| format!("cannot make a scratch directory: {e}"))
}

/// Decides the history of `spec` again under the draft at `policy_path`.
pub async fn report(
    spec: &super::store::StoreSpec,
    draft: &Policy,
    from: Option<DateTime<Utc>>,
    tick: Duration,
) -> Result<Report, String> {
    let store = super::store::open_read(spec).await?;
    let history = history::read(&store).await?;
    let (Some(first_at), Some(last_at)) = (history.first_at, history.last_at) else {
        return Err("the log is empty: there is no history to decide again".into());
    };
    let scratch = scratch_dir()?;
    let initial = match from {
        None => draft.clone(),
        Some(_) => history
            .first_policy
            .clone()
            .unwrap_or_else(Policy::default_program),
    };
    let mut rerun =
        Rerun::open(&scratch.path().join("what-if.db"), first_at, initial, tick).await?;
    let mut adopted_as = from.is_none().then_some(draft.version);
    let mut bootstrap_seen = false;
    for recorded in &history.commands {
        if let Some(from) = from {
            if adopted_as.is_none() && recorded.decided_at >= from {
                rerun.run_due(from).await?;
                adopted_as = Some(rerun.adopt_draft(draft).await?);
            }
        }
        if recorded.name == "adopt_policy" {
            if !bootstrap_seen {
                // The program's first policy: adopted when the scratch program opened.
                bootstrap_seen = true;
                if from.is_none() {
                    rerun.count_replaced();
                } else {
                    rerun.coverage.recorded += 1;
                    rerun.coverage.decided_again += 1;
                }
                continue;
            }
            if adopted_as.is_some() {
                rerun.count_replaced();
                continue;
            }
        }
        rerun.replay(recorded).await?;
    }
    if let (Some(from), None) = (from, adopted_as) {
        rerun.run_due(from).await?;
        adopted_as = Some(rerun.adopt_draft(draft).await?);
    }
    rerun.run_due(last_at).await?;
    let differences = outcome::compare(&history.outcome, &rerun.outcome);
    Ok(Report {
        draft: DraftSeen {
            name: draft.name.clone(),
            adopted_as_version: adopted_as.unwrap_or(draft.version),
            from,
        },
        history: HistorySeen {
            events: history.outcome.events,
            commands: history.commands.len() as u64,
            first_at,
            until: last_at,
        },
        coverage: rerun.coverage,
        decided_otherwise: rerun.decided_otherwise,
        differences,
    })
}

pub async fn run(spec: &super::store::StoreSpec, args: WhatIfArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.policy).map_err(|e| {
        format!(
            "cannot read the draft policy {}: {e}",
            args.policy.display()
        )
    })?;
    let draft = Policy::from_toml(&text).map_err(|e| {
        format!(
            "the draft policy {} is not valid: {e}",
            args.policy.display()
        )
    })?;
    let started = Instant::now();
    let tick = Duration::seconds(i64::try_from(args.tick_secs.max(1)).unwrap_or(60));
    let report = report(spec, &draft, args.from, tick).await?;
    eprintln!(
        "what-if: {} events, {} commands decided again in {:.1} s",
        report.history.events,
        report.coverage.decided_again,
        started.elapsed().as_secs_f64()
    );
    let rendered = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n",
        Format::Text => page::text(&report),
        Format::Html => page::html(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, rendered)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(rendered.as_bytes())
            .map_err(|e| e.to_string())?,
    }
    Ok(ExitCode::SUCCESS)
}
