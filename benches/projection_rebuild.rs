//! Projection rebuild throughput over a large log, next to the floor of reading and
//! decoding the same events without projecting, measured in the same run.
//!
//! Run: `cargo bench --bench projection_rebuild` (env `DEALREG_BENCH_EVENTS`, default
//! 1_000_000). The log is written through the engine (partners submit, the channel manager
//! approves; 3 events per registration), so it is a real log, not a synthetic table.

#[path = "load.rs"]
mod load;

use std::sync::Arc;
use std::time::Instant;

use dealreg_clock::ControlledClock;
use dealreg_engine::decode_event;
use dealreg_engine::runner::{rebuild, CatchUp};
use dealreg_engine::Engine;
use dealreg_projections::pipeline::Pipeline;
use dealreg_store::{EventStore, GlobalPosition, LogPages};
use dealreg_store_sqlite::SqliteCheckpoints;
use dealreg_store_sqlite::SqliteStore;

fn main() {
    let target: usize = std::env::var("DEALREG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("rebuild.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("store: {e}"));

    let fill_started = Instant::now();
    runtime.block_on(async {
        let engine = Arc::new(
            Engine::open(
                store.clone(),
                ControlledClock::starting_at(load::start()),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("engine: {e}")),
        );
        let partners = load::onboard_partners(&engine, 256).await;
        let registrations = target / 3 + 1;
        let semaphore = Arc::new(tokio::sync::Semaphore::new(128));
        let mut tasks = Vec::new();
        for n in 0..registrations {
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .unwrap_or_else(|e| panic!("semaphore: {e}"));
            let engine = Arc::clone(&engine);
            let partner = partners[n % partners.len()];
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                load::register_and_approve(engine, partner, n).await
            }));
            if tasks.len() >= 4096 {
                for task in tasks.drain(..) {
                    let _ = task.await;
                }
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let events = store.head().borrow().0;
    let fill = fill_started.elapsed();

    // Floor: read and decode every event, nothing else.
    let (floor_secs, decoded) = runtime.block_on(async {
        let started = Instant::now();
        let mut pages = LogPages::new(&store, GlobalPosition::ORIGIN, 4096);
        let mut decoded = 0u64;
        while let Ok(Some(page)) = pages.next_page().await {
            for recorded in &page {
                if decode_event(recorded).is_ok() {
                    decoded += 1;
                }
            }
        }
        (started.elapsed().as_secs_f64(), decoded)
    });
    assert_eq!(decoded, events, "every event decodes");

    // Rebuild: read, decode, fold; once checkpointing every 50k events (what
    // `dealreg rebuild` does), once saving only at the end (the fold's own cost).
    let views = SqliteCheckpoints::open(&path).unwrap_or_else(|e| panic!("views: {e}"));
    let rebuild = |every: u64| {
        runtime.block_on(async {
            let started = Instant::now();
            let how = CatchUp {
                checkpoint_every: every,
                ..CatchUp::default()
            };
            let pipeline = rebuild::<Pipeline, _, _>(&store, &views, how, |_| {})
                .await
                .unwrap_or_else(|e| panic!("rebuild: {e}"))
                .state;
            let rows: usize = pipeline
                .vendor_view()
                .values()
                .flat_map(|s| s.values())
                .map(Vec::len)
                .sum();
            (started.elapsed().as_secs_f64(), rows)
        })
    };
    let (rebuild_secs, rows) = rebuild(50_000);
    let (fold_secs, _) = rebuild(u64::MAX);
    println!("dealreg projection rebuild (pipeline view, SQLite store)");
    println!(
        "  log    : {events} events written through the engine in {:.1} s",
        fill.as_secs_f64()
    );
    println!(
        "  floor  : read + decode         {:>10.0} events/s ({floor_secs:.2} s)",
        events as f64 / floor_secs
    );
    println!("  rebuild: read + decode + fold  {:>10.0} events/s ({rebuild_secs:.2} s, {rows} registrations, checkpoints every 50k)", events as f64 / rebuild_secs);
    println!(
        "  fold   : read + decode + fold, one save at the end {:>10.0} events/s ({fold_secs:.2} s)",
        events as f64 / fold_secs
    );
    println!(
        "  ratio  : rebuild ÷ floor = {:.3}; fold ÷ floor = {:.3}",
        floor_secs / rebuild_secs,
        floor_secs / fold_secs
    );
}
