//! `dealreg rebuild [NAME]`: rebuilds projections from the log, with a progress bar and
//! the throughput, from the engine's one registry of projections.

use std::process::ExitCode;
use std::time::Instant;

use dealreg_engine::registry;
use dealreg_engine::runner::{CatchUp, Progress};
use dealreg_store_sqlite::SqliteCheckpoints;

/// A one-line progress bar on stderr.
fn progress_bar(name: &str, p: Progress) {
    // Positions grow with the log on every backend, though they are not counts.
    let done = p.position.commit() as f64 / p.head.commit().max(1) as f64;
    let filled = (done * 30.0).round().clamp(0.0, 30.0) as usize;
    eprint!(
        "\rrebuilding {name} [{}{}] {:>3.0}% {} events, position {} of {}",
        "#".repeat(filled),
        "-".repeat(30 - filled),
        done * 100.0,
        p.events,
        p.position,
        p.head
    );
}

pub async fn run(
    spec: &super::store::StoreSpec,
    projection: Option<String>,
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
    for entry in all
        .iter()
        .filter(|p| projection.as_deref().is_none_or(|n| n == p.name))
    {
        let started = Instant::now();
        let name = entry.name;
        let mut bar = move |p: Progress| progress_bar(name, p);
        let report = entry
            .rebuild(&store, &checkpoints, how, &mut bar)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "rebuilt {name} (fold version {}) from {} events in {seconds:.2} s ({:.0} events/s)",
            entry.version,
            report.folded,
            report.folded as f64 / seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}
