//! Projection rebuild throughput over a large log, next to two floors measured in the same
//! run on the same file:
//!
//! - the plain scan: one SQLite statement over the `events` table, each payload decoded
//!   into an `Event` with serde, nothing else (what any reader of the file pays);
//! - the read-and-decode floor: the same events read through the store's trait (pages of
//!   the log) and decoded through the upcaster chain, as every projection reads them;
//!   beside it the same floor with serde's buffered decoder of the internally tagged
//!   `Event` (`floor-buffered`, the decoder before issue 36), the reference of the
//!   tag-first decoder's gain in the same run.
//!
//! - the I/O floor (issue 22): the read-and-decode floor AND the rows the rebuild wrote
//!   (the view's rows, same keys, scopes and bytes, and its feed outbox entries) written
//!   into an empty views file with plain prepared inserts in transactions of 50,000 rows,
//!   WAL and synchronous NORMAL as the views file: the physical limit of the rebuild's
//!   work on this machine.
//!
//! The rebuild is what `dealreg rebuild pipeline` does: the pipeline projection from the
//! origin, saved on the way (every 2 s or 50,000 changed rows, the runner's default) and
//! when done; `1 save` is the same fold saved only at the end, `fold` the fold not saved.
//!
//! Run: `cargo bench --bench projection_rebuild` (env `DEALREG_BENCH_EVENTS`, default
//! 1_000_000; `DEALREG_BENCH_STORE=path` keeps the log in that file and reuses it when it
//! already holds enough events, for profiling runs; `DEALREG_BENCH_ONLY=<phase>` runs one
//! phase alone after the fill, to profile it: scan, floor, floor-buffered, replay, fold,
//! one-save, rebuild). Each phase prints its wall and CPU seconds: on 2 cores a phase whose CPU
//! is near twice its wall time has no idle core left to hide work in. The log is
//! written through the engine (partners submit, the channel manager approves; 3 events
//! per registration), so it is a real log, not a synthetic table.

/// The allocator and its settings, as in the `dealreg` binary: the engine's cost includes
/// them, so the benches measure what the product runs with.
#[path = "../src/allocator.rs"]
mod allocator;

#[path = "cpu.rs"]
mod cpu;
#[path = "load.rs"]
mod load;

use std::time::Instant;

use dealreg_domain::Event;
use dealreg_engine::{decode_buffered, decode_event, EVENT_SCHEMA_VERSION};
use dealreg_events::{EventStore, LogPages, Position, RecordedEvent};
use dealreg_host::runner::{rebuild, CatchUp};
use dealreg_projections::pipeline::Pipeline;
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};
use dealreg_views::CheckpointStore;

