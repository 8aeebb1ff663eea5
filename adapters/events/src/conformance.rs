//! The conformance suite every backend passes. A backend's tests call [`run_all`] with a
//! function that makes a fresh, empty store; each case can also be called on its own.
//! Backends with atomic appends to several streams also run [`multi_stream_all`].
//!
//! These are the promises the engine relies on; a backend that fails one is not a backend.
//! None of them assumes positions are dense or numbers: they are only compared.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

use crate::chain::{verify_stream, BreakKind, GENESIS_HASH};
use crate::{
    Appended, EventStore, ExpectedVersion, LogPages, LogStream, NewEvent, Position, RecordedEvent,
    StoreError, StreamAppend, StreamTip,
};

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    expected_version_semantics(make().await).await;
    appends_are_atomic_and_chained(make().await).await;
    racing_writers_with_one_expectation_have_one_winner(make().await, 16, 5).await;
    reads_are_ordered_and_bounded(make().await).await;
    subscriptions_miss_nothing_under_concurrent_appends(make().await).await;
    reading_to_the_head_stops_there(make().await).await;
    hash_chains_detect_tampering(make().await).await;
    invalid_appends_are_refused(make().await).await;
    stream_names_come_back_as_written(make().await).await;
    several_streams_at_once_only_where_offered(make().await).await;
    a_read_to_append_is_a_prefix_and_its_tip_appends(make().await).await;
}

/// [`EventStore::read_stream_to_append`] may lag, never invent or reorder: what it gives
/// is a prefix of what [`EventStore::read_stream`] gives, and an append at its tip either
/// lands or is refused as `WrongExpectedVersion` (a stale tip), never anything else.
pub async fn a_read_to_append_is_a_prefix_and_its_tip_appends<S: EventStore>(store: S) {
    let stream = "account-prefix.example";
    for n in 0..5 {
        store
            .append(stream, ExpectedVersion::Any, vec![event("e", n)])
            .await
            .expect("append");
    }
    let full = store.read_stream(stream, None, 100).await.expect("read");
    let quick = store
        .read_stream_to_append(stream, None, 100)
        .await
        .expect("read to append");
    assert!(
        quick.len() <= full.len(),
        "a read to append invented events"
    );
    for (a, b) in quick.iter().zip(&full) {
        assert_eq!((a.event_id, a.revision), (b.event_id, b.revision));
    }
    let expected = match quick.last() {
        Some(last) => ExpectedVersion::Exact(StreamTip::of(last)),
        None => ExpectedVersion::NoStream,
    };
    match store.append(stream, expected, vec![event("e", 5)]).await {
        Ok(_) => assert_eq!(quick.len(), full.len(), "an append at a stale tip landed"),
        Err(StoreError::WrongExpectedVersion { .. }) => {
            assert!(quick.len() < full.len(), "a current tip was refused")
        }
        Err(other) => panic!("an append at a read's tip failed otherwise: {other}"),
    }
    assert!(store
        .read_stream_to_append("account-none.example", None, 10)
        .await
        .expect("an absent stream")
        .is_empty());
}

/// Runs the cases of the optional atomic append to several streams
/// ([`EventStore::append_streams`], [`crate::Capabilities::multi_stream_append`]).
pub async fn multi_stream_all<S, F, Fut>(make: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    appends_to_several_streams_are_atomic(make().await).await;
}

/// An event with a fresh id and a small JSON body.
pub fn event(kind: &str, n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: kind.to_string(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        metadata: b"{}".to_vec(),
    }
}

/// Every event of the log, through [`LogPages`].
pub async fn read_everything<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut pages = LogPages::new(store, Position::ORIGIN)
        .await
        .expect("read the head");
    while let Some(page) = pages.next_page().await.expect("read the log") {
        all.extend(page);
    }
    all
}

