use std::sync::Arc;

use dealreg_events::conformance::{event, run_all};
use dealreg_events::{EventStore, ExpectedVersion, Position, StoreError, StreamTip};
use dealreg_store_sqlite::SqliteStore;

/// A checkpoint with an empty meta, as the checkpoint tests save.
fn empty_meta(position: u64, version: u32) -> dealreg_views::Checkpoint {
    dealreg_views::Checkpoint {
        position: Position::at(position),
        version,
        state: b"{}".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let counter = std::sync::atomic::AtomicUsize::new(0);
    run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("conformance-{n}.db"));
        async move { SqliteStore::open(path).expect("open") }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_chains_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reopen.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for n in 0..20 {
            store
                .append(
                    "account-reopen.example",
                    ExpectedVersion::Any,
                    vec![event("e", n)],
                )
                .await
                .expect("append");
        }
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let events = store
        .read_stream("account-reopen.example", None, 100)
        .await
        .expect("read");
    assert_eq!(events.len(), 20);
    dealreg_events::chain::verify_stream(&events).expect("chain intact after reopen");
    assert_eq!(
        store.last_position().await.expect("head"),
        events[19].position,
        "head restored from the file"
    );
    let next = store
        .append(
            "account-reopen.example",
            ExpectedVersion::Exact(StreamTip::of(&events[19])),
            vec![event("e", 20)],
        )
        .await
        .expect("append after reopen");
    assert_eq!(next.revisions, vec![20]);
    dealreg_events::chain::verify_stream(
        &store
            .read_stream("account-reopen.example", None, 100)
            .await
            .expect("read"),
    )
    .expect("chain continues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("group.db")).expect("open");
    let mut tasks = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    &format!("account-g{n}.example"),
                    ExpectedVersion::NoStream,
                    vec![event("e", n)],
                )
                .await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("append");
    }
    let stats = store.stats();
    assert_eq!(stats.jobs, 200);
    assert!(
        stats.commits < stats.jobs,
        "concurrent appends share commits: {stats:?}"
    );
    assert_eq!(
        store
            .read_all(Position::ORIGIN, 1000)
            .await
            .expect("read")
            .len(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_concurrent_writer_wins_each_round() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("race.db")).expect("open");
    let stream = "account-contended.example";
    let mut tip: Option<StreamTip> = None;
    for round in 0..10u64 {
        let expected = ExpectedVersion::after(tip.as_ref());
        let mut tasks = Vec::new();
        for n in 0..8 {
            let (store, expected) = (store.clone(), expected.clone());
            tasks.push(tokio::spawn(async move {
                store.append(stream, expected, vec![event("e", n)]).await
            }));
        }
        let mut wins = Vec::new();
        for task in tasks {
            match task.await.expect("join") {
                Ok(appended) => wins.push(appended.tip),
                Err(StoreError::WrongExpectedVersion { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(wins.len(), 1, "round {round}: exactly one writer wins");
        tip = wins.pop();
    }
    assert_eq!(
        store
            .read_stream(stream, None, 100)
            .await
            .expect("read")
            .len(),
        10
    );
}

/// A store that fills up mid-burst (the size cap gives the same SQLITE_FULL as a full
/// disk) answers every append with the truth: an `Ok` is in the log at the positions
/// answered, an `Err` left nothing, and once the cap is raised the same store takes the
/// failed appends again, none of them a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_answers_every_append_with_the_truth() {
    use dealreg_store_sqlite::SqliteOptions;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("full.db");
    let store = SqliteStore::open_with(&path, &SqliteOptions::create()).expect("open");
    store
        .append(
            "account-seed.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("seed");
    let pages = store
        .set_max_pages(1)
        .await
        .expect("cap at the current size");
    store
        .set_max_pages(pages + 48)
        .await
        .expect("room for a few dozen appends");

    let request = |n: usize| {
        let mut e = event("big", n);
        e.data = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(3000)).into_bytes();
        (format!("account-full-{n}.example"), e)
    };
    // Waves of appends in flight, so the writer commits several groups before the cap
    // is reached and some after.
    let mut answers = Vec::new();
    for wave in 0..20 {
        let mut tasks = Vec::new();
        for n in wave * 20..(wave + 1) * 20 {
            let store = store.clone();
            let req = request(n);
            tasks.push(tokio::spawn(async move {
                let answer = store
                    .append(&req.0, ExpectedVersion::NoStream, vec![req.1.clone()])
                    .await;
                (req, answer)
            }));
        }
        for task in tasks {
            answers.push(task.await.expect("join"));
        }
    }
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (_, answer) in &answers {
        let kind = match answer {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string().chars().take(90).collect(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("answers: {kinds:#?}");

    let log = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("the full store still reads");
    let stored: std::collections::HashMap<_, _> =
        log.iter().map(|r| (r.event_id, r.clone())).collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for (req, answer) in &answers {
        let event_id = req.1.event_id;
        match answer {
            Ok(outcome) => {
                ok += 1;
                let recorded = stored
                    .get(&event_id)
                    .unwrap_or_else(|| panic!("append answered Ok is missing: {outcome:?}"));
                assert_eq!(outcome.positions, vec![recorded.position]);
                assert_eq!(outcome.revisions, vec![recorded.revision]);
                assert_eq!(outcome.stream, recorded.stream);
            }
            Err(StoreError::OutcomeUnknown { .. }) => failed.push(req.clone()),
            Err(e) => {
                assert!(
                    !stored.contains_key(&event_id),
                    "append answered `{e}` is in the log at {:?}",
                    stored.get(&event_id).map(|r| r.position)
                );
                failed.push(req.clone());
            }
        }
    }
    let stats = store.stats();
    assert!(ok > 0, "some appends fit before the store was full");
    assert!(
        !failed.is_empty(),
        "the store filled up during the burst: {stats:?}"
    );
    assert_eq!(stats.acknowledged as usize, ok + 1, "seed included");
    eprintln!(
        "full store: {ok} answered Ok, {} Err; {stats:?}",
        failed.len()
    );
    dealreg_events::chain::verify_log(&store)
        .await
        .map(|report| assert!(report.breaks.is_empty(), "{:?}", report.breaks))
        .expect("verify");

    // Space is freed: the same store takes every failed append, and none of them had been
    // written (a written one would now be refused: its stream exists, and its event id is
    // stored).
    store.set_max_pages(1 << 30).await.expect("raise the cap");
    for (stream, e) in failed {
        store
            .append(&stream, ExpectedVersion::NoStream, vec![e])
            .await
            .expect("the store takes it once there is room, so it had not been written");
    }
    assert_eq!(
        store
            .read_all(Position::ORIGIN, 10_000)
            .await
            .expect("read")
            .len(),
        401
    );
}

/// Threads opening one new file at the same moment, round after round: every open
/// succeeds (the switch to WAL is retried, the schema made inside `BEGIN IMMEDIATE`) and
/// the file is a valid store holding every thread's append.
#[test]
fn threads_opening_one_new_file_at_once_all_succeed() {
    use dealreg_store_sqlite::SqliteCheckpoints;

    let dir = tempfile::tempdir().expect("temp dir");
    let threads = 8;
    for round in 0..30 {
        let path = dir.path().join(format!("open-{round}.db"));
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|n| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || -> Result<(), String> {
                    barrier.wait();
                    let store = SqliteStore::open(&path).map_err(|e| e.to_string())?;
                    SqliteCheckpoints::open(&path).map_err(|e| e.to_string())?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime
                        .block_on(store.append(
                            &format!("account-t{n}.example"),
                            ExpectedVersion::NoStream,
                            vec![event("e", n)],
                        ))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .expect("thread joins")
                .unwrap_or_else(|e| panic!("round {round}: an open failed: {e}"));
        }
        let store = SqliteStore::open_existing(&path).expect("a valid store");
        assert_eq!(store.settings().journal_mode, "wal");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let log = runtime
            .block_on(store.read_all(Position::ORIGIN, 100))
            .expect("read");
        assert_eq!(log.len(), threads, "round {round}: every append is there");
    }
}

/// Invariant 5 as the writer reports it: the store runs with WAL and `synchronous=FULL`
/// (read back from SQLite, not assumed), and every append answered `Ok` was answered by a
/// group whose durable `COMMIT` returned first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_is_covered_by_a_durable_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("durable.db");
    let store = SqliteStore::open(&path).expect("open");
    assert_eq!(store.settings().journal_mode, "wal");
    assert_eq!(store.settings().synchronous, "full");
    let mut tasks = Vec::new();
    for n in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    &format!("account-d{n}.example"),
                    ExpectedVersion::NoStream,
                    vec![event("e", n)],
                )
                .await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("append");
    }
    let stats = store.stats();
    assert_eq!(stats.acknowledged, 100, "{stats:?}");
    assert_eq!(stats.acknowledged_by_commit, 100, "{stats:?}");
    assert_eq!(stats.failed_groups, 0, "{stats:?}");
    assert!(stats.commits >= 1 && stats.commits <= 100, "{stats:?}");
    drop(store);

    // Another connection sees the file in WAL mode: the setting is in the file, not only
    // in the writer's connection.
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_pass_the_checkpoint_suite() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let counter = std::sync::atomic::AtomicUsize::new(0);
    dealreg_views::conformance::checkpoints_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("checkpoints-{n}.db"));
        async move {
            SqliteStore::open(&path).expect("open store");
            dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open checkpoints")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_leases_are_exclusive_until_they_expire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("leases.db");
    SqliteStore::open(&path).expect("open store");
    dealreg_views::conformance::leases_are_exclusive_until_they_expire(
        dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open checkpoints"),
    )
    .await;
}

/// Two processes' handles on one file: a save fenced by a lease another holder took is
/// refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_fenced_by_a_lost_lease_writes_nothing() {
    use dealreg_views::{CheckpointStore, Leases, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fence.db");
    SqliteStore::open(&path).expect("open store");
    let a = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("a");
    let b = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("b");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let ttl = std::time::Duration::from_secs(10);
    assert!(a.try_acquire("views", "a", t0, ttl).await.expect("a takes"));
    let fenced = a.fenced("views", "a");
    let save = |position: u64| empty_meta(position, 1);
    let one_row = || {
        vec![RowWrite {
            key: "r/1".into(),
            scope: None,
            row: Some(b"1".to_vec()),
        }]
    };
    fenced
        .save_published_rows("v", save(5), one_row())
        .await
        .expect("a holds the lease");
    let expired = t0 + chrono::Duration::seconds(11);
    assert!(b
        .try_acquire("views", "b", expired, ttl)
        .await
        .expect("b takes over"));
    let refused = fenced.save_published_rows("v", save(6), one_row()).await;
    assert!(
        matches!(refused, Err(dealreg_views::ViewsError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert_eq!(
        b.load("v").await.expect("load").map(|c| c.position),
        Some(Position::at(5)),
        "the refused save wrote nothing"
    );
    assert_eq!(b.feed_after(0, 10).await.expect("feed").len(), 1);
}

/// Outbox entries another process of the deployment published leave this file's outbox
/// for their view, up to the position marked, and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_entries_published_elsewhere_leave_only_for_their_view_and_positions() {
    use dealreg_views::{CheckpointStore, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("outbox.db");
    SqliteStore::open(&path).expect("open store");
    let views = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("views");
    for (view, position) in [("a", 3), ("b", 4), ("a", 5), ("a", 8)] {
        let rows = vec![RowWrite {
            key: format!("r/{position}"),
            scope: None,
            row: Some(b"1".to_vec()),
        }];
        views
            .save_published_rows(view, empty_meta(position, 1), rows)
            .await
            .expect("save");
    }
    views
        .feed_published_elsewhere("a", Position::at(5))
        .await
        .expect("drop");
    let left: Vec<(String, Position)> = views
        .feed_after(0, 10)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| (e.view, e.position))
        .collect();
    assert_eq!(
        left,
        vec![("b".into(), Position::at(4)), ("a".into(), Position::at(8))]
    );
}

/// A views file of the earlier layout (every view's rows in one `view_rows` table) is moved
/// to a table per view: its derived views are dropped with their checkpoints and outbox,
/// so the next fold rebuilds them; nothing of the old rows is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_of_the_one_table_layout_are_dropped_for_a_rebuild() {
    use dealreg_views::{CheckpointStore, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    SqliteStore::open(&path).expect("open store");
    // The first open writes the views file; then it is turned into the old layout, as an
    // earlier build left it: a saved pipeline with a row and an unpublished outbox entry.
    drop(dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("first open"));
    let views = dealreg_store_sqlite::views_path(&path);
    {
        let conn = rusqlite::Connection::open(&views).expect("views file");
        conn.execute_batch(
            "CREATE TABLE view_rows (view TEXT NOT NULL, key TEXT NOT NULL, scope TEXT,
                 position INTEGER NOT NULL, row BLOB NOT NULL);
             CREATE UNIQUE INDEX view_rows_by_key ON view_rows (view, key);
             INSERT INTO view_rows VALUES ('pipeline', 'registration/1', 'p', 7, '{}');
             INSERT INTO projection_state (name, position, version, state)
                 VALUES ('pipeline', 7, 3, '{}');
             INSERT INTO feed_outbox (view, key, scope, previous_scope, position)
                 VALUES ('pipeline', 'registration/1', 'p', NULL, 7);",
        )
        .expect("old layout");
    }
    let checkpoints = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("reopen");
    assert_eq!(
        checkpoints.load("pipeline").await.expect("load"),
        None,
        "the old checkpoint is gone: the view is rebuilt from the origin"
    );
    assert!(checkpoints
        .load_rows("pipeline")
        .await
        .expect("rows")
        .is_empty());
    assert!(checkpoints
        .feed_after(0, 10)
        .await
        .expect("feed")
        .is_empty());
    {
        let conn = rusqlite::Connection::open(&views).expect("views file");
        let old: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'view_rows'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(old, 0, "the one-table layout is dropped");
    }
    // The new layout takes saves and serves them.
    let rows = vec![RowWrite {
        key: "registration/2".into(),
        scope: Some("p".into()),
        row: Some(b"{\"n\":2}".to_vec()),
    }];
    let saved = empty_meta(9, 3);
    checkpoints
        .save_published_rows("pipeline", saved, rows)
        .await
        .expect("save");
    let (at, scoped) = checkpoints
        .scoped_rows("pipeline", "p")
        .await
        .expect("scoped");
    assert_eq!(at, Position::at(9));
    assert_eq!(
        scoped,
        vec![("registration/2".to_string(), b"{\"n\":2}".to_vec())]
    );
}

/// View names become table names: names of any characters (checkpoint names such as
/// `reactor/follow-ups`, even SQL) each get a table of their own, and nothing in a name is
/// read as SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_names_of_any_characters_keep_their_rows_apart() {
    use dealreg_views::{CheckpointStore, Leases, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("names.db");
    SqliteStore::open(&path).expect("open store");
    let checkpoints = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let ttl = std::time::Duration::from_secs(10);
    assert!(checkpoints
        .try_acquire("views", "a", t0, ttl)
        .await
        .expect("lease"));
    let names = [
        "pipe line",
        "pipe_line",
        "pipe_20line",
        "reactor/follow-ups",
        "x\"; DROP TABLE leases; --",
        "Pipeline",
        "",
    ];
    for (n, name) in names.iter().enumerate() {
        let saved = empty_meta(n as u64 + 1, 1);
        let rows = vec![RowWrite {
            key: "k/1".into(),
            scope: Some("p".into()),
            row: Some(name.as_bytes().to_vec()),
        }];
        checkpoints
            .save_rows(name, saved, rows)
            .await
            .unwrap_or_else(|e| panic!("`{name}`: {e}"));
    }
    for (n, name) in names.iter().enumerate() {
        let (at, rows) = checkpoints.scoped_rows(name, "p").await.expect("rows");
        assert_eq!(at, Position::at(n as u64 + 1), "`{name}`");
        assert_eq!(
            rows,
            vec![("k/1".to_string(), name.as_bytes().to_vec())],
            "`{name}`"
        );
    }
    assert!(
        !checkpoints
            .try_acquire("views", "b", t0, ttl)
            .await
            .expect("lease"),
        "the leases table is still there, still held by a"
    );
}

/// Saves do not copy the WAL into the views file in their own commits; the checkpointer
/// does it beside them, once a few MiB were saved, or a second after the last copy when
/// anything was saved since. Shown by the views file itself growing (with the automatic
/// checkpoint off and no checkpointer, only its WAL would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_wal_is_copied_into_the_file_after_saves() {
    use dealreg_views::{CheckpointStore, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wal.db");
    SqliteStore::open(&path).expect("open store");
    let checkpoints = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open");
    let views = dealreg_store_sqlite::views_path(&path);
    let size = || std::fs::metadata(&views).expect("views file").len();
    let grows_past = |at_least: u64, why: &'static str| {
        let size = &size;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let now = size();
                if now >= at_least {
                    return now;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{why}: the views file stayed at {now} bytes, short of {at_least}: its WAL was not copied in"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let save = |view: &'static str, rows: usize, position: u64| {
        let rows: Vec<RowWrite> = (0..rows)
            .map(|n| RowWrite {
                key: format!("registration/{n:06}"),
                scope: Some(format!("partner-{}", n % 7)),
                row: Some(vec![b'x'; 1000]),
            })
            .collect();
        let saved = empty_meta(position, 1);
        let checkpoints = checkpoints.clone();
        async move { checkpoints.save_rows(view, saved, rows).await }
    };
    let before = size();
    save("pipeline", 6000, 6000).await.expect("big save");
    let after_big = grows_past(before + 6_000_000, "after 6 MB of rows").await;
    assert_eq!(
        checkpoints.load_rows("pipeline").await.expect("rows").len(),
        6000
    );
    // Small saves: the one a second after the last copy starts a checkpoint too.
    save("ledger", 3, 1).await.expect("small save");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    save("metrics", 3, 1)
        .await
        .expect("small save a second later");
    grows_past(after_big + 4096, "a second after the last copy").await;
}

/// A reset forgets a view at once and drops its old rows beside what follows: the next
/// save and every read see only new rows, and the old table is gone soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_view_serves_only_new_rows_and_its_old_table_is_dropped() {
    use dealreg_views::{CheckpointStore, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reset.db");
    SqliteStore::open(&path).expect("open store");
    let checkpoints = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open");
    let rows = |n: usize, tag: &str| -> Vec<RowWrite> {
        (0..n)
            .map(|i| RowWrite {
                key: format!("registration/{i:06}"),
                scope: Some("p".into()),
                row: Some(format!("{tag}{i}").into_bytes()),
            })
            .collect()
    };
    let at = |position: u64| empty_meta(position, 1);
    checkpoints
        .save_published_rows("pipeline", at(100), rows(2000, "old"))
        .await
        .expect("first save");
    checkpoints.reset("pipeline").await.expect("reset");
    assert_eq!(checkpoints.load("pipeline").await.expect("load"), None);
    checkpoints
        .save_published_rows("pipeline", at(5), rows(1, "new"))
        .await
        .expect("save after the reset");
    assert_eq!(
        checkpoints.load_rows("pipeline").await.expect("rows"),
        vec![("registration/000000".to_string(), b"new0".to_vec())]
    );
    let (position, scoped) = checkpoints
        .scoped_rows("pipeline", "p")
        .await
        .expect("scoped");
    assert_eq!(position, Position::at(5));
    assert_eq!(scoped.len(), 1, "the scope index holds only the new row");
    let conn = rusqlite::Connection::open(dealreg_store_sqlite::views_path(&path)).expect("views");
    let retired_tables = || -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE instr(name, '~retired~') > 0",
            [],
            |r| r.get(0),
        )
        .expect("schema")
    };
    assert_eq!(
        retired_tables(),
        1,
        "while the view is being rebuilt its old rows wait aside: dropping them would hold up its saves"
    );
    checkpoints.caught_up("pipeline").await.expect("caught up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if retired_tables() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old rows' table is still there after the rebuild caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A fold from the origin writes its rows without the scope index and builds the index
/// once it has caught up; in between, queries by scope are answered right (by a scan).
/// A process that died mid-rebuild leaves the index out; the next save of another
/// handle (not in bulk) builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_builds_the_scope_index_once_it_has_caught_up() {
    use dealreg_views::{CheckpointStore, RowWrite};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bulk.db");
    SqliteStore::open(&path).expect("open store");
    let checkpoints = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("open");
    let rows = |from: usize, n: usize| -> Vec<RowWrite> {
        (from..from + n)
            .map(|i| RowWrite {
                key: format!("registration/{i:06}"),
                scope: Some(format!("p{}", i % 3)),
                row: Some(format!("row{i}").into_bytes()),
            })
            .collect()
    };
    let conn = rusqlite::Connection::open(dealreg_store_sqlite::views_path(&path)).expect("views");
    let indexed = || -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'rows_pipeline_by_scope'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("schema")
            == 1
    };
    // A reset and the first save of the rebuild that follows it.
    let reset_and_save = || async {
        checkpoints.reset("pipeline").await.expect("reset");
        checkpoints
            .save_rows("pipeline", empty_meta(20, 1), rows(0, 30))
            .await
            .expect("bulk save");
    };
    checkpoints
        .save_rows("pipeline", empty_meta(10, 1), rows(0, 30))
        .await
        .expect("save");
    assert!(
        indexed(),
        "a view not being rebuilt is indexed from its first save"
    );

    reset_and_save().await;
    checkpoints
        .save_rows("pipeline", empty_meta(30, 1), rows(30, 30))
        .await
        .expect("bulk save");
    assert!(!indexed(), "saves of a rebuild leave the scope index out");
    let (position, scanned) = checkpoints
        .scoped_rows("pipeline", "p1")
        .await
        .expect("scoped");
    assert_eq!(position, Position::at(30));
    assert_eq!(
        scanned.len(),
        20,
        "a query by scope is answered without the index"
    );

    checkpoints.caught_up("pipeline").await.expect("caught up");
    assert!(indexed(), "caught up: the index is built");
    let (_, through_index) = checkpoints
        .scoped_rows("pipeline", "p1")
        .await
        .expect("scoped");
    assert_eq!(through_index, scanned, "the index serves the same rows");
    checkpoints
        .save_rows("pipeline", empty_meta(40, 1), rows(60, 3))
        .await
        .expect("save after");
    assert_eq!(
        checkpoints
            .scoped_rows("pipeline", "p1")
            .await
            .expect("scoped")
            .1
            .len(),
        21,
        "rows saved after the build are in the index"
    );

    // Died mid-rebuild: the index is missing, and this handle was never told to wait.
    reset_and_save().await;
    assert!(!indexed());
    let restarted = dealreg_store_sqlite::SqliteCheckpoints::open(&path).expect("reopen");
    restarted
        .save_rows("pipeline", empty_meta(25, 1), rows(30, 1))
        .await
        .expect("save after a restart");
    assert!(indexed(), "the next save after a restart builds the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_appends_to_several_streams_atomically() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let counter = std::sync::atomic::AtomicUsize::new(0);
    dealreg_events::conformance::multi_stream_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("multi-{n}.db"));
        async move { SqliteStore::open(path).expect("open") }
    })
    .await;
}