fn main() {
    allocator::tune();
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
    let present = runtime
        .block_on(store.last_position())
        .unwrap_or_else(|e| panic!("head: {e}"))
        .commit() as usize;
    if present < target {
        runtime.block_on(load::fill(store.clone(), target));
    }
    let events = runtime
        .block_on(store.last_position())
        .unwrap_or_else(|e| panic!("head: {e}"))
        .commit();
    let fill = fill_started.elapsed();
    let log = Log {
        runtime: &runtime,
        store: &store,
        path: &path,
        events,
    };
    if let Ok(name) = std::env::var("DEALREG_BENCH_ONLY") {
        let phase = Phase::named(&name);
        let took = measure(|| phase.run(&log));
        println!("  {name}: {took}");
        return;
    }
    // In this order: `fold` resets the saved rows a reused store may hold, outside its
    // timing, and each rebuild follows a run that saved the same views, so its reset drops
    // full tables beside its fold, as `dealreg rebuild` over built views does.
    let scan = measure(|| Phase::Scan.run(&log));
    let floor = measure(|| Phase::Floor.run(&log));
    let floor_buffered = measure(|| Phase::FloorBuffered.run(&log));
    let agreed = runtime.block_on(both_decoders_agree(&log));
    let replay = measure(|| Phase::Replay.run(&log));
    let replay_2 = measure(|| Phase::Replay2.run(&log));
    let fold = measure(|| Phase::Fold.run(&log));
    let one_save = measure(|| Phase::OneSave.run(&log));
    let on_task = measure(|| Phase::RebuildOnTask.run(&log));
    let outbox_before = outbox_last(&log);
    let rebuilt = measure(|| Phase::Rebuild.run(&log));
    let dropped = measure(|| drop_previous_rows(&log));
    let written = rows_written(&log, &["pipeline"], outbox_before);
    let io_floor_pipeline = measure(|| io_floor(&log, &written));
    let store_floor_pipeline = measure(|| store_floor(&log, &written));
    let work_floor_pipeline = measure(|| work_floor(&log, &written));
    let all_1 = measure(|| Phase::RebuildAll(1).run(&log));
    let _ = measure(|| drop_previous_rows(&log));
    let outbox_before = outbox_last(&log);
    let all_2 = measure(|| Phase::RebuildAll(2).run(&log));
    let dropped_all = measure(|| drop_previous_rows(&log));
    let names = dealreg_host::registry::names::<SqliteStore, SqliteCheckpoints>();
    let written_all = rows_written(&log, &names, outbox_before);
    let io_floor_all = measure(|| io_floor(&log, &written_all));
    let per_s = |took: &Took| events as f64 / took.wall;
    println!("dealreg projection rebuild (SQLite store)");
    println!(
        "  log    : {events} events written through the engine in {:.1} s",
        fill.as_secs_f64()
    );
    println!("  (CPU: user + system seconds of the whole process in the phase, from /proc/self/stat; 2 cores give at most 2 per second)");
    println!(
        "  scan   : plain SQLite scan + serde decode        {:>10.0} events/s ({scan})",
        per_s(&scan)
    );
    println!(
        "  floor  : read through the store + decode        {:>10.0} events/s ({floor})",
        per_s(&floor)
    );
    println!(
        "  floor (buffered decoder): the same, serde's buffered decode {:>5.0} events/s ({floor_buffered}); floor ÷ this = {:.3}",
        per_s(&floor_buffered),
        floor_buffered.wall / floor.wall
    );
    println!("           (untimed: the two decoders gave the same event for all {agreed} events)");
    println!("  the pipeline view alone:");
    println!(
        "  io floor: read + decode + the same rows written  {:>10.0} events/s ({io_floor_pipeline}; {} rows, {} outbox entries, {:.1} MB of row bytes)",
        per_s(&io_floor_pipeline),
        written.row_count(),
        written.outbox.len(),
        written.row_bytes() as f64 / 1e6
    );
    println!(
        "  work floor: read + decode + fold ‖ serialise + insert + index {:>7.0} events/s ({work_floor_pipeline}; the I/O floor plus the fold, the rows' JSON and the scope index, no coordination)",
        per_s(&work_floor_pipeline)
    );
    println!(
        "  store  : the same rows saved through the views store {:>6.0} events/s ({store_floor_pipeline}; 50,000 a save, outbox and scope index included, nothing folded or serialised)",
        per_s(&store_floor_pipeline)
    );
    println!(
        "  rebuild: `dealreg rebuild pipeline`             {:>10.0} events/s ({rebuilt}; one reader, one fold thread; saved every 2 s or 50,000 rows, and at the end)",
        per_s(&rebuilt)
    );
    println!("           then the previous rows dropped: {dropped} (after the rebuilt view is complete; `dealreg rebuild` waits for it before it exits)");
    println!(
        "  on task: the same, folded on the reader's task  {:>10.0} events/s ({on_task}; the runner's catch-up path)",
        per_s(&on_task)
    );
    println!(
        "  1 save : read + decode + fold, saved at the end  {:>10.0} events/s ({one_save})",
        per_s(&one_save)
    );
    println!(
        "  fold   : read + decode + fold, not saved         {:>10.0} events/s ({fold})",
        per_s(&fold)
    );
    println!("  all {} views ({}):", names.len(), names.join(", "));
    println!(
        "  io floor: read + decode + the same rows written  {:>10.0} events/s ({io_floor_all}; {} rows, {} outbox entries, {:.1} MB of row bytes)",
        per_s(&io_floor_all),
        written_all.row_count(),
        written_all.outbox.len(),
        written_all.row_bytes() as f64 / 1e6
    );
    println!(
        "  rebuild, 1 fold thread  (`dealreg rebuild` on 2 cores)       {:>10.0} events/s ({all_1})",
        per_s(&all_1)
    );
    println!(
        "  rebuild, 2 fold threads (`dealreg rebuild --fold-threads 2`) {:>10.0} events/s ({all_2})",
        per_s(&all_2)
    );
    println!("           then the previous rows dropped: {dropped_all}");
    println!(
        "  replay : read + decode + fold of 4 views, in memory, on the reader's task {:>10.0} events/s ({replay})",
        per_s(&replay)
    );
    println!(
        "  replay : the same on 2 fold threads (`dealreg replay --as-of`)             {:>10.0} events/s ({replay_2})",
        per_s(&replay_2)
    );
    println!(
        "  ratios : floor ÷ scan = {:.3}; pipeline: rebuild ÷ io floor = {:.3}, rebuild ÷ work floor = {:.3}, rebuild ÷ floor = {:.3}; all views: rebuild ÷ io floor = {:.3} (1 fold thread), {:.3} (2); 2 threads ÷ 1 = {:.2}; replay 2 threads ÷ 1 = {:.2}",
        scan.wall / floor.wall,
        io_floor_pipeline.wall / rebuilt.wall,
        work_floor_pipeline.wall / rebuilt.wall,
        floor.wall / rebuilt.wall,
        io_floor_all.wall / all_1.wall,
        io_floor_all.wall / all_2.wall,
        all_1.wall / all_2.wall,
        replay.wall / replay_2.wall
    );
}