fn assert_wrong_version(result: Result<Appended, StoreError>, want_actual: Option<u64>) {
    match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => {
            assert_eq!(
                actual, want_actual,
                "the error reports the stream's real version"
            )
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
}

/// Any, no stream and an exact tip, each where it holds and where it does not; a refused
/// append writes nothing; `Any` continues the chain from the real tip.
pub async fn expected_version_semantics<S: EventStore>(store: S) {
    let s = "account-versions.example";
    let nowhere = StreamTip {
        revision: 0,
        position: Position::at(1),
        hash: GENESIS_HASH.into(),
    };
    assert_wrong_version(
        store
            .append(s, ExpectedVersion::Exact(nowhere), vec![event("a", 0)])
            .await,
        None,
    );
    let first = store
        .append(s, ExpectedVersion::NoStream, vec![event("a", 0)])
        .await
        .expect("no stream");
    assert_eq!(first.revisions, vec![0]);
    assert_eq!(first.tip.revision, 0);
    assert_eq!(first.tip.position, first.positions[0]);
    assert_wrong_version(
        store
            .append(s, ExpectedVersion::NoStream, vec![event("a", 1)])
            .await,
        Some(0),
    );
    let second = store
        .append(
            s,
            ExpectedVersion::Exact(first.tip.clone()),
            vec![event("a", 1)],
        )
        .await
        .expect("exact");
    assert_eq!(second.revisions, vec![1]);
    assert!(second.positions[0] > first.positions[0]);
    assert_wrong_version(
        store
            .append(s, ExpectedVersion::Exact(first.tip), vec![event("a", 2)])
            .await,
        Some(1),
    );
    let third = store
        .append(s, ExpectedVersion::Any, vec![event("a", 2), event("a", 3)])
        .await
        .expect("any");
    assert_eq!(third.revisions, vec![2, 3]);
    let fresh = store
        .append(
            "account-any.example",
            ExpectedVersion::Any,
            vec![event("a", 0)],
        )
        .await
        .expect("any on a new stream");
    assert_eq!(fresh.revisions, vec![0]);
    let stream = store.read_stream(s, None, 100).await.expect("read");
    assert_eq!(stream.len(), 4, "refused appends wrote nothing");
    verify_stream(&stream).expect("exact and any appends continue one chain");
    assert_eq!(
        StreamTip::of(&stream[3]),
        third.tip,
        "the tip is the last event"
    );
}

/// Several events of one append land together, in order, with consecutive revisions,
/// increasing positions and one chain; the tip an append reports is what a read gives.
pub async fn appends_are_atomic_and_chained<S: EventStore>(store: S) {
    let s = "account-atomic.example";
    let appended = store
        .append(
            s,
            ExpectedVersion::NoStream,
            (0..5).map(|n| event("e", n)).collect(),
        )
        .await
        .expect("append");
    assert_eq!(appended.revisions, vec![0, 1, 2, 3, 4]);
    assert!(appended.positions.windows(2).all(|w| w[0] < w[1]));
    let read = store.read_stream(s, None, 10).await.expect("read");
    assert_eq!(read.len(), 5);
    assert_eq!(
        read.iter().map(|e| e.position).collect::<Vec<_>>(),
        appended.positions
    );
    verify_stream(&read).expect("one chain");
    assert_eq!(StreamTip::of(&read[4]), appended.tip);
    let more = store
        .append(
            s,
            ExpectedVersion::Exact(appended.tip),
            vec![event("e", 5), event("e", 6)],
        )
        .await
        .expect("append after the tip");
    assert_eq!(more.revisions, vec![5, 6]);
    let read = store.read_stream(s, None, 10).await.expect("read");
    verify_stream(&read).expect("the chain continues across appends");
    assert_eq!(read[5].prev_hash, read[4].hash);
}

/// `writers` tasks append to one stream at the same exact tip, `rounds` times: exactly one
/// wins each round, the others are told the stream moved, and the log holds one event per
/// round.
pub async fn racing_writers_with_one_expectation_have_one_winner<S: EventStore + Clone>(
    store: S,
    writers: usize,
    rounds: usize,
) {
    let s = "account-race.example";
    let mut tip = store
        .append(s, ExpectedVersion::NoStream, vec![event("seed", 0)])
        .await
        .expect("seed")
        .tip;
    for round in 0..rounds {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(writers));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (store, tip, start) = (store.clone(), tip.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store
                    .append(s, ExpectedVersion::Exact(tip), vec![event("w", w)])
                    .await
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("writer") {
                Ok(appended) => winners.push(appended),
                Err(StoreError::WrongExpectedVersion { .. }) => {}
                Err(other) => panic!("a racing writer failed otherwise: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        tip = winners.remove(0).tip;
    }
    let stream = store.read_stream(s, None, 1000).await.expect("read");
    assert_eq!(stream.len(), rounds + 1);
    verify_stream(&stream).expect("the winners make one chain");
}

pub async fn reads_are_ordered_and_bounded<S: EventStore>(store: S) {
    assert_eq!(
        store.last_position().await.expect("head"),
        Position::ORIGIN,
        "an empty log's head is the origin"
    );
    for n in 0..10 {
        let stream = if n % 2 == 0 {
            "account-even.example"
        } else {
            "account-odd.example"
        };
        store
            .append(stream, ExpectedVersion::Any, vec![event("e", n)])
            .await
            .expect("append");
    }
    let even = store
        .read_stream("account-even.example", None, 100)
        .await
        .expect("read");
    assert_eq!(
        even.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let tail = store
        .read_stream("account-even.example", Some(&StreamTip::of(&even[2])), 100)
        .await
        .expect("read");
    assert_eq!(
        tail.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 4],
        "`after` is exclusive"
    );
    assert_eq!(
        store
            .read_stream("account-even.example", Some(&StreamTip::of(&even[0])), 2)
            .await
            .expect("read")
            .iter()
            .map(|e| e.revision)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "`max` honoured"
    );
    assert!(
        store
            .read_stream("account-even.example", Some(&StreamTip::of(&even[4])), 10)
            .await
            .expect("read")
            .is_empty(),
        "nothing after the last event"
    );
    assert!(store
        .read_stream("account-none.example", None, 10)
        .await
        .expect("read")
        .is_empty());
    let all = read_everything(&store).await;
    assert_eq!(all.len(), 10);
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "the log in position order"
    );
    let page = store.read_all(Position::ORIGIN, 4).await.expect("read");
    assert_eq!(page.len(), 4, "`max` honoured");
    assert_eq!(page[0].position, all[0].position);
    let after = store.read_all(all[4].position, 3).await.expect("read");
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].position, all[5].position, "`after` is exclusive");
    assert!(store
        .read_all(all[9].position, 3)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        store.last_position().await.expect("head"),
        all[9].position,
        "the head is the newest position"
    );
    let bodies: Vec<String> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect();
    assert_eq!(bodies[3], "{\"n\":3}", "bytes come back as stored");
    assert_eq!(all[3].metadata, b"{}", "metadata comes back as stored");
}

