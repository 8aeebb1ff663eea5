//! The conformance suite every backend passes. A backend's tests call [`run_all`] with a
//! function that makes a fresh, empty store; each case can also be called on its own.
//!
//! These are the promises the engine relies on; a backend that fails one is not a backend.

use std::future::Future;

use uuid::Uuid;

use crate::chain::{verify_stream, BreakKind};
use crate::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, Idempotency, NewEvent,
    RecordedEvent, StoreError, StreamWrite,
};

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: EventStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    expected_version_semantics(make().await).await;
    multi_event_and_multi_stream_appends_are_atomic(make().await).await;
    idempotency_keys_give_one_effect(make().await).await;
    concurrent_appends_with_one_key_apply_once(make().await).await;
    reads_are_ordered_and_bounded(make().await).await;
    subscriptions_miss_nothing_under_concurrent_appends(make().await).await;
    hash_chains_detect_tampering(make().await).await;
    invalid_appends_are_refused(make().await).await;
    an_empty_write_checks_a_streams_version_and_writes_nothing(make().await).await;
}

/// A write with no events is a condition: the append succeeds only while that stream is
/// at the expected version, and nothing is written to it. The engine uses it for streams
/// a decision read but does not write.
pub async fn an_empty_write_checks_a_streams_version_and_writes_nothing<S: EventStore>(store: S) {
    let (read, written) = ("partner-read.example", "account-written.example");
    store
        .append(one(read, ExpectedVersion::NoStream, vec![event("e", 0)]))
        .await
        .expect("seed");
    let both = |expected: ExpectedVersion, n: usize| AppendRequest {
        idempotency: None,
        writes: vec![
            StreamWrite {
                stream: written.into(),
                expected: ExpectedVersion::Any,
                events: vec![event("e", n)],
            },
            StreamWrite {
                stream: read.into(),
                expected,
                events: Vec::new(),
            },
        ],
    };
    let outcome = store
        .append(both(ExpectedVersion::Exact(0), 1))
        .await
        .expect("the condition holds");
    assert_eq!(outcome.writes.len(), 2);
    assert!(
        outcome.writes[1].revisions.is_empty(),
        "nothing written to the checked stream"
    );
    assert_eq!(
        store.read_stream(read, 0, 10).await.expect("read").len(),
        1,
        "the checked stream is unchanged"
    );
    store
        .append(one(read, ExpectedVersion::Exact(0), vec![event("e", 2)]))
        .await
        .expect("the checked stream moves on");
    let err = store
        .append(both(ExpectedVersion::Exact(0), 3))
        .await
        .expect_err("the condition no longer holds");
    assert!(
        matches!(err, StoreError::WrongExpectedVersion { .. }),
        "{err}"
    );
    assert_eq!(
        store.read_stream(written, 0, 10).await.expect("read").len(),
        1,
        "nothing of the refused append was written"
    );
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

fn one(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        idempotency: None,
        writes: vec![StreamWrite {
            stream: stream.to_string(),
            expected,
            events,
        }],
    }
}

async fn read_everything<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = GlobalPosition::ORIGIN;
    loop {
        let page = store.read_all(after, 100).await.expect("read_all");
        let Some(last) = page.last() else { break };
        after = last.position;
        all.extend(page);
    }
    all
}

fn assert_wrong_version(
    result: Result<crate::AppendOutcome, StoreError>,
    want_actual: Option<u64>,
) {
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

pub async fn expected_version_semantics<S: EventStore>(store: S) {
    let s = "account-versions.example";
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::StreamExists, vec![event("a", 0)]))
            .await,
        None,
    );
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::Exact(0), vec![event("a", 0)]))
            .await,
        None,
    );
    let first = store
        .append(one(s, ExpectedVersion::NoStream, vec![event("a", 0)]))
        .await
        .expect("no stream");
    assert_eq!(first.writes[0].revisions, vec![0]);
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::NoStream, vec![event("a", 1)]))
            .await,
        Some(0),
    );
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::Exact(1), vec![event("a", 1)]))
            .await,
        Some(0),
    );
    let second = store
        .append(one(s, ExpectedVersion::Exact(0), vec![event("a", 1)]))
        .await
        .expect("exact");
    assert_eq!(second.writes[0].revisions, vec![1]);
    let third = store
        .append(one(s, ExpectedVersion::StreamExists, vec![event("a", 2)]))
        .await
        .expect("exists");
    assert_eq!(third.writes[0].revisions, vec![2]);
    let fourth = store
        .append(one(s, ExpectedVersion::Any, vec![event("a", 3)]))
        .await
        .expect("any");
    assert_eq!(fourth.writes[0].revisions, vec![3]);
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::Exact(2), vec![event("a", 4)]))
            .await,
        Some(3),
    );
    let stream = store.read_stream(s, 0, 100).await.expect("read");
    assert_eq!(stream.len(), 4, "failed appends wrote nothing");
    // A write with no events still checks its expectation and appends nothing.
    let empty = store
        .append(one(s, ExpectedVersion::Exact(3), Vec::new()))
        .await
        .expect("empty write");
    assert!(empty.writes[0].revisions.is_empty());
    assert_wrong_version(
        store
            .append(one(s, ExpectedVersion::Exact(9), Vec::new()))
            .await,
        Some(3),
    );
}

