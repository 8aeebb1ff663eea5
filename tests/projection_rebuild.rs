//! Invariant 3: a projection rebuilt from the log gives the same bytes every time, equal
//! to the incrementally maintained one; a runner killed mid-stream resumes from its
//! checkpoint without gaps or double counting.

mod support;

use support::demo_store;

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

/// A follower keeps the pipeline current while commands arrive; aborted midway and
/// restarted, it ends with exactly what a rebuild gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_keeps_up_and_resumes_after_being_killed() {
    use dealreg::clock::ControlledClock;
    use dealreg::projector::follow;
    use dealreg::store::EventStore;
    use dealreg::{CommandEnvelope, Engine};
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
    let views = ViewStore::open(&path).expect("views");
    let follower_store = store.clone();
    let first = tokio::spawn(async move {
        follow::<Pipeline, _>(
            &follower_store,
            &views,
            std::time::Duration::from_millis(20),
            std::future::pending(),
        )
        .await
    });
    for n in 0..40 {
        send(me.clone(), submit(n)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    first.abort();
    let _ = first.await;
    for n in 40..60 {
        send(me.clone(), submit(n)).await;
    }

    // Restarted: resumes from its checkpoint and catches up with everything.
    let views = ViewStore::open(&path).expect("views");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower_store = store.clone();
    let second = tokio::spawn(async move {
        follow::<Pipeline, _>(
            &follower_store,
            &views,
            std::time::Duration::from_millis(20),
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let head = *store.head().borrow();
    let probe = ViewStore::open(&path).expect("probe");
    let mut caught_up = false;
    for _ in 0..200 {
        if probe.load::<Pipeline>().expect("load").0 == head {
            caught_up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(caught_up, "the restarted follower reached the head");
    let _ = stop_tx.send(());
    assert_eq!(second.await.expect("join").expect("follow"), head);

    let (_, followed) = probe.load::<Pipeline>().expect("load");
    probe.reset::<Pipeline>().expect("reset");
    let (_, rebuilt) = catch_up::<Pipeline, _>(&store, &probe, 1_000, None, |_| {})
        .await
        .expect("rebuild");
    assert_eq!(bytes(&followed), bytes(&rebuilt), "followed equals rebuilt");
    assert_eq!(
        rebuilt
            .vendor_view()
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum::<usize>(),
        60
    );
}