/// What one rebuild wrote: each view's rows (key, scope, position, bytes), by row table,
/// and the feed outbox entries (view, key, scope, previous scope, position).
struct Written {
    rows: Vec<(String, Vec<StoredRow>)>,
    outbox: Vec<OutboxEntry>,
}

impl Written {
    fn row_count(&self) -> usize {
        self.rows.iter().map(|(_, rows)| rows.len()).sum()
    }

    fn row_bytes(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.3.len()))
            .sum()
    }
}

/// key, scope, position, row bytes.
type StoredRow = (String, Option<String>, i64, Vec<u8>);
/// view, key, scope, previous scope, position.
type OutboxEntry = (String, String, Option<String>, Option<String>, i64);

fn views_file(log: &Log<'_>) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dealreg_store_sqlite::views_path(log.path),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap_or_else(|e| panic!("open the views file: {e}"))
}

/// The last outbox sequence number before a phase.
fn outbox_last(log: &Log<'_>) -> i64 {
    views_file(log)
        .query_row("SELECT coalesce(max(seq), 0) FROM feed_outbox", [], |r| {
            r.get(0)
        })
        .unwrap_or(0)
}

/// The rows of `views` as the rebuild left them, and the outbox entries it added.
fn rows_written(log: &Log<'_>, views: &[&str], outbox_after: i64) -> Written {
    let conn = views_file(log);
    let mut rows = Vec::new();
    for view in views {
        let table = format!("rows_{view}");
        let Ok(mut select) =
            conn.prepare(&format!("SELECT key, scope, position, row FROM {table}"))
        else {
            continue; // a view that saved no row has no table
        };
        let view_rows = select
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .unwrap_or_else(|e| panic!("rows: {e}"));
        rows.push((table, view_rows));
    }
    let mut outbox = conn
        .prepare("SELECT view, key, scope, previous_scope, position FROM feed_outbox WHERE seq > ?1 ORDER BY seq")
        .unwrap_or_else(|e| panic!("outbox: {e}"));
    let outbox = outbox
        .query_map([outbox_after], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .unwrap_or_else(|e| panic!("outbox: {e}"));
    Written { rows, outbox }
}

/// Reads and decodes the log while another thread writes `written` into an empty views
/// file with plain prepared inserts, 50,000 rows a transaction: both halves of the
/// rebuild's I/O, overlapped as well as two cores allow; done when both are.
fn io_floor(log: &Log<'_>, written: &Written) -> Instant {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let tables: Vec<&str> = written.rows.iter().map(|(t, _)| t.as_str()).collect();
    let conn = empty_views_file(&dir.path().join("floor-views.db"), &tables);
    let started = Instant::now();
    std::thread::scope(|threads| {
        let writer = threads.spawn(|| {
            let mut conn = conn;
            for (table, chunk) in written
                .rows
                .iter()
                .flat_map(|(table, rows)| rows.chunks(50_000).map(move |chunk| (table, chunk)))
            {
                let tx = conn.transaction().unwrap_or_else(|e| panic!("begin: {e}"));
                {
                    let mut insert = tx
                        .prepare_cached(&format!("INSERT INTO {table} (key, scope, position, row) VALUES (?1, ?2, ?3, ?4)"))
                        .unwrap_or_else(|e| panic!("prepare: {e}"));
                    for (key, scope, position, row) in chunk {
                        insert
                            .execute(rusqlite::params![key, scope, position, row])
                            .unwrap_or_else(|e| panic!("insert: {e}"));
                    }
                }
                tx.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            }
            insert_outbox(&mut conn, &written.outbox);
        });
        let decoded = log.runtime.block_on(each_event(log, |_, _| {}));
        assert_eq!(decoded, log.events, "every event decodes");
        writer
            .join()
            .unwrap_or_else(|_| panic!("the floor's writer panicked"));
    });
    started
}

/// The I/O floor's rows written instead through the views store (`SqliteCheckpoints`,
/// saves of 50,000 rows, as the rebuild saves them, outbox included) into an empty views
/// file, while the log is read and decoded: what the store's write path costs over plain
/// inserts, with no fold and no serialising.
fn store_floor(log: &Log<'_>, written: &Written) -> Instant {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let floor_store = dir.path().join("floor.db");
    SqliteStore::open(&floor_store).unwrap_or_else(|e| panic!("store: {e}"));
    let views = SqliteCheckpoints::open(&floor_store).unwrap_or_else(|e| panic!("views: {e}"));
    let registry = dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>();
    // Reset first, as a rebuild does: the rows are written in bulk, the scope index built
    // once at the end.
    for (table, _) in &written.rows {
        log.runtime
            .block_on(views.reset(table.trim_start_matches("rows_")))
            .unwrap_or_else(|e| panic!("reset: {e}"));
    }
    let started = Instant::now();
    std::thread::scope(|threads| {
        let writer = threads.spawn(|| {
            for (table, rows) in &written.rows {
                let view = table.trim_start_matches("rows_");
                let entry = registry
                    .iter()
                    .find(|p| p.name == view)
                    .unwrap_or_else(|| panic!("no view {view}"));
                for chunk in rows.chunks(50_000) {
                    let writes = chunk
                        .iter()
                        .map(|(key, scope, _, row)| dealreg_views::RowWrite {
                            key: key.clone(),
                            scope: scope.clone(),
                            row: Some(row.clone()),
                        })
                        .collect();
                    let checkpoint = dealreg_views::Checkpoint {
                        position: Position::at(chunk.last().map_or(1, |r| r.2.max(1) as u64)),
                        version: entry.version,
                        state: b"{}".to_vec(),
                    };
                    let saved = if entry.published.is_empty() {
                        log.runtime
                            .block_on(views.save_rows(entry.name, checkpoint, writes))
                    } else {
                        log.runtime
                            .block_on(views.save_published_rows(entry.name, checkpoint, writes))
                    };
                    saved.unwrap_or_else(|e| panic!("save: {e}"));
                }
                log.runtime
                    .block_on(views.caught_up(view))
                    .unwrap_or_else(|e| panic!("caught up: {e}"));
            }
        });
        let decoded = log.runtime.block_on(each_event(log, |_, _| {}));
        assert_eq!(decoded, log.events, "every event decodes");
        writer
            .join()
            .unwrap_or_else(|_| panic!("the store floor's writer panicked"));
    });
    started
}

/// An empty views file for a floor: the settings of the views file (WAL, synchronous
/// NORMAL, a 64 MiB cache), the feed outbox and the row tables named.
fn empty_views_file(path: &std::path::Path, tables: &[&str]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open: {e}"));
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;
         CREATE TABLE feed_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, view TEXT NOT NULL, key TEXT NOT NULL,
                                   scope TEXT, previous_scope TEXT, position INTEGER NOT NULL);",
    )
    .unwrap_or_else(|e| panic!("schema: {e}"));
    for table in tables {
        conn.execute_batch(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, scope TEXT, position INTEGER NOT NULL, row BLOB NOT NULL) WITHOUT ROWID;"
        ))
        .unwrap_or_else(|e| panic!("schema: {e}"));
    }
    conn
}

