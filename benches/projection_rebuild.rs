//! Projection rebuild throughput over a large log, next to two floors measured in the same
//! run on the same file:
//!
//! - the plain scan: one SQLite statement over the `events` table, each payload decoded
//!   into an `Event` with serde, nothing else (what any reader of the file pays);
//! - the read-and-decode floor: the same events read through the store's trait (pages of
//!   the log) and decoded through the upcaster chain, as every projection reads them.
//!
//! The rebuild is what `dealreg rebuild pipeline` does: the pipeline projection from the
//! origin, saved on the way (every 2 s or 50,000 changed rows, the runner's default) and
//! when done; `1 save` is the same fold saved only at the end, `fold` the fold not saved.
//!
//! Run: `cargo bench --bench projection_rebuild` (env `DEALREG_BENCH_EVENTS`, default
//! 1_000_000; `DEALREG_BENCH_STORE=path` keeps the log in that file and reuses it when it
//! already holds enough events, for profiling runs). The log is written through the engine (partners submit, the channel manager
//! approves; 3 events per registration), so it is a real log, not a synthetic table.

/// mimalloc, as in the `dealreg` binary: the engine's cost includes its allocator, so the
/// benches measure the one the product runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "load.rs"]
mod load;

use std::sync::Arc;
use std::time::Instant;

use dealreg_clock::ControlledClock;
use dealreg_domain::Event;
use dealreg_engine::decode_event;
use dealreg_engine::runner::{rebuild, CatchUp};
use dealreg_engine::Engine;
use dealreg_projections::pipeline::Pipeline;
use dealreg_store::{CheckpointStore, EventStore, GlobalPosition, LogPages};
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};