async fn take(sub: &mut LogStream, n: usize) -> Vec<Position> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let page = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the subscription delivers within 20 s")
            .expect("the subscription goes on")
            .expect("the subscription reads");
        assert!(!page.is_empty(), "a subscription delivers no empty page");
        got.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(got.len(), n, "nothing beyond what was appended");
    got
}

/// Catch-up then live, under concurrent writers, for a subscriber from the origin and one
/// that starts midway: every event once, in position order.
pub async fn subscriptions_miss_nothing_under_concurrent_appends<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const EACH: usize = 50;
    let mut early = store.subscribe_all(Position::ORIGIN);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                store
                    .append(
                        &format!("account-w{w}.example"),
                        ExpectedVersion::Any,
                        vec![event("e", n)],
                    )
                    .await
                    .expect("append");
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // A second subscriber starts mid-way, from whatever has been written by then.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let midway = store.last_position().await.expect("head");
    let mut late = store.subscribe_all(midway);
    for task in tasks {
        task.await.expect("writer");
    }
    let all = read_everything(&store).await;
    assert_eq!(all.len(), WRITERS * EACH);
    let early_got = take(&mut early, all.len()).await;
    assert_eq!(
        early_got,
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let expected_late: Vec<_> = all
        .iter()
        .filter(|e| e.position > midway)
        .map(|e| e.position)
        .collect();
    let late_got = take(&mut late, expected_late.len()).await;
    assert_eq!(late_got, expected_late);
    // Live: a new append after catch-up arrives too, on both.
    let fresh = store
        .append(
            "account-live.example",
            ExpectedVersion::Any,
            vec![event("e", 0)],
        )
        .await
        .expect("append");
    assert_eq!(take(&mut early, 1).await, fresh.positions);
    assert_eq!(take(&mut late, 1).await, fresh.positions);
}

