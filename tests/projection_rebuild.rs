//! Invariant 3: a projection rebuilt from the log gives the same bytes every time, equal
//! to the incrementally maintained one; a runner killed mid-stream resumes from its
//! checkpoint without gaps or double counting.

mod support;

use support::demo_store;

use dealreg_events::{EventStore, LogPages, Position};
use dealreg_host::runner::{self, CatchUp, CaughtUp};
use dealreg_host::tail::LogTail;
use dealreg_store_sqlite::SqliteCheckpoints;
use dealreg_views::CheckpointStore;

/// Tests save at every checkpoint, however fast they run.
async fn catch_up<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    views: &K,
    every: u64,
    stop_after: Option<u64>,
) -> CaughtUp<P> {
    let how = CatchUp {
        checkpoint_every: every,
        save_interval: std::time::Duration::ZERO,
        rows_per_save: usize::MAX,
        stop_after,
    };
    runner::catch_up::<P, S, K>(store, views, how, |_| {})
        .await
        .expect("catch up")
}

async fn reset<P: Projection>(views: &SqliteCheckpoints) {
    views.reset(P::NAME).await.expect("reset");
}

async fn saved<P: Projection>(views: &SqliteCheckpoints) -> (Position, P) {
    let (position, state, rebuilt) = runner::load::<P, _>(views).await.expect("load");
    assert!(rebuilt.is_none(), "saved under this fold's version");
    (position, state)
}

/// How many events the log holds after `after`.
async fn events_after<S: EventStore>(store: &S, after: Position) -> u64 {
    let mut pages = LogPages::new(store, after).await.expect("read the head");
    let mut n = 0;
    while let Some(page) = pages.next_page().await.expect("read") {
        n += page.len() as u64;
    }
    n
}

use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::deadlines::Deadlines;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::Projection;
use dealreg_store_sqlite::SqliteStore;

fn bytes(p: &Pipeline) -> Vec<u8> {
    serde_json::to_vec(&p.vendor_view()).expect("json")
}

#[tokio::test]
async fn rebuilds_are_byte_identical_and_equal_the_incremental_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");

    reset::<Pipeline>(&views).await;
    let first = catch_up::<Pipeline, _, _>(&store, &views, 1_000, None).await;
    reset::<Pipeline>(&views).await;
    let second = catch_up::<Pipeline, _, _>(&store, &views, 333, None).await;
    assert_eq!(
        bytes(&first.state),
        bytes(&second.state),
        "two rebuilds, same bytes"
    );
    assert!(
        first.state.last_position() > Position::at(1000)
            && first.state.last_position() == first.position
    );
    assert_eq!(first.folded, events_after(&store, Position::ORIGIN).await);

    // Incremental: the runner advances in small steps, each run starting from the saved
    // checkpoint in freshly opened checkpoints (as after a restart), then catches up.
    reset::<Pipeline>(&views).await;
    let mut previous = Position::ORIGIN;
    for _ in 0..5 {
        let views = SqliteCheckpoints::open(&path).expect("views");
        let step = catch_up::<Pipeline, _, _>(&store, &views, 50, Some(217)).await;
        assert_eq!(
            step.resumed_from, previous,
            "each step starts where the last saved"
        );
        assert!(step.resumed_from > Position::ORIGIN || previous == Position::ORIGIN);
        previous = saved::<Pipeline>(&views).await.0;
    }
    assert!(previous > Position::ORIGIN, "the steps saved checkpoints");
    let incremental = catch_up::<Pipeline, _, _>(&store, &views, 50, None).await;
    assert_eq!(incremental.resumed_from, previous);
    assert_eq!(
        incremental.folded,
        events_after(&store, previous).await,
        "the last run folded only what came after the checkpoint"
    );
    assert_eq!(
        bytes(&incremental.state),
        bytes(&first.state),
        "incremental equals rebuilt"
    );
}

