//! `dealreg replay --as-of <position | RFC 3339 time>`: every view as it stood then,
//! folded from the origin in memory (nothing is written, so it runs on a read-only copy).
//! Prints one view (`--view`) or writes them all as one JSON document; all of them are
//! folded from one read of the log on separate threads ([`dealreg_host::parallel`]).
//! Which views there are, and how each is shown, is the catalogue's
//! ([`dealreg_host::registry::Catalogue`]: the views it shows).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dealreg_host::parallel::{fold_threads_for, replay_together, Folding};
use dealreg_host::registry::Catalogue;
use dealreg_store_sqlite::SqliteCheckpoints;

use super::view::{folded_any, AsOf};

/// The catalogue the CLI reads its views from.
type Views = Catalogue<super::store::Log, SqliteCheckpoints>;

/// One view as JSON as of `as_of`, with the position it covers; the same JSON as
/// `dealreg view <name> --json` (the vendor's pipeline).
pub async fn view_json(
    spec: &super::store::StoreSpec,
    name: &str,
    as_of: AsOf,
) -> Result<(serde_json::Value, dealreg_events::Position), String> {
    let catalogue = Views::standard();
    let entry = catalogue.shown_view(name)?;
    let (state, at) = folded_any(spec, entry.fresh(), as_of).await?;
    let json = entry
        .json(&*state.into_any())
        .unwrap_or_else(|| Err(format!("`{name}` is not shown")))?;
    Ok((json, at))
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
            let catalogue = Views::standard();
            let shown: Vec<_> = catalogue.shown().collect();
            let folds: Vec<Box<dyn Folding>> = shown.iter().map(|v| v.fresh()).collect();
            let replayed = replay_together(
                &store,
                folds,
                fold_threads_for(shown.len()),
                |position, event| as_of.ends_before(position, event),
                |p| super::progress_bar("replaying", p),
            )
            .await
            .map_err(|e| e.to_string())?;
            eprintln!();
            let (covered, folded) = (replayed.position, replayed.folded);
            if replayed.folds.len() != shown.len() {
                return Err("the replay lost a view".into());
            }
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "replayed {folded} events into {} views in {seconds:.2} s ({:.0} events/s), as of position {covered}",
                shown.len(),
                folded as f64 / seconds.max(1e-9)
            );
            let mut all = serde_json::Map::new();
            for (entry, fold) in shown.iter().zip(replayed.folds) {
                if fold.name() != entry.name {
                    return Err(format!(
                        "the replay's `{}` view came back as `{}`",
                        entry.name,
                        fold.name()
                    ));
                }
                let json = entry
                    .json(&*fold.into_any())
                    .unwrap_or_else(|| Err(format!("`{}` is not shown", entry.name)))?;
                all.insert(entry.name.into(), json);
            }
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
