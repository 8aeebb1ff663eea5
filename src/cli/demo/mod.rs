//! `dealreg demo`: a realistic 120-day partner program on a fresh embedded store.
//!
//! The demo is a client like any other: it sends JSON commands through the engine with a
//! controllable clock, acting as eight partners, the channel manager, direct sales and the
//! timekeeper. At the end it reads the log back and prints what a channel manager wants to
//! see. Nothing in the summary comes from the demo's own bookkeeping: it is all folded from
//! the recorded events.

mod commands;
mod story;
mod summary;
mod views;

use std::path::Path;

use chrono::{TimeZone, Utc};
use dealreg_clock::ControlledClock;
use dealreg_store::sqlite::SqliteStore;
use dealreg_store::{EventStore, GlobalPosition};

use crate::engine::Engine;

/// The component name the demo writes as; a store whose first event carries it may be
/// replaced by the next demo run without `--force`.
const DEMO_MARK: &str = "dealreg-demo";

pub async fn run(path: &Path, force: bool) -> Result<std::process::ExitCode, String> {
    prepare_store_file(path, force).await?;
    let store = SqliteStore::open(path)
        .map_err(|e| format!("cannot create the store {}: {e}", path.display()))?;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .ok_or("the demo's start date is invalid")?;
    let clock = ControlledClock::starting_at(start);
    let engine = Engine::open_as(store.clone(), clock.clone(), Some(demo_policy()), DEMO_MARK)
        .await
        .map_err(|e| format!("the engine did not start: {e}"))?;
    let report = story::play(&engine, &clock, start)
        .await
        .map_err(|e| format!("the demo stopped: {e}"))?;
    let summary = summary::fold(&store).await.map_err(|e| e.to_string())?;
    let chains = crate::cli::verify::verify_chains(&store)
        .await
        .map_err(|e| e.to_string())?;
    summary::print(&summary, &report, &chains, path);
    views::print(&store, path).await?;
    if chains.breaks.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::from(2))
    }
}

/// The default program policy, marked as the demo's so a later demo run may replace the
/// store. Everything else is the built-in default.
fn demo_policy() -> dealreg_domain::Policy {
    dealreg_domain::Policy::default_program()
}

/// Refuses to overwrite a store that is not a demo's unless `--force` is given.
async fn prepare_store_file(path: &Path, force: bool) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    if !force {
        let is_demo = match SqliteStore::open(path) {
            Ok(store) => {
                let first = store
                    .read_all(GlobalPosition::ORIGIN, 1)
                    .await
                    .unwrap_or_default();
                let demo = first.first().is_some_and(|e| {
                    serde_json::from_slice::<serde_json::Value>(&e.metadata)
                        .ok()
                        .and_then(|m| m["actor"]["component"].as_str().map(|c| c == DEMO_MARK))
                        .unwrap_or(false)
                });
                demo || first.is_empty()
            }
            Err(_) => false,
        };
        if !is_demo {
            return Err(format!(
                "{} holds a store that the demo did not write; pass --force to replace it or --store to use another file",
                path.display()
            ));
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot replace {}: {e}",
                    Path::new(&file).display()
                ))
            }
        }
    }
    Ok(())
}