#[tokio::test]
async fn a_runner_killed_between_checkpoints_resumes_without_gaps_or_doubles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");
    reset::<Pipeline>(&views).await;
    let uninterrupted = catch_up::<Pipeline, _, _>(&store, &views, 100, None).await;

    reset::<Pipeline>(&views).await;
    // Dies after 731 events: the last checkpoint is at the 700th; 31 folded events are
    // lost with the process, and must be folded again exactly once.
    let died = catch_up::<Pipeline, _, _>(&store, &views, 100, Some(731)).await;
    let (saved_at, _) = saved::<Pipeline>(&views).await;
    assert!(saved_at < died.position, "the crash lost the unsaved tail");
    assert_eq!(
        events_after(&store, Position::ORIGIN).await - events_after(&store, saved_at).await,
        700,
        "the checkpoint covers exactly the first 700 events"
    );
    let restarted = SqliteCheckpoints::open(&path).expect("views after restart");
    let resumed = catch_up::<Pipeline, _, _>(&store, &restarted, 100, None).await;
    assert_eq!(
        resumed.resumed_from, saved_at,
        "resumed from the checkpoint, not the origin"
    );
    assert_eq!(resumed.folded, events_after(&store, saved_at).await);
    assert_eq!(
        bytes(&resumed.state),
        bytes(&uninterrupted.state),
        "resumed equals uninterrupted"
    );
}

/// Every projection, not only the pipeline, stores, resumes and rebuilds to the same bytes.
async fn same_bytes_every_way<P: Projection>(path: &std::path::Path) {
    let store = SqliteStore::open(path).expect("open");
    let views = SqliteCheckpoints::open(path).expect("views");
    reset::<P>(&views).await;
    let first = catch_up::<P, _, _>(&store, &views, 500, None).await;
    reset::<P>(&views).await;
    catch_up::<P, _, _>(&store, &views, 100, Some(450)).await;
    let (checkpoint, _) = saved::<P>(&views).await;
    let resumed = catch_up::<P, _, _>(
        &store,
        &SqliteCheckpoints::open(path).expect("views"),
        100,
        None,
    )
    .await;
    assert_eq!(
        resumed.resumed_from,
        checkpoint,
        "{}: resumed from its checkpoint",
        P::NAME
    );
    assert_eq!(
        resumed.folded,
        events_after(&store, checkpoint).await,
        "{}",
        P::NAME
    );
    let (_, loaded) = saved::<P>(&views).await;
    let bytes = |p: &P| dealreg_projections::snapshot(p).expect("json").to_string();
    assert_eq!(
        bytes(&first.state),
        bytes(&resumed.state),
        "{}: resumed equals rebuilt",
        P::NAME
    );
    assert_eq!(
        bytes(&first.state),
        bytes(&loaded),
        "{}: the saved state reads back",
        P::NAME
    );
}

#[tokio::test]
async fn every_projection_rebuilds_and_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    same_bytes_every_way::<Ledger>(&path).await;
    same_bytes_every_way::<ConflictFlags>(&path).await;
    same_bytes_every_way::<Pipeline>(&path).await;
    same_bytes_every_way::<Deadlines>(&path).await;
    same_bytes_every_way::<ProgramMetrics>(&path).await;
}

/// A state saved by another version of a fold is not served: it is rebuilt, and the
/// caller is told why.
#[tokio::test]
async fn a_state_saved_by_another_fold_version_is_rebuilt_not_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");
    let current = catch_up::<Ledger, _, _>(&store, &views, 1_000, None).await;
    // What an older build would have left: a different state under version VERSION - 1,
    // with a row this build would misread.
    views
        .save_rows(
            Ledger::NAME,
            dealreg_views::Checkpoint {
                position: current.position,
                version: Ledger::VERSION - 1,
                state: serde_json::to_vec(&Ledger::default()).expect("json"),
            },
            vec![dealreg_views::RowWrite {
                key: "entry/not-a-number".into(),
                scope: None,
                row: Some(b"{}".to_vec()),
            }],
        )
        .await
        .expect("save");
    let again = catch_up::<Ledger, _, _>(&store, &views, 1_000, None).await;
    let why = again.rebuilt.expect("the old state was rebuilt");
    assert!(why.contains("version"), "{why}");
    assert_eq!(again.resumed_from, Position::ORIGIN);
    assert_eq!(again.folded, events_after(&store, Position::ORIGIN).await);
    let snapshot = |l: &Ledger| dealreg_projections::snapshot(l).expect("json");
    assert_eq!(snapshot(&again.state), snapshot(&current.state));
    // And it is saved under this build's version now, without the old version's rows.
    let reloaded = views
        .load(Ledger::NAME)
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(reloaded.version, Ledger::VERSION);
    let (_, loaded) = saved::<Ledger>(&views).await;
    assert_eq!(snapshot(&loaded), snapshot(&current.state));
}