fn main() {
    let target: usize = std::env::var("DEALREG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = std::env::var_os("DEALREG_BENCH_STORE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("rebuild.db"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("store: {e}"));

    let fill_started = Instant::now();
    let present = store.head().borrow().0 as usize;
    if present < target {
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
                        task.await
                            .unwrap_or_else(|e| panic!("a command of the log failed: {e}"));
                    }
                }
            }
            for task in tasks {
                task.await
                    .unwrap_or_else(|e| panic!("a command of the log failed: {e}"));
            }
        });
    }
    let events = store.head().borrow().0;
    let fill = fill_started.elapsed();

    // The plain scan: one statement, serde decode, nothing else.
    let (scan_secs, scanned) = {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap_or_else(|e| panic!("open: {e}"));
        let started = Instant::now();
        let mut query = conn
            .prepare("SELECT data FROM events ORDER BY position")
            .unwrap_or_else(|e| panic!("prepare: {e}"));
        let mut rows = query.query([]).unwrap_or_else(|e| panic!("query: {e}"));
        let mut scanned = 0u64;
        while let Ok(Some(row)) = rows.next() {
            let data = row.get_ref(0).map(|v| v.as_bytes().unwrap_or_default());
            if let Ok(data) = data {
                if serde_json::from_slice::<Event>(data).is_ok() {
                    scanned += 1;
                }
            }
        }
        (started.elapsed().as_secs_f64(), scanned)
    };
    assert_eq!(scanned, events, "every event decodes in the plain scan");

    // The floor: read every event through the store's trait and decode it through the
    // upcaster chain, nothing else.
    let (floor_secs, decoded) = runtime.block_on(async {
        let started = Instant::now();
        let mut pages = LogPages::new(&store, GlobalPosition::ORIGIN, 4096);
        let mut decoded = 0u64;
        while let Some(page) = pages
            .next_page()
            .await
            .unwrap_or_else(|e| panic!("read: {e}"))
        {
            for recorded in &page {
                decode_event(recorded).unwrap_or_else(|e| panic!("decode: {e}"));
                decoded += 1;
            }
        }
        (started.elapsed().as_secs_f64(), decoded)
    });
    assert_eq!(decoded, events, "every event decodes");

    // A replay (`dealreg replay --as-of`): the same read and decode, folding every view
    // at once, in memory, nothing saved.
    let replay_secs = runtime.block_on(async {
        use dealreg_projections::{
            conflicts::ConflictFlags, ledger::Ledger, metrics::ProgramMetrics, Projection,
        };
        let started = Instant::now();
        let (mut p, mut l, mut c, mut m) = (
            Pipeline::default(),
            Ledger::default(),
            ConflictFlags::default(),
            ProgramMetrics::default(),
        );
        let mut pages = LogPages::new(&store, GlobalPosition::ORIGIN, 4096);
        while let Some(page) = pages
            .next_page()
            .await
            .unwrap_or_else(|e| panic!("read: {e}"))
        {
            for recorded in &page {
                let event = decode_event(recorded).unwrap_or_else(|e| panic!("decode: {e}"));
                let at = recorded.position.0;
                p.apply(at, &event);
                l.apply(at, &event);
                c.apply(at, &event);
                m.apply(at, &event);
            }
        }
        assert!(p.rows().count() > 0, "the replay folded registrations");
        started.elapsed().as_secs_f64()
    });

    let views = SqliteCheckpoints::open(&path).unwrap_or_else(|e| panic!("views: {e}"));
    // The fold alone: the same run, ended before its final save (saves on the way too are
    // left out: the interval is longer than the run). A reused store's saved rows are
    // forgotten first, outside the timing.
    let fold_secs = runtime.block_on(async {
        views
            .reset("pipeline")
            .await
            .unwrap_or_else(|e| panic!("reset: {e}"));
        let started = Instant::now();
        let how = CatchUp {
            save_interval: std::time::Duration::from_secs(3600),
            rows_per_save: usize::MAX,
            stop_after: Some(events),
            ..CatchUp::default()
        };
        let caught = rebuild::<Pipeline, _, _>(&store, &views, how, |_| {})
            .await
            .unwrap_or_else(|e| panic!("fold: {e}"));
        assert_eq!(caught.folded, events);
        started.elapsed().as_secs_f64()
    });
    // The fold with one save, at the end: what the saves on the way cost.
    let one_save_secs = runtime.block_on(async {
        let started = Instant::now();
        let how = CatchUp {
            save_interval: std::time::Duration::from_secs(3600),
            rows_per_save: usize::MAX,
            ..CatchUp::default()
        };
        let caught = rebuild::<Pipeline, _, _>(&store, &views, how, |_| {})
            .await
            .unwrap_or_else(|e| panic!("one save: {e}"));
        assert_eq!(caught.folded, events);
        started.elapsed().as_secs_f64()
    });
    // The rebuild: what `dealreg rebuild pipeline` does.
    let (rebuild_secs, rows) = runtime.block_on(async {
        let started = Instant::now();
        let caught = rebuild::<Pipeline, _, _>(&store, &views, CatchUp::default(), |_| {})
            .await
            .unwrap_or_else(|e| panic!("rebuild: {e}"));
        assert_eq!(caught.folded, events, "the rebuild folded every event");
        let rows: usize = caught.state.rows().count();
        (started.elapsed().as_secs_f64(), rows)
    });
    let per_s = |secs: f64| events as f64 / secs;
    println!("dealreg projection rebuild (pipeline view, SQLite store)");
    println!(
        "  log    : {events} events written through the engine in {:.1} s",
        fill.as_secs_f64()
    );
    println!(
        "  scan   : plain SQLite scan + serde decode        {:>10.0} events/s ({scan_secs:.2} s)",
        per_s(scan_secs)
    );
    println!(
        "  floor  : read through the store + decode        {:>10.0} events/s ({floor_secs:.2} s)",
        per_s(floor_secs)
    );
    println!(
        "  rebuild: read + decode + fold + saves            {:>10.0} events/s ({rebuild_secs:.2} s, {rows} registrations; saved every 2 s or 50,000 rows, and at the end)",
        per_s(rebuild_secs)
    );
    println!(
        "  1 save : read + decode + fold, saved at the end  {:>10.0} events/s ({one_save_secs:.2} s)",
        per_s(one_save_secs)
    );
    println!(
        "  fold   : read + decode + fold, not saved         {:>10.0} events/s ({fold_secs:.2} s)",
        per_s(fold_secs)
    );
    println!(
        "  replay : read + decode + fold of all 4 views     {:>10.0} events/s ({replay_secs:.2} s; `dealreg replay --as-of`, in memory)",
        per_s(replay_secs)
    );
    println!(
        "  ratios : floor ÷ scan = {:.3}; rebuild ÷ floor = {:.3}; replay ÷ floor = {:.3}",
        scan_secs / floor_secs,
        floor_secs / rebuild_secs,
        floor_secs / replay_secs
    );
}