/// The outbox entries inserted with a plain prepared insert, 50,000 a transaction.
fn insert_outbox(conn: &mut rusqlite::Connection, outbox: &[OutboxEntry]) {
    for chunk in outbox.chunks(50_000) {
        let tx = conn.transaction().unwrap_or_else(|e| panic!("begin: {e}"));
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO feed_outbox (view, key, scope, previous_scope, position) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap_or_else(|e| panic!("prepare: {e}"));
            for (view, key, scope, previous, position) in chunk {
                insert
                    .execute(rusqlite::params![view, key, scope, previous, position])
                    .unwrap_or_else(|e| panic!("insert: {e}"));
            }
        }
        tx.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    }
}

/// The log under measurement, and what reads it.
struct Log<'a> {
    runtime: &'a tokio::runtime::Runtime,
    store: &'a SqliteStore,
    path: &'a std::path::Path,
    events: u64,
}

/// One measured pass over the log. `DEALREG_BENCH_ONLY=<name>` runs one alone (after the
/// fill), for a profiler.
#[derive(Clone, Copy)]
enum Phase {
    /// One statement over the events table, serde decode, nothing else.
    Scan,
    /// Every event read through the store's trait and decoded through the upcaster chain.
    Floor,
    /// The same read, each current-schema payload decoded by serde's buffered decoder of
    /// the internally tagged `Event` (the decoder before issue 36): the floor's reference.
    FloorBuffered,
    /// The same read and decode, folding the four replayed views at once on the reader's
    /// task, in memory, nothing saved.
    Replay,
    /// The same replay with one reader and 2 fold threads, as `dealreg replay --as-of`.
    Replay2,
    /// The pipeline's fold from the origin, ended before its final save (saves on the way
    /// are left out too: the interval is longer than the run).
    Fold,
    /// The same fold saved once, at the end: what the saves on the way cost.
    OneSave,
    /// The pipeline rebuilt by the runner's catch-up, folding on the reader's task.
    RebuildOnTask,
    /// What `dealreg rebuild pipeline` does: one reader, one fold thread.
    Rebuild,
    /// What `dealreg rebuild --fold-threads N` does: every view, one reader, N fold threads.
    RebuildAll(usize),
}

