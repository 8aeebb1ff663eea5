//! Invariant 3: a projection rebuilt from the log gives the same bytes every time, equal
//! to the incrementally maintained one; a runner killed mid-stream resumes from its
//! checkpoint without gaps or double counting.

use std::process::Command;

use dealreg::projector::{catch_up_with, ViewStore};

/// Tests save at every checkpoint, however fast they run.
async fn catch_up<P: dealreg_projections::Projection, S: dealreg::store::EventStore>(
    store: &S,
    views: &ViewStore,
    every: u64,
    stop_after: Option<u64>,
    progress: impl FnMut(dealreg::projector::Progress),
) -> Result<(dealreg::store::GlobalPosition, P), dealreg::projector::ViewError> {
    catch_up_with(
        store,
        views,
        every,
        std::time::Duration::ZERO,
        stop_after,
        progress,
    )
    .await
}
use dealreg::store::sqlite::SqliteStore;
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::deadlines::Deadlines;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::Projection;

fn demo_store(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("demo.db");
    let demo = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .arg("demo")
        .output()
        .expect("demo");
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    path
}

fn bytes(p: &Pipeline) -> Vec<u8> {
    serde_json::to_vec(&p.vendor_view()).expect("json")
}

#[tokio::test]
async fn rebuilds_are_byte_identical_and_equal_the_incremental_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = ViewStore::open(&path).expect("views");

    views.reset::<Pipeline>().expect("reset");
    let (end, first) = catch_up::<Pipeline, _>(&store, &views, 1_000, None, |_| {})
        .await
        .expect("rebuild");
    views.reset::<Pipeline>().expect("reset");
    let (_, second) = catch_up::<Pipeline, _>(&store, &views, 333, None, |_| {})
        .await
        .expect("rebuild again");
    assert_eq!(bytes(&first), bytes(&second), "two rebuilds, same bytes");
    assert!(first.last_position() > 1000 && first.last_position() == end.0);

    // Incremental: the runner advances in small steps, each run starting from the saved
    // checkpoint in a fresh ViewStore (as after a restart), then catches up.
    views.reset::<Pipeline>().expect("reset");
    for _ in 0..5 {
        let views = ViewStore::open(&path).expect("views");
        catch_up::<Pipeline, _>(&store, &views, 50, Some(217), |_| {})
            .await
            .expect("step");
    }
    let (_, incremental) = catch_up::<Pipeline, _>(&store, &views, 50, None, |_| {})
        .await
        .expect("finish");
    assert_eq!(
        bytes(&incremental),
        bytes(&first),
        "incremental equals rebuilt"
    );
}

#[tokio::test]
async fn a_runner_killed_between_checkpoints_resumes_without_gaps_or_doubles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = ViewStore::open(&path).expect("views");
    views.reset::<Pipeline>().expect("reset");
    let (_, uninterrupted) = catch_up::<Pipeline, _>(&store, &views, 100, None, |_| {})
        .await
        .expect("rebuild");

    views.reset::<Pipeline>().expect("reset");
    // Dies after 731 events: the last checkpoint is at 700; 31 folded events are lost
    // with the process, and must be folded again exactly once.
    let (died_at, _) = catch_up::<Pipeline, _>(&store, &views, 100, Some(731), |_| {})
        .await
        .expect("partial");
    let (saved, _) = views.load::<Pipeline>().expect("load");
    assert!(saved < died_at, "the crash lost the unsaved tail");
    let restarted = ViewStore::open(&path).expect("views after restart");
    let (_, resumed) = catch_up::<Pipeline, _>(&store, &restarted, 100, None, |_| {})
        .await
        .expect("resume");
    assert_eq!(
        bytes(&resumed),
        bytes(&uninterrupted),
        "resumed equals uninterrupted"
    );
}

/// Every projection, not only the pipeline, stores, resumes and rebuilds to the same bytes.
async fn same_bytes_every_way<P: Projection>(path: &std::path::Path) {
    let store = SqliteStore::open(path).expect("open");
    let views = ViewStore::open(path).expect("views");
    views.reset::<P>().expect("reset");
    let (_, first) = catch_up::<P, _>(&store, &views, 500, None, |_| {})
        .await
        .expect("rebuild");
    views.reset::<P>().expect("reset");
    catch_up::<P, _>(&store, &views, 100, Some(450), |_| {})
        .await
        .expect("partial");
    let (_, resumed) = catch_up::<P, _>(
        &store,
        &ViewStore::open(path).expect("views"),
        100,
        None,
        |_| {},
    )
    .await
    .expect("resume");
    let (_, loaded) = views.load::<P>().expect("load");
    let bytes = |p: &P| serde_json::to_vec(p).expect("json");
    assert_eq!(
        bytes(&first),
        bytes(&resumed),
        "{}: resumed equals rebuilt",
        P::NAME
    );
    assert_eq!(
        bytes(&first),
        bytes(&loaded),
        "{}: the saved state reads back",
        P::NAME
    );
}

#[tokio::test]
async fn ledger_and_conflict_flags_also_rebuild_and_resume_to_the_same_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    same_bytes_every_way::<Ledger>(&path).await;
    same_bytes_every_way::<ConflictFlags>(&path).await;
    same_bytes_every_way::<Pipeline>(&path).await;
    same_bytes_every_way::<Deadlines>(&path).await;
    same_bytes_every_way::<ProgramMetrics>(&path).await;
}
