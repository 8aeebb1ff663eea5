//! Durable command throughput through the engine on the SQLite store, next to the floor:
//! the very rows the engine wrote (same bytes, idempotency keys in them, tips, schema and sync
//! settings), written again with raw statements in the engine's own group commits, in the
//! same run (`floor.rs`).
//!
//! Run: `cargo bench --bench command_throughput` (env: `DEALREG_BENCH_REGISTRATIONS`,
//! default 4000; `DEALREG_BENCH_IN_FLIGHT`, default 64; `DEALREG_BENCH_PARTNERS`, 256).
//!
//! Each registration is two commands (see `load.rs`). Many registrations are in flight at
//! once, so group commit can batch them; every reply is only given after its fsync.

/// The allocator and its settings, as in the `dealreg` binary: the engine's cost includes
/// them, so the benches measure what the product runs with.
#[path = "../src/allocator.rs"]
mod allocator;

#[path = "floor.rs"]
mod floor;
#[path = "load.rs"]
mod load;

use std::sync::Arc;
use std::time::Instant;

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::EventStore;
use dealreg_store_sqlite::{SqliteOptions, SqliteStore};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The key vault contacts are sealed with: the store's file (`<store>-keys`) as `dealreg
/// apply` and `serve` use it, unless `DEALREG_BENCH_VAULT=memory` (to see its cost).
/// Every registration of the load names a new contact, so each one writes a new key.
fn vault_for(db: &std::path::Path) -> Arc<dyn dealreg_vault::KeyVault> {
    if std::env::var("DEALREG_BENCH_VAULT").is_ok_and(|v| v == "memory") {
        println!("  (key vault in memory: DEALREG_BENCH_VAULT=memory)");
        Arc::new(dealreg_vault::MemoryVault::new(
            dealreg_vault::KeyMaterial::Random,
        ))
    } else {
        Arc::new(
            dealreg_store_sqlite::SqliteVault::open(db, dealreg_vault::KeyMaterial::Random)
                .unwrap_or_else(|e| panic!("vault: {e}")),
        )
    }
}

fn main() {
    allocator::tune();
    let registrations = env_usize("DEALREG_BENCH_REGISTRATIONS", 4000);
    let in_flight = env_usize("DEALREG_BENCH_IN_FLIGHT", 64).max(1);
    let partner_count = env_usize("DEALREG_BENCH_PARTNERS", 256).max(1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let db = dir.path().join("bench.db");
    let store = SqliteStore::open_with(&db, &SqliteOptions::create().record_commits())
        .unwrap_or_else(|e| panic!("cannot open the store: {e}"));

    let (events, elapsed, before, setup, races) = runtime.block_on(async {
        let engine = Arc::new(
            Engine::open(
                store.clone(),
                ControlledClock::starting_at(load::start()),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("engine: {e}"))
            .with_vault(vault_for(&db)),
        );
        let partners = load::onboard_partners(&engine, partner_count).await;
        let setup = store.stats();
        let before = store
            .last_position()
            .await
            .unwrap_or_else(|e| panic!("head: {e}"))
            .commit();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(registrations);
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
        }
        for task in tasks {
            // A failed command fails the bench (its task panicked).
            task.await
                .unwrap_or_else(|e| panic!("a benchmark command failed: {e}"));
        }
        let elapsed = start.elapsed();
        // Every event the commands wrote: their replies name their own boundary's, and
        // a submission also takes its partner's capacity slot on the partner's stream.
        let after = store
            .last_position()
            .await
            .unwrap_or_else(|e| panic!("head: {e}"))
            .commit();
        let events = usize::try_from(after - before).unwrap_or(usize::MAX);
        let races = engine.stats().decided_again;
        (events, elapsed, before, setup, races)
    });
    let commands = registrations * 2;
    let mut stats = store.stats();
    stats.jobs -= setup.jobs;
    stats.commits -= setup.commits;
    let marks = store.commit_marks();
    drop(store);

    let floor = floor::replay_engine_rows(&db, before, &marks, &dir.path().join("floor.db"))
        .unwrap_or_else(|e| panic!("floor: {e}"));
    assert_eq!(
        floor.rows, events,
        "the floor writes exactly the engine's rows"
    );
    let commands_per_s = commands as f64 / elapsed.as_secs_f64();
    let events_per_s = events as f64 / elapsed.as_secs_f64();
    println!("dealreg command throughput (SQLite, WAL, synchronous=FULL, {in_flight} registrations in flight, {partner_count} partners)");
    println!("  engine : {commands} commands, {events} events in {elapsed:.2?}");
    println!("           {commands_per_s:>10.0} commands/s  {events_per_s:>10.0} events/s");
    println!(
        "           group commit: {} commits (fsyncs) for {} appends ({:.1} appends/commit)",
        stats.commits,
        stats.jobs,
        stats.jobs as f64 / stats.commits.max(1) as f64
    );
    println!(
        "           ({} appends for {commands} commands: a submission also takes its partner's capacity slot; {races} decisions were made again after a lost optimistic-concurrency race)",
        stats.jobs
    );
    println!(
        "  floor  : the same {} rows ({} appends: events with their idempotency keys, stream tips) in the engine's {} commits, raw statements, in {:.2?}",
        floor.rows, floor.appends, floor.commits, floor.elapsed
    );
    println!("           {:>10.0} rows/s", floor.rows_per_second());
    println!(
        "  ratio  : engine events/s ÷ floor rows/s = {:.3}",
        events_per_s / floor.rows_per_second()
    );
}
