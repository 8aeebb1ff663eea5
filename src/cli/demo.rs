//! `dealreg demo [--force] [--seed N]`: the seeded demo on a fresh embedded store.

use std::path::Path;
use std::process::ExitCode;

use dealreg_demo::DEMO_MARK;
use dealreg_events::{EventStore, Position};
use dealreg_store_sqlite::{OpenError, SqliteStore};

pub async fn run(
    spec: &super::store::StoreSpec,
    force: bool,
    seed: u64,
) -> Result<ExitCode, String> {
    if let Some(path) = spec.sqlite_path() {
        prepare_store_file(path, force).await?;
    }
    let (store, checkpoints) = super::store::create_or_open(spec).await?;
    if store.last_position().await.map_err(|e| e.to_string())? != Position::ORIGIN {
        return Err(format!(
            "{spec} already holds events; the demo writes a log of its own into an empty store (pass --force to replace a SQLite file, or choose another --store)"
        ));
    }
    // The demo's people are invented and its log must be the same bytes on every run:
    // its vault derives keys from the seed (never do that for real people).
    let vault = super::store::vault(spec, dealreg_vault::KeyMaterial::Seeded(seed)).await?;
    let run = dealreg_demo::run_in(store, &checkpoints, seed, vault)
        .await
        .map_err(|e| format!("the demo stopped: {e}"))?;
    print!("{}", run.text);
    match spec.sqlite_path() {
        Some(path) => println!(
            "Store: {} (seed {seed}; open it with `sqlite3`, or `dealreg --store {} events`)",
            path.display(),
            path.display()
        ),
        None => {
            println!("Store: {spec} (seed {seed}; `dealreg --store {spec} events` prints its log)")
        }
    }
    Ok(if run.chains_intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Refuses to overwrite a store that is not a demo's unless `--force` is given.
async fn prepare_store_file(path: &Path, force: bool) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    if !force {
        // Opened without creating anything: a file that is not a store is not the demo's.
        let is_demo = match SqliteStore::open_existing(path) {
            Ok(store) => {
                let first = store
                    .read_all(Position::ORIGIN, 1)
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
            Err(OpenError::Empty { .. }) => true,
            Err(_) => false,
        };
        if !is_demo {
            return Err(format!(
                "{} holds a store that the demo did not write; pass --force to replace it or --store to use another file",
                path.display()
            ));
        }
    }
    // The store and its keys go together: a new demo starts with no person known.
    for suffix in ["", "-wal", "-shm", "-keys", "-keys-wal", "-keys-shm"] {
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