pub async fn multi_event_and_multi_stream_appends_are_atomic<S: EventStore>(store: S) {
    let a = "account-atomic.example";
    let b = "partner-atomic";
    let request = AppendRequest {
        idempotency: None,
        writes: vec![
            StreamWrite {
                stream: a.into(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("x", 0), event("x", 1), event("x", 2)],
            },
            StreamWrite {
                stream: b.into(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("y", 0)],
            },
        ],
    };
    let outcome = store.append(request).await.expect("atomic append");
    assert_eq!(outcome.writes[0].revisions, vec![0, 1, 2]);
    assert_eq!(outcome.writes[1].revisions, vec![0]);
    let positions: Vec<_> = outcome
        .writes
        .iter()
        .flat_map(|w| w.positions.clone())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "positions increase within an append"
    );

    // One failing expectation: nothing is written on any stream.
    let failing = AppendRequest {
        idempotency: None,
        writes: vec![
            StreamWrite {
                stream: a.into(),
                expected: ExpectedVersion::Exact(2),
                events: vec![event("x", 3)],
            },
            StreamWrite {
                stream: b.into(),
                expected: ExpectedVersion::Exact(7),
                events: vec![event("y", 1)],
            },
            StreamWrite {
                stream: "account-new.example".into(),
                expected: ExpectedVersion::Any,
                events: vec![event("z", 0)],
            },
        ],
    };
    assert_wrong_version(store.append(failing).await, Some(0));
    assert_eq!(store.read_stream(a, 0, 100).await.expect("read").len(), 3);
    assert_eq!(store.read_stream(b, 0, 100).await.expect("read").len(), 1);
    assert!(store
        .read_stream("account-new.example", 0, 100)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(read_everything(&store).await.len(), 4);
}

pub async fn idempotency_keys_give_one_effect<S: EventStore>(store: S) {
    let with_key = |key: &str, fingerprint: &str, n| AppendRequest {
        idempotency: Some(Idempotency {
            key: key.into(),
            fingerprint: fingerprint.into(),
        }),
        writes: vec![StreamWrite {
            stream: "account-idem.example".into(),
            expected: ExpectedVersion::Any,
            events: vec![event("e", n), event("e", n + 1)],
        }],
    };
    let first = store.append(with_key("k1", "f1", 0)).await.expect("first");
    assert!(!first.deduplicated);
    let again = store.append(with_key("k1", "f1", 0)).await.expect("retry");
    assert!(again.deduplicated, "the retry is recognised");
    assert_eq!(
        again.writes, first.writes,
        "the retry gets the first outcome"
    );
    assert_eq!(read_everything(&store).await.len(), 2, "one effect");
    match store.append(with_key("k1", "other", 5)).await {
        Err(StoreError::IdempotencyKeyReused { key }) => assert_eq!(key, "k1"),
        other => panic!("a reused key with another request must be refused, got {other:?}"),
    }
    let other = store
        .append(with_key("k2", "f1", 7))
        .await
        .expect("another key");
    assert!(!other.deduplicated);
    assert_eq!(read_everything(&store).await.len(), 4);
    // A refused append does not consume its key.
    let refused = AppendRequest {
        idempotency: Some(Idempotency {
            key: "k3".into(),
            fingerprint: "f".into(),
        }),
        writes: vec![StreamWrite {
            stream: "account-idem.example".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event("e", 9)],
        }],
    };
    assert_wrong_version(store.append(refused).await, Some(3));
    let later = AppendRequest {
        idempotency: Some(Idempotency {
            key: "k3".into(),
            fingerprint: "f".into(),
        }),
        writes: vec![StreamWrite {
            stream: "account-idem.example".into(),
            expected: ExpectedVersion::Exact(3),
            events: vec![event("e", 9)],
        }],
    };
    assert!(
        !store
            .append(later)
            .await
            .expect("key usable after a refusal")
            .deduplicated
    );
}

pub async fn concurrent_appends_with_one_key_apply_once<S: EventStore + Clone>(store: S) {
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(AppendRequest {
                    idempotency: Some(Idempotency {
                        key: "same".into(),
                        fingerprint: "same".into(),
                    }),
                    writes: vec![StreamWrite {
                        stream: "account-race.example".into(),
                        expected: ExpectedVersion::Any,
                        events: vec![event("e", 0)],
                    }],
                })
                .await
        }));
    }
    let mut fresh = 0;
    let mut outcomes = Vec::new();
    for task in tasks {
        let outcome = task.await.expect("join").expect("append");
        if !outcome.deduplicated {
            fresh += 1;
        }
        outcomes.push(outcome.writes);
    }
    assert_eq!(fresh, 1, "exactly one append took effect");
    assert!(
        outcomes.windows(2).all(|w| w[0] == w[1]),
        "all callers see the same outcome"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
}

