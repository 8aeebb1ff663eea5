use std::sync::Arc;

use dealreg_store::conformance::{event, run_all};
use dealreg_store::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, StoreError, StreamWrite,
};
use dealreg_store_sqlite::SqliteStore;

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

fn single(stream: &str, expected: ExpectedVersion, n: usize) -> AppendRequest {
    AppendRequest {
        idempotency: None,
        writes: vec![StreamWrite {
            stream: stream.into(),
            expected,
            events: vec![event("e", n)],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_chains_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reopen.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        for n in 0..20 {
            store
                .append(single("account-reopen.example", ExpectedVersion::Any, n))
                .await
                .expect("append");
        }
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let events = store
        .read_stream("account-reopen.example", 0, 100)
        .await
        .expect("read");
    assert_eq!(events.len(), 20);
    dealreg_store::chain::verify_stream(&events).expect("chain intact after reopen");
    assert_eq!(
        *store.head().borrow(),
        events[19].position,
        "head restored from the file"
    );
    let next = store
        .append(single(
            "account-reopen.example",
            ExpectedVersion::Exact(19),
            20,
        ))
        .await
        .expect("append after reopen");
    assert_eq!(next.writes[0].revisions, vec![20]);
    dealreg_store::chain::verify_stream(
        &store
            .read_stream("account-reopen.example", 0, 100)
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
                .append(single(
                    &format!("account-g{n}.example"),
                    ExpectedVersion::NoStream,
                    n,
                ))
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
            .read_all(GlobalPosition::ORIGIN, 1000)
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
    for round in 0..10u64 {
        let expected = if round == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(round - 1)
        };
        let mut tasks = Vec::new();
        for n in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.append(single(stream, expected, n)).await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(_) => wins += 1,
                Err(StoreError::WrongExpectedVersion { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one writer wins");
    }
    assert_eq!(
        store.read_stream(stream, 0, 100).await.expect("read").len(),
        10
    );
}