impl Phase {
    fn named(name: &str) -> Phase {
        match name {
            "scan" => Phase::Scan,
            "floor" => Phase::Floor,
            "floor-buffered" => Phase::FloorBuffered,
            "replay" => Phase::Replay,
            "replay-2" => Phase::Replay2,
            "fold" => Phase::Fold,
            "one-save" => Phase::OneSave,
            "rebuild-on-task" => Phase::RebuildOnTask,
            "rebuild" => Phase::Rebuild,
            "rebuild-all-1" => Phase::RebuildAll(1),
            "rebuild-all-2" => Phase::RebuildAll(2),
            other => panic!(
                "DEALREG_BENCH_ONLY={other}: say scan, floor, floor-buffered, replay, replay-2, fold, one-save, rebuild-on-task, rebuild, rebuild-all-1 or rebuild-all-2"
            ),
        }
    }

    /// Runs the phase; what is timed starts after any setup it needs.
    fn run(self, log: &Log<'_>) -> Instant {
        match self {
            Phase::Scan => scan(log),
            Phase::Floor => log.runtime.block_on(floor(log, decode_event)),
            Phase::FloorBuffered => log.runtime.block_on(floor(log, decode_event_buffered)),
            Phase::Replay => log.runtime.block_on(replay(log)),
            Phase::Replay2 => log.runtime.block_on(replay_on_threads(log, 2)),
            Phase::Fold | Phase::OneSave | Phase::RebuildOnTask => {
                log.runtime.block_on(fold_from_origin(log, self))
            }
            Phase::Rebuild => log
                .runtime
                .block_on(rebuild_on_threads(log, &["pipeline"], 1)),
            Phase::RebuildAll(threads) => {
                let names = dealreg_host::registry::names::<SqliteStore, SqliteCheckpoints>();
                log.runtime
                    .block_on(rebuild_on_threads(log, &names, threads))
            }
        }
    }
}