pub async fn reads_are_ordered_and_bounded<S: EventStore>(store: S) {
    for n in 0..10 {
        let stream = if n % 2 == 0 {
            "account-even.example"
        } else {
            "account-odd.example"
        };
        store
            .append(one(stream, ExpectedVersion::Any, vec![event("e", n)]))
            .await
            .expect("append");
    }
    let even = store
        .read_stream("account-even.example", 0, 100)
        .await
        .expect("read");
    assert_eq!(
        even.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let tail = store
        .read_stream("account-even.example", 3, 100)
        .await
        .expect("read");
    assert_eq!(
        tail.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3, 4],
        "`from` is inclusive"
    );
    assert_eq!(
        store
            .read_stream("account-even.example", 1, 2)
            .await
            .expect("read")
            .len(),
        2,
        "`max` honoured"
    );
    assert!(store
        .read_stream("account-none.example", 0, 10)
        .await
        .expect("read")
        .is_empty());
    let all = read_everything(&store).await;
    assert_eq!(all.len(), 10);
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "read_all in position order"
    );
    let after = store.read_all(all[4].position, 3).await.expect("read");
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].position, all[5].position, "`after` is exclusive");
    assert_eq!(
        *store.head().borrow(),
        all[9].position,
        "head is the newest position"
    );
    let bodies: Vec<String> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect();
    assert_eq!(bodies[3], "{\"n\":3}", "bytes come back as stored");
}

pub async fn subscriptions_miss_nothing_under_concurrent_appends<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const EACH: usize = 50;
    let mut early = store.subscribe(GlobalPosition::ORIGIN);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                store
                    .append(one(
                        &format!("account-w{w}.example"),
                        ExpectedVersion::Any,
                        vec![event("e", n)],
                    ))
                    .await
                    .expect("append");
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // A second subscriber starts mid-way, from whatever has been written by then.
    tokio::task::yield_now().await;
    let midway = read_everything(&store)
        .await
        .last()
        .map_or(GlobalPosition::ORIGIN, |e| e.position);
    let mut late = store.subscribe(midway);
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
    // Live: a new append after catch-up arrives too.
    let fresh = store
        .append(one(
            "account-live.example",
            ExpectedVersion::Any,
            vec![event("e", 0)],
        ))
        .await
        .expect("append");
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), early.next())
        .await
        .expect("live event")
        .expect("sub");
    assert_eq!(next.position, fresh.writes[0].positions[0]);
    assert_eq!(early.position(), next.position);
}

async fn take<S: EventStore>(sub: &mut crate::Subscription<S>, n: usize) -> Vec<GlobalPosition> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .expect("subscription delivers within 10 s")
            .expect("subscription");
        got.push(e.position);
    }
    got
}

pub async fn hash_chains_detect_tampering<S: EventStore>(store: S) {
    let s = "account-chain.example";
    for n in 0..5 {
        store
            .append(one(s, ExpectedVersion::Any, vec![event("e", n)]))
            .await
            .expect("append");
    }
    let events = store.read_stream(s, 0, 100).await.expect("read");
    verify_stream(&events).expect("an untouched chain verifies");
    assert_eq!(events[0].prev_hash, crate::chain::GENESIS_HASH);
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
    let empty = AppendRequest {
        idempotency: None,
        writes: Vec::new(),
    };
    assert!(matches!(
        store.append(empty).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let twice = AppendRequest {
        idempotency: None,
        writes: vec![
            StreamWrite {
                stream: "account-x.example".into(),
                expected: ExpectedVersion::Any,
                events: vec![event("e", 0)],
            },
            StreamWrite {
                stream: "account-x.example".into(),
                expected: ExpectedVersion::Any,
                events: vec![event("e", 1)],
            },
        ],
    };
    assert!(matches!(
        store.append(twice).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let reused_id = event("e", 0);
    store
        .append(one(
            "account-y.example",
            ExpectedVersion::Any,
            vec![reused_id.clone()],
        ))
        .await
        .expect("first");
    assert!(
        store
            .append(one(
                "account-y.example",
                ExpectedVersion::Any,
                vec![reused_id]
            ))
            .await
            .is_err(),
        "an event id is stored once"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
    // Also within one request: two writes sharing an event id write nothing at all.
    let shared = event("e", 1);
    let two_writes = AppendRequest {
        idempotency: None,
        writes: vec![
            StreamWrite {
                stream: "account-z1.example".into(),
                expected: ExpectedVersion::Any,
                events: vec![shared.clone()],
            },
            StreamWrite {
                stream: "account-z2.example".into(),
                expected: ExpectedVersion::Any,
                events: vec![shared],
            },
        ],
    };
    assert!(
        matches!(
            store.append(two_writes).await,
            Err(StoreError::InvalidAppend(_))
        ),
        "one id in two writes is refused"
    );
    assert_eq!(
        read_everything(&store).await.len(),
        1,
        "and nothing of it was written"
    );
}
