//! `dealreg replay --as-of <position | RFC 3339 time>`: every view as it stood then,
//! folded from the origin in memory (nothing is written, so it runs on a read-only copy).
//! Prints one view (`--view`) or writes them all as one JSON document; all of them are
//! folded from one read of the log on separate threads ([`dealreg_engine::parallel`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::program::Program;

use dealreg_engine::parallel::{fold_threads_for, replay_together, Folding};

use super::view::{conflicts_json, ledger_json, state, AsOf};

/// The views a replay can show.
pub const VIEWS: [&str; 5] = ["pipeline", "ledger", "conflicts", "metrics", "program"];

/// One view as JSON as of `as_of`, with the position it covers; the same JSON as
/// `dealreg view <name> --json` (the vendor's pipeline).
pub async fn view_json(
    spec: &super::store::StoreSpec,
    name: &str,
    as_of: AsOf,
) -> Result<(serde_json::Value, dealreg_events::Position), String> {
    let encode = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| e.to_string());
    Ok(match name {
        "pipeline" => {
            let (p, at) = state::<Pipeline>(spec, as_of).await?;
            (encode(serde_json::to_value(p.vendor_view()))?, at)
        }
        "ledger" => {
            let (l, at) = state::<Ledger>(spec, as_of).await?;
            (ledger_json(&l, None), at)
        }
        "conflicts" => {
            let (c, at) = state::<ConflictFlags>(spec, as_of).await?;
            (conflicts_json(&c, None), at)
        }
        "metrics" => {
            let (m, at) = state::<ProgramMetrics>(spec, as_of).await?;
            (encode(serde_json::to_value(m.report()))?, at)
        }
        "program" => {
            let (p, at) = state::<Program>(spec, as_of).await?;
            (encode(serde_json::to_value(p.report()))?, at)
        }
        other => {
            return Err(format!(
                "`{other}` is not a view; choose one of {}",
                VIEWS.join(", ")
            ))
        }
    })
}

pub async fn run(
    spec: &super::store::StoreSpec,
    as_of: AsOf,
    view: Option<String>,
    out: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let document = match &view {
        Some(name) => view_json(spec, name, as_of).await?.0,
        None => {
            // Every view from one pass over the log, folded on separate threads.
            let started = Instant::now();
            let store = super::store::open_read(spec).await?;
            let folds: Vec<Box<dyn Folding>> = vec![
                Box::new(Pipeline::default()),
                Box::new(Ledger::default()),
                Box::new(ConflictFlags::default()),
                Box::new(ProgramMetrics::default()),
                Box::new(Program::default()),
            ];
            let replayed = replay_together(
                &store,
                folds,
                fold_threads_for(VIEWS.len()),
                |position, event| as_of.ends_before(position, event),
                |p| super::progress_bar("replaying", p),
            )
            .await
            .map_err(|e| e.to_string())?;
            eprintln!();
            let (covered, folded) = (replayed.position, replayed.folded);
            let mut folds = replayed.folds.into_iter().map(Folding::into_any);
            let mut next = || folds.next().ok_or("the replay lost a view");
            let pipeline = next()?
                .downcast::<Pipeline>()
                .map_err(|_| "the replay's first view is not the pipeline")?;
            let ledger = next()?
                .downcast::<Ledger>()
                .map_err(|_| "the replay's second view is not the ledger")?;
            let conflicts = next()?
                .downcast::<ConflictFlags>()
                .map_err(|_| "the replay's third view is not the conflicts")?;
            let metrics = next()?
                .downcast::<ProgramMetrics>()
                .map_err(|_| "the replay's fourth view is not the metrics")?;
            let program = next()?
                .downcast::<Program>()
                .map_err(|_| "the replay's fifth view is not the program")?;
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "replayed {folded} events into {} views in {seconds:.2} s ({:.0} events/s), as of position {covered}",
                VIEWS.len(),
                folded as f64 / seconds.max(1e-9)
            );
            let encode = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| e.to_string());
            let mut all = serde_json::Map::new();
            all.insert(
                "pipeline".into(),
                encode(serde_json::to_value(pipeline.vendor_view()))?,
            );
            all.insert("ledger".into(), ledger_json(&ledger, None));
            all.insert("conflicts".into(), conflicts_json(&conflicts, None));
            all.insert(
                "metrics".into(),
                encode(serde_json::to_value(metrics.report()))?,
            );
            all.insert(
                "program".into(),
                encode(serde_json::to_value(program.report()))?,
            );
            all.insert("position".into(), covered.to_string().into());
            serde_json::Value::Object(all)
        }
    };
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    match out {
        Some(file) => std::fs::write(&file, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}").map_err(|e| e.to_string())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