/// The pipeline's whole work with no coordination between its parts, overlapped as two
/// cores allow: one thread reads, decodes and folds the log (the fold kept in memory);
/// the other turns the final rows into their stored JSON (taken from a fold done before
/// the timing), inserts them and the outbox entries the rebuild wrote with plain prepared
/// inserts, 50,000 a transaction, and builds the scope index once. It is the I/O floor
/// plus what the rebuild must also do: fold, serialise, index. Done when both are.
fn work_floor(log: &Log<'_>, written: &Written) -> Instant {
    use dealreg_projections::Projection;
    let mut folded = Pipeline::default();
    let events = log
        .runtime
        .block_on(each_event(log, |at, event| folded.apply(at, event)));
    assert_eq!(events, log.events, "the untimed fold read every event");
    let taken = dealreg_projections::table::take_all(&mut folded.tables_mut());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let conn = empty_views_file(&dir.path().join("work-floor-views.db"), &["rows_pipeline"]);
    let position = i64::try_from(log.events).unwrap_or(i64::MAX);
    let started = timed_from_here();
    std::thread::scope(|threads| {
        let writer = threads.spawn(move || {
            let mut conn = conn;
            let mut taken = taken.into_iter().peekable();
            while taken.peek().is_some() {
                let tx = conn.transaction().unwrap_or_else(|e| panic!("begin: {e}"));
                {
                    let mut insert = tx
                        .prepare_cached("INSERT INTO rows_pipeline (key, scope, position, row) VALUES (?1, ?2, ?3, ?4)")
                        .unwrap_or_else(|e| panic!("prepare: {e}"));
                    for row in taken.by_ref().take(50_000) {
                        let row = row.serialise().unwrap_or_else(|e| panic!("serialise: {e}"));
                        insert
                            .execute(rusqlite::params![row.key, row.scope, position, row.row])
                            .unwrap_or_else(|e| panic!("insert: {e}"));
                    }
                }
                tx.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            }
            insert_outbox(&mut conn, &written.outbox);
            conn.execute_batch(
                "CREATE INDEX rows_pipeline_by_scope ON rows_pipeline (scope, key) WHERE scope IS NOT NULL;",
            )
            .unwrap_or_else(|e| panic!("index: {e}"));
        });
        let mut fold = Pipeline::default();
        let decoded = log
            .runtime
            .block_on(each_event(log, |at, event| fold.apply(at, event)));
        assert_eq!(decoded, log.events, "every event decodes and folds");
        writer
            .join()
            .unwrap_or_else(|_| panic!("the work floor's writer panicked"));
    });
    started
}

/// The views handle of the last rebuild: its drop of the rows it replaced runs on this
/// handle's connection, so a drop through a clone of it waits for that one.
static LAST_REBUILD_VIEWS: std::sync::Mutex<Option<SqliteCheckpoints>> =
    std::sync::Mutex::new(None);