/// A follower keeps the pipeline current while commands arrive; aborted midway and
/// restarted, it ends with exactly what a rebuild gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_keeps_up_and_resumes_after_being_killed() {
    use dealreg_clock::ControlledClock;
    use dealreg_engine::{CommandEnvelope, Engine};
    use serde_json::json;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("follow.db");
    let store = SqliteStore::open(&path).expect("open");
    let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date");
    let engine = Arc::new(
        Engine::open(store.clone(), ControlledClock::starting_at(start), None)
            .await
            .expect("engine"),
    );
    let cm = json!({ "kind": "vendor", "role": "channel_manager", "user": "cm" });
    let partner = uuid::Uuid::now_v7();
    let send = |actor: serde_json::Value, command: serde_json::Value| {
        let engine = Arc::clone(&engine);
        async move {
            let envelope = CommandEnvelope::parse(
                json!({ "actor": actor, "command": command })
                    .to_string()
                    .as_bytes(),
            )
            .expect("parse");
            assert!(engine.execute(envelope).await.expect("execute").reply.ok);
        }
    };
    send(cm.clone(), json!({ "type": "onboard_partner", "partner_id": partner, "name": "P", "motions": ["referral"], "tier": "gold", "territories": [], "capacity": 1000 })).await;

    let submit = |n: usize| {
        json!({ "type": "submit_registration", "registration_id": uuid::Uuid::now_v7(), "partner_id": partner,
                "customer": { "company": format!("C{n}"), "domain": format!("c{n}.com"), "contact": { "name": "n", "email": "e@x.com" } },
                "product_line": "analytics", "motion": "referral", "estimated_amount": { "amount_minor": 100, "currency": "USD" },
                "expected_close": "2026-12-31", "proof_of_work": "met", "kind": "new_business" })
    };
    let me = json!({ "kind": "partner", "partner_id": partner, "user": "rep" });

    // First follower: runs while 40 registrations arrive, then is aborted (killed).
    let views = SqliteCheckpoints::open(&path).expect("views");
    let follower_store = store.clone();
    let first = tokio::spawn(async move {
        runner::follow::<Pipeline, _, _>(
            &LogTail::new(follower_store).await.expect("the log pump"),
            &views,
            std::time::Duration::from_millis(20),
            std::future::pending(),
            |_| {},
        )
        .await
    });
    for n in 0..40 {
        send(me.clone(), submit(n)).await;
    }
    let probe = SqliteCheckpoints::open(&path).expect("probe");
    let mut advanced = Position::ORIGIN;
    for _ in 0..200 {
        advanced = probe
            .load(Pipeline::NAME)
            .await
            .expect("load")
            .map_or(Position::ORIGIN, |c| c.position);
        if advanced == store.last_position().await.expect("head") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        advanced > Position::ORIGIN,
        "the first follower advanced before it was stopped"
    );
    first.abort();
    let _ = first.await;
    for n in 40..60 {
        send(me.clone(), submit(n)).await;
    }

    // Restarted: resumes from its checkpoint and catches up with everything.
    let views = SqliteCheckpoints::open(&path).expect("views");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower_store = store.clone();
    let second = tokio::spawn(async move {
        runner::follow::<Pipeline, _, _>(
            &LogTail::new(follower_store).await.expect("the log pump"),
            &views,
            std::time::Duration::from_millis(20),
            async {
                let _ = stop_rx.await;
            },
            |_| {},
        )
        .await
    });
    let head = store.last_position().await.expect("head");
    let mut caught_up = false;
    for _ in 0..200 {
        if probe
            .load(Pipeline::NAME)
            .await
            .expect("load")
            .is_some_and(|c| c.position == head)
        {
            caught_up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(caught_up, "the restarted follower reached the head");
    let _ = stop_tx.send(());
    assert_eq!(second.await.expect("join").expect("follow"), head);

    let (_, followed) = saved::<Pipeline>(&probe).await;
    reset::<Pipeline>(&probe).await;
    let rebuilt = catch_up::<Pipeline, _, _>(&store, &probe, 1_000, None).await;
    assert_eq!(
        bytes(&followed),
        bytes(&rebuilt.state),
        "followed equals rebuilt"
    );
    assert_eq!(
        rebuilt
            .state
            .vendor_view()
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum::<usize>(),
        60
    );
}

/// Saves started by the number of changed rows are written while the fold goes on; a run
/// that dies after some of them resumes from the last one to the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_started_by_changed_rows_resume_to_the_same_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");
    let whole = catch_up::<Ledger, _, _>(&store, &views, 1_000, None).await;
    reset::<Ledger>(&views).await;
    let by_rows = CatchUp {
        checkpoint_every: 50,
        save_interval: std::time::Duration::from_secs(3600),
        rows_per_save: 1,
        stop_after: Some(450),
    };
    runner::catch_up::<Ledger, _, _>(&store, &views, by_rows, |_| {})
        .await
        .expect("catch up");
    let (checkpoint, _) = saved::<Ledger>(&views).await;
    assert!(
        checkpoint > Position::ORIGIN,
        "a save started by changed rows landed before the crash"
    );
    let resumed = catch_up::<Ledger, _, _>(&store, &views, 1_000, None).await;
    assert_eq!(resumed.resumed_from, checkpoint);
    let snapshot = |l: &Ledger| dealreg_projections::snapshot(l).expect("json");
    assert_eq!(snapshot(&resumed.state), snapshot(&whole.state));
    let (_, loaded) = saved::<Ledger>(&views).await;
    assert_eq!(snapshot(&loaded), snapshot(&whole.state));
}