/// [`LogPages`] reads up to the head it found and stops there, even while appends go on.
pub async fn reading_to_the_head_stops_there<S: EventStore>(store: S) {
    let mut pages = LogPages::new(&store, Position::ORIGIN)
        .await
        .expect("start");
    assert!(
        pages.next_page().await.expect("read").is_none(),
        "an empty log has no page"
    );
    for n in 0..30 {
        store
            .append(
                "account-pages.example",
                ExpectedVersion::Any,
                vec![event("e", n)],
            )
            .await
            .expect("append");
    }
    let mut pages = LogPages::new(&store, Position::ORIGIN)
        .await
        .expect("start");
    let head = pages.head();
    store
        .append(
            "account-pages.example",
            ExpectedVersion::Any,
            vec![event("e", 30)],
        )
        .await
        .expect("an append after the reader started");
    let mut read = Vec::new();
    while let Some(page) = pages.next_page().await.expect("read") {
        read.extend(page);
    }
    assert_eq!(read.len(), 30, "up to the head the reader found");
    assert_eq!(read.last().map(|e| e.position), Some(head));
    let mut rest = LogPages::new(&store, head).await.expect("start");
    let page = rest.next_page().await.expect("read").expect("one page");
    assert_eq!(page.len(), 1, "after a position, only what came later");
}

pub async fn hash_chains_detect_tampering<S: EventStore>(store: S) {
    let s = "account-chain.example";
    for n in 0..5 {
        store
            .append(s, ExpectedVersion::Any, vec![event("e", n)])
            .await
            .expect("append");
    }
    let events = store.read_stream(s, None, 100).await.expect("read");
    verify_stream(&events).expect("an untouched chain verifies");
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    assert_eq!(events[1].prev_hash, events[0].hash);

    let mut altered = events.clone();
    altered[2].data[2] ^= 1;
    assert_eq!(
        verify_stream(&altered).expect_err("altered").kind,
        BreakKind::Altered
    );
    let mut removed = events.clone();
    removed.remove(2);
    let err = verify_stream(&removed).expect_err("removed");
    assert_eq!((err.kind, err.revision), (BreakKind::Removed, 3));
    let mut swapped = events.clone();
    swapped.swap(1, 2);
    assert_eq!(
        verify_stream(&swapped).expect_err("swapped").kind,
        BreakKind::InsertedOrReordered
    );
    let mut relinked = events.clone();
    relinked[3].prev_hash = relinked[1].hash.clone();
    relinked[3].hash = crate::chain::event_hash(
        &relinked[3].prev_hash,
        s,
        3,
        &relinked[3].event_id,
        &relinked[3].event_type,
        &relinked[3].data,
        &relinked[3].metadata,
    );
    assert_eq!(
        verify_stream(&relinked).expect_err("relinked").kind,
        BreakKind::InsertedOrReordered
    );
}

pub async fn invalid_appends_are_refused<S: EventStore>(store: S) {
    assert!(
        matches!(
            store
                .append("account-x.example", ExpectedVersion::Any, Vec::new())
                .await,
            Err(StoreError::InvalidAppend(_))
        ),
        "an append needs an event"
    );
    assert!(
        matches!(
            store
                .append("", ExpectedVersion::Any, vec![event("e", 0)])
                .await,
            Err(StoreError::InvalidAppend(_))
        ),
        "a stream needs a name"
    );
    let shared = event("e", 1);
    assert!(
        matches!(
            store
                .append(
                    "account-x.example",
                    ExpectedVersion::Any,
                    vec![shared.clone(), shared]
                )
                .await,
            Err(StoreError::InvalidAppend(_))
        ),
        "one id twice in one append is refused"
    );
    assert!(
        read_everything(&store).await.is_empty(),
        "nothing of the refused appends was written"
    );
}

