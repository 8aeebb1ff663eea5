//! `dealreg rebuild [NAME]`: rebuilds projections from the log, with a progress bar and
//! the throughput, from the engine's one registry of projections. The log is read and
//! decoded once for all of them; their folds run on separate threads
//! ([`dealreg_host::parallel`]).

use std::process::ExitCode;
use std::time::Instant;

use dealreg_host::parallel::{rebuild_threads_for, rebuild_together};
use dealreg_host::registry;
use dealreg_host::runner::CatchUp;
use dealreg_store_sqlite::SqliteCheckpoints;

pub async fn run(
    spec: &super::store::StoreSpec,
    projection: Option<String>,
    fold_threads: Option<usize>,
) -> Result<ExitCode, String> {
    let all = registry::projections::<super::store::Log, SqliteCheckpoints>();
    if let Some(name) = projection.as_deref() {
        if !all.iter().any(|p| p.name == name) {
            let known: Vec<&str> = all.iter().map(|p| p.name).collect();
            return Err(format!(
                "there is no projection `{name}`; known: {}",
                known.join(", ")
            ));
        }
    }
    let (store, checkpoints) = super::store::open_existing(spec).await?;
    let how = CatchUp {
        checkpoint_every: 50_000,
        ..CatchUp::default()
    };
    let chosen: Vec<_> = all
        .iter()
        .filter(|p| projection.as_deref().is_none_or(|n| n == p.name))
        .collect();
    let names = chosen.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
    let doing = format!("rebuilding {names}");
    let threads = fold_threads.unwrap_or_else(|| rebuild_threads_for(chosen.len()));
    let started = Instant::now();
    let rebuilt = rebuild_together(
        &store,
        &checkpoints,
        chosen.iter().map(|p| p.fresh()).collect(),
        threads,
        how,
        |p| super::progress_bar(&doing, p),
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    for entry in &chosen {
        eprintln!(
            "rebuilt {} (fold version {}) to position {}",
            entry.name, entry.version, rebuilt.position
        );
    }
    // The rows the rebuilt views replaced are freed now, after the views are complete.
    let dropping = Instant::now();
    checkpoints
        .drop_retired_now()
        .await
        .map_err(|e| format!("the rebuilt views are saved, but their previous rows could not be dropped ({e}); the next rebuild drops them"))?;
    let dropped = dropping.elapsed().as_secs_f64();
    eprintln!(
        "{} events read once and folded into {} projection(s) on {} fold thread(s) in {seconds:.2} s ({:.0} events/s); their previous rows dropped after, in {dropped:.2} s",
        rebuilt.folded,
        chosen.len(),
        threads.min(chosen.len()),
        rebuilt.folded as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