/// The snapshot of projection `P` as saved, loaded back through the runner.
async fn saved_snapshot<P: Projection>(views: &SqliteCheckpoints) -> (Position, String) {
    let (position, state) = saved::<P>(views).await;
    (
        position,
        dealreg_projections::snapshot(&state)
            .expect("json")
            .to_string(),
    )
}

/// Every projection's saved snapshot, in registry order.
async fn every_saved(views: &SqliteCheckpoints) -> Vec<(Position, String)> {
    vec![
        saved_snapshot::<Pipeline>(views).await,
        saved_snapshot::<Ledger>(views).await,
        saved_snapshot::<ConflictFlags>(views).await,
        saved_snapshot::<Deadlines>(views).await,
        saved_snapshot::<ProgramMetrics>(views).await,
    ]
}

fn fresh_folds() -> Vec<Box<dyn dealreg_host::parallel::Folding>> {
    dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>()
        .iter()
        .map(|p| p.fresh())
        .collect()
}

/// Saves at every checkpoint, as the tests above do.
fn saving_every(every: u64, stop_after: Option<u64>) -> CatchUp {
    CatchUp {
        checkpoint_every: every,
        save_interval: std::time::Duration::ZERO,
        rows_per_save: usize::MAX,
        stop_after,
    }
}