/// Stream names as the engine makes them (dots of a domain, hyphens, a uuid) and with the
/// characters a backend must encode to use them (a subject's separators and wildcards, an
/// escape character): each reads back under its own name and no other.
pub async fn stream_names_come_back_as_written<S: EventStore>(store: S) {
    let names = [
        "account-acme.co.uk",
        "account-acme-co.uk",
        "account-acme_co_uk",
        "account-xn--bcher-kva.example",
        "partner-0191a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "program",
        "odd-*.>~2E%20 name",
        "odd-~",
    ];
    for (n, name) in names.iter().enumerate() {
        store
            .append(name, ExpectedVersion::NoStream, vec![event("e", n)])
            .await
            .unwrap_or_else(|e| panic!("append to `{name}`: {e}"));
    }
    for (n, name) in names.iter().enumerate() {
        let read = store.read_stream(name, None, 10).await.expect("read");
        assert_eq!(read.len(), 1, "`{name}` holds its own event only");
        assert_eq!(read[0].stream, *name);
        assert_eq!(read[0].data, format!("{{\"n\":{n}}}").into_bytes());
    }
    let all = read_everything(&store).await;
    assert_eq!(
        all.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
        names.to_vec(),
        "the log names every stream as written"
    );
}

/// An atomic append to several streams: all parts land, each chained; one part's failed
/// expectation writes no part.
pub async fn appends_to_several_streams_are_atomic<S: EventStore>(store: S) {
    assert!(
        store.capabilities().multi_stream_append,
        "a backend that runs the multi-stream cases says it can"
    );
    let (a, b) = ("account-multi.example", "partner-multi");
    let both = |ea: ExpectedVersion, eb: ExpectedVersion, n: usize| {
        vec![
            StreamAppend {
                stream: a.into(),
                expected: ea,
                events: vec![event("a", n), event("a", n + 1)],
            },
            StreamAppend {
                stream: b.into(),
                expected: eb,
                events: vec![event("b", n)],
            },
        ]
    };
    let first = store
        .append_streams(both(
            ExpectedVersion::NoStream,
            ExpectedVersion::NoStream,
            0,
        ))
        .await
        .expect("both");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].revisions, vec![0, 1]);
    assert_eq!(first[1].revisions, vec![0]);
    let refused = store
        .append_streams(both(
            ExpectedVersion::Exact(first[0].tip.clone()),
            ExpectedVersion::NoStream,
            2,
        ))
        .await;
    assert!(
        matches!(refused, Err(StoreError::WrongExpectedVersion { .. })),
        "{refused:?}"
    );
    assert_eq!(
        read_everything(&store).await.len(),
        3,
        "no part of the refused append was written"
    );
    store
        .append_streams(both(
            ExpectedVersion::Exact(first[0].tip.clone()),
            ExpectedVersion::Exact(first[1].tip.clone()),
            2,
        ))
        .await
        .expect("both again");
    for s in [a, b] {
        verify_stream(&store.read_stream(s, None, 10).await.expect("read")).expect("chained");
    }
}

/// A backend that does not offer atomic appends to several streams refuses them and
/// writes nothing; one that offers them writes every part.
pub async fn several_streams_at_once_only_where_offered<S: EventStore>(store: S) {
    let parts = vec![
        StreamAppend {
            stream: "offered-a".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event("a", 1)],
        },
        StreamAppend {
            stream: "offered-b".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event("b", 1)],
        },
    ];
    let answer = store.append_streams(parts).await;
    let written = read_everything(&store).await;
    if store.capabilities().multi_stream_append {
        let appended = answer.expect("a backend that offers it appends to several streams");
        assert_eq!(appended.len(), 2);
        assert_eq!(written.len(), 2);
    } else {
        assert!(
            matches!(answer, Err(StoreError::InvalidAppend(_))),
            "a backend without it refuses: {answer:?}"
        );
        assert!(written.is_empty(), "a refused append writes nothing");
    }
}