/// The rows of the views the last rebuild replaced, dropped (what `dealreg rebuild` does
/// once the rebuilt views are complete): timed from the rebuild's end, so it includes
/// the rest of the drop the rebuild started in the background.
fn drop_previous_rows(log: &Log<'_>) -> Instant {
    let views = LAST_REBUILD_VIEWS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| panic!("no rebuild ran before the drop"));
    let started = Instant::now();
    log.runtime
        .block_on(views.drop_retired_now())
        .unwrap_or_else(|e| panic!("drop: {e}"));
    started
}

/// The views named rebuilt as `dealreg rebuild` does: one reader, `threads` fold threads,
/// saved every 2 s or 50,000 changed rows and at the end.
async fn rebuild_on_threads(log: &Log<'_>, names: &[&str], threads: usize) -> Instant {
    let views = SqliteCheckpoints::open(log.path).unwrap_or_else(|e| panic!("views: {e}"));
    let folds = dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>()
        .iter()
        .filter(|p| names.contains(&p.name))
        .map(|p| p.fresh())
        .collect();
    let started = Instant::now();
    let rebuilt = dealreg_host::parallel::rebuild_together(
        log.store,
        &views,
        folds,
        threads,
        CatchUp {
            checkpoint_every: 50_000,
            ..CatchUp::default()
        },
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("rebuild: {e}"));
    assert_eq!(rebuilt.folded, log.events, "the rebuild folded every event");
    *LAST_REBUILD_VIEWS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(views);
    started
}

/// The four replayed views folded in memory with one reader and `threads` fold threads.
async fn replay_on_threads(log: &Log<'_>, threads: usize) -> Instant {
    use dealreg_projections::{conflicts::ConflictFlags, ledger::Ledger, metrics::ProgramMetrics};
    let folds: Vec<Box<dyn dealreg_host::parallel::Folding>> = vec![
        Box::new(Pipeline::default()),
        Box::new(Ledger::default()),
        Box::new(ConflictFlags::default()),
        Box::new(ProgramMetrics::default()),
    ];
    let started = Instant::now();
    let replayed =
        dealreg_host::parallel::replay_together(log.store, folds, threads, |_, _| false, |_| {})
            .await
            .unwrap_or_else(|e| panic!("replay: {e}"));
    assert_eq!(replayed.folded, log.events, "the replay read every event");
    started
}

/// Wall and CPU seconds of one phase.
struct Took {
    wall: f64,
    cpu: f64,
}

impl std::fmt::Display for Took {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} s, {:.2} CPU-s", self.wall, self.cpu)
    }
}

/// The process's CPU seconds when a phase with a long untimed setup started its timed
/// part (the work floor folds the log first): `measure` counts from there.
static CPU_AT_START: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);

/// Marks the start of a phase's timed part after a long setup; returns the instant.
fn timed_from_here() -> Instant {
    *CPU_AT_START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cpu_seconds());
    Instant::now()
}

/// Times `phase`, which returns when its timed part started.
fn measure(phase: impl FnOnce() -> Instant) -> Took {
    let before = cpu_seconds();
    let started = phase();
    let wall = started.elapsed().as_secs_f64();
    // The CPU of a short untimed setup (a reset's rename) is counted; a long one is not.
    let before = CPU_AT_START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or(before);
    Took {
        wall,
        cpu: cpu_seconds() - before,
    }
}

/// User plus system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    cpu::cpu_seconds("self")
}