/// One read of the log feeding every projection's fold on 1, 2 or 5 threads saves the
/// same states, at the same position, as each projection rebuilt alone by the runner.
#[tokio::test]
async fn projections_rebuilt_together_on_any_number_of_threads_equal_each_rebuilt_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");
    for entry in dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>() {
        entry
            .rebuild(&store, &views, saving_every(500, None), &mut |_| {})
            .await
            .expect("rebuild alone");
    }
    let alone = every_saved(&views).await;
    let head = store.last_position().await.expect("head");
    assert!(
        alone.iter().all(|(at, _)| *at == head),
        "each alone reached the head"
    );

    for threads in [1, 2, 5] {
        let mut last_report = None;
        let together = dealreg_host::parallel::rebuild_together(
            &store,
            &views,
            fresh_folds(),
            threads,
            saving_every(97, None),
            |p| last_report = Some(p),
        )
        .await
        .expect("rebuild together");
        assert!(!together.crashed);
        let reported = last_report.expect("progress was reported");
        assert_eq!((reported.position, reported.head), (head, head));
        assert_eq!(together.position, head);
        assert_eq!(
            together.folded,
            events_after(&store, Position::ORIGIN).await,
            "every event folded once into each"
        );
        assert_eq!(
            every_saved(&views).await,
            alone,
            "{threads} fold thread(s): the saved states equal those rebuilt alone"
        );
        // The states handed back are the ones saved.
        let pipeline = together
            .folds
            .into_iter()
            .next()
            .expect("the pipeline")
            .into_any()
            .downcast::<Pipeline>()
            .expect("the first is the pipeline, as given");
        assert_eq!(
            dealreg_projections::snapshot(&*pipeline)
                .expect("json")
                .to_string(),
            alone[0].1
        );
    }
}

/// A rebuild of every projection killed midway leaves the serving views as they were,
/// whole: it was folding beside them (`<name>~next`, saved along the way at its last save,
/// exactly the first 700 events) and nothing was swapped in. Run again, it starts over
/// beside them and swaps in the states of an uninterrupted rebuild.
#[tokio::test]
async fn projections_rebuilt_together_and_killed_leave_the_serving_views_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let views = SqliteCheckpoints::open(&path).expect("views");
    dealreg_host::parallel::rebuild_together(
        &store,
        &views,
        fresh_folds(),
        2,
        saving_every(100, None),
        |_| {},
    )
    .await
    .expect("uninterrupted");
    let uninterrupted = every_saved(&views).await;
    let total = events_after(&store, Position::ORIGIN).await;
    for (at, _) in &uninterrupted {
        assert_eq!(
            events_after(&store, *at).await,
            0,
            "the rebuilt views cover the log"
        );
    }

    let died = dealreg_host::parallel::rebuild_together(
        &store,
        &views,
        fresh_folds(),
        2,
        saving_every(100, Some(731)),
        |_| {},
    )
    .await
    .expect("killed");
    assert!(died.crashed, "the run says it stopped as a crash would");
    assert_eq!(died.folded, 731);
    assert_eq!(
        every_saved(&views).await,
        uninterrupted,
        "the serving views are untouched by a rebuild that did not finish"
    );
    let beside = dealreg_host::beside::Beside::new(
        views.clone(),
        dealreg_host::registry::names::<SqliteStore, SqliteCheckpoints>(),
    );
    for entry in dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>() {
        let built = beside
            .load(entry.name)
            .await
            .expect("load beside")
            .expect("a save beside along the way");
        assert_eq!(
            total - events_after(&store, built.position).await,
            700,
            "{}: the rebuild beside covers exactly the first 700 events",
            entry.name
        );
    }

    let restarted = SqliteCheckpoints::open(&path).expect("views after restart");
    dealreg_host::parallel::rebuild_together(
        &store,
        &restarted,
        fresh_folds(),
        2,
        saving_every(100, None),
        |_| {},
    )
    .await
    .expect("run again");
    assert_eq!(every_saved(&restarted).await, uninterrupted);
    for entry in dealreg_host::registry::projections::<SqliteStore, SqliteCheckpoints>() {
        assert_eq!(
            beside.load(entry.name).await.expect("load beside"),
            None,
            "{}: nothing is left beside after the swap",
            entry.name
        );
    }
}