fn scan(log: &Log<'_>) -> Instant {
    let conn =
        rusqlite::Connection::open_with_flags(log.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
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
    assert_eq!(scanned, log.events, "every event decodes in the plain scan");
    started
}

/// Reads every event through the store's trait (pages of the log, as every projection
/// reads them), decodes it through the upcaster chain and hands it to `fold`; returns
/// how many it read.
async fn each_event(log: &Log<'_>, fold: impl FnMut(Position, &Event)) -> u64 {
    each_event_by(log, decode_event, fold).await
}

/// [`each_event`] with another decoder.
async fn each_event_by<E: std::fmt::Display>(
    log: &Log<'_>,
    decode: impl Fn(&RecordedEvent) -> Result<Event, E>,
    mut fold: impl FnMut(Position, &Event),
) -> u64 {
    let mut pages = LogPages::new(log.store, Position::ORIGIN)
        .await
        .unwrap_or_else(|e| panic!("read the head: {e}"));
    let mut decoded = 0u64;
    while let Some(page) = pages
        .next_page()
        .await
        .unwrap_or_else(|e| panic!("read: {e}"))
    {
        for recorded in &page {
            let event = decode(recorded).unwrap_or_else(|e| panic!("decode: {e}"));
            fold(recorded.position, &event);
            decoded += 1;
        }
    }
    decoded
}

/// `decode_event` as it was before issue 36: a current-schema payload (the metadata's
/// `{"schema":N,` prefix, as the engine reads it) decoded by serde's buffered decoder;
/// anything else through the upcaster chain.
fn decode_event_buffered(recorded: &RecordedEvent) -> Result<Event, String> {
    static CURRENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let current = CURRENT.get_or_init(|| format!("{{\"schema\":{EVENT_SCHEMA_VERSION},"));
    if recorded.metadata.starts_with(current.as_bytes()) {
        decode_buffered(&recorded.data).map_err(|e| e.to_string())
    } else {
        decode_event(recorded).map_err(|e| e.to_string())
    }
}

/// Untimed: every event of the log decoded by both decoders, the same event by each
/// (issue 36's check over the bench log); returns how many.
async fn both_decoders_agree(log: &Log<'_>) -> u64 {
    let agreed = each_event_by(
        log,
        |recorded| {
            let new = decode_event(recorded).map_err(|e| e.to_string())?;
            let old = decode_event_buffered(recorded)?;
            if new == old {
                Ok(new)
            } else {
                Err(format!(
                    "the decoders disagree at {:?}: {new:?} against {old:?}",
                    recorded.position
                ))
            }
        },
        |_, _| {},
    )
    .await;
    assert_eq!(agreed, log.events, "both decoders read every event");
    agreed
}

async fn floor<E: std::fmt::Display>(
    log: &Log<'_>,
    decode: impl Fn(&RecordedEvent) -> Result<Event, E>,
) -> Instant {
    let started = Instant::now();
    let decoded = each_event_by(log, decode, |_, _| {}).await;
    assert_eq!(decoded, log.events, "every event decodes");
    started
}

async fn replay(log: &Log<'_>) -> Instant {
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
    let folded = each_event(log, |at, event| {
        p.apply(at, event);
        l.apply(at, event);
        c.apply(at, event);
        m.apply(at, event);
    })
    .await;
    assert_eq!(folded, log.events, "the replay read every event");
    assert!(p.rows().count() > 0, "the replay folded registrations");
    started
}

/// The pipeline folded from the origin: not saved (`Fold`), saved at the end (`OneSave`),
/// or as the runner saves by default (`Rebuild`).
async fn fold_from_origin(log: &Log<'_>, phase: Phase) -> Instant {
    let views = SqliteCheckpoints::open(log.path).unwrap_or_else(|e| panic!("views: {e}"));
    let saved_at_end = CatchUp {
        save_interval: std::time::Duration::from_secs(3600),
        rows_per_save: usize::MAX,
        ..CatchUp::default()
    };
    let how = match phase {
        Phase::Fold => {
            // A reused store's saved rows are forgotten first, outside the timing.
            views
                .reset("pipeline")
                .await
                .unwrap_or_else(|e| panic!("reset: {e}"));
            CatchUp {
                stop_after: Some(log.events),
                ..saved_at_end
            }
        }
        Phase::OneSave => saved_at_end,
        _ => CatchUp {
            checkpoint_every: 50_000,
            ..CatchUp::default()
        },
    };
    let started = Instant::now();
    let caught = rebuild::<Pipeline, _, _>(log.store, &views, how, |_| {})
        .await
        .unwrap_or_else(|e| panic!("fold: {e}"));
    assert_eq!(caught.folded, log.events, "the fold folded every event");
    assert!(caught.state.rows().count() > 0, "the fold made rows");
    started
}
