//! What the KurrentDB backend promises beyond the conformance suite, against the double:
//! how events and positions are stored, what it refuses, and what it does when the network
//! fails (through a TCP proxy that cuts connections or swallows replies).

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use kurrentdb::{
    DeleteStreamOptions, EventData, ReadAllOptions, ReadStreamOptions, TombstoneStreamOptions,
};
use uuid::Uuid;

use dealreg_events::chain::verify_stream;
use dealreg_events::conformance::{event, read_everything};
use dealreg_events::{EventStore, ExpectedVersion, LogStream, NewEvent, Position, StoreError};
use dealreg_kurrentdb_double::KurrentDouble;
use dealreg_store_kurrentdb::{KurrentOptions, KurrentStore, OpenError};

const WAIT: Duration = Duration::from_secs(20);

/// The next `n` events of a subscription, or a panic after [`WAIT`].
async fn take(sub: &mut LogStream, n: usize) -> Vec<Position> {
    let mut got = Vec::new();
    while got.len() < n {
        let page = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("the subscription delivers in time")
            .expect("the subscription goes on")
            .expect("the subscription reads");
        assert!(!page.is_empty());
        got.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(got.len(), n, "nothing beyond what was appended");
    got
}

/// Every event of `$all` as the plain client reads it: (stream, commit, prepare).
async fn raw_all(store: &KurrentStore) -> Vec<(String, u64, u64, String)> {
    let mut read = store
        .client()
        .read_all(&ReadAllOptions::default())
        .await
        .expect("read $all");
    let mut out = Vec::new();
    while let Some(e) = read.next().await.expect("read $all") {
        let e = e.get_original_event();
        out.push((
            e.stream_id().to_string(),
            e.position.commit,
            e.position.prepare,
            e.event_type.clone(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_kurrentdb_pairs_and_not_dense() {
    let (_double, store) = common::fresh().await;
    assert!(!store.capabilities().dense_positions);
    let first = store
        .append(
            "account-pairs.example",
            ExpectedVersion::NoStream,
            (0..3).map(|n| event("e", n)).collect(),
        )
        .await
        .expect("append three");
    let second = store
        .append(
            "account-pairs.example",
            ExpectedVersion::Exact(first.tip.clone()),
            vec![event("e", 3)],
        )
        .await
        .expect("append one");
    let raw = raw_all(&store).await;
    let reported: Vec<Position> = first
        .positions
        .iter()
        .chain(&second.positions)
        .copied()
        .collect();
    assert_eq!(
        reported,
        raw.iter()
            .map(|(_, commit, prepare, _)| Position::pair(*commit, *prepare))
            .collect::<Vec<_>>(),
        "each event's position is KurrentDB's (commit, prepare) of that event"
    );
    assert!(
        reported
            .windows(2)
            .all(|w| w[1].commit() > w[0].commit() + 1),
        "positions have gaps: {reported:?}"
    );
    assert_eq!(second.tip.position, reported[3]);
    assert_eq!(store.last_position().await.expect("head"), reported[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_metadata_come_back_byte_for_byte() {
    let (_double, store) = common::fresh().await;
    let bodies: [&[u8]; 5] = [
        b"{ \"spaced\" : [1, 2] }",
        b" {\"leading\":\"space\"}",
        b"",
        &[0xff, 0xfe, 0x00],
        b"\"just a string\"",
    ];
    let metadatas: [&[u8]; 5] = [b"{}", b"null", b"", &[0x80], b"{\"key\": \"k-1\" }"];
    let events: Vec<NewEvent> = bodies
        .iter()
        .zip(metadatas)
        .map(|(data, metadata)| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Odd".into(),
            data: data.to_vec(),
            metadata: metadata.to_vec(),
        })
        .collect();
    store
        .append(
            "account-bytes.example",
            ExpectedVersion::Any,
            events.clone(),
        )
        .await
        .expect("append");
    let read = store
        .read_stream("account-bytes.example", None, 10)
        .await
        .expect("read");
    for (sent, got) in events.iter().zip(&read) {
        assert_eq!(got.event_id, sent.event_id);
        assert_eq!(got.data, sent.data);
        assert_eq!(got.metadata, sent.metadata);
    }
    verify_stream(&read).expect("the chain covers the exact bytes");

    // As KurrentDB holds them: JSON content type for exact JSON, the envelope as JSON.
    let mut raw = store
        .client()
        .read_stream("account-bytes.example", &ReadStreamOptions::default())
        .await
        .expect("read");
    let mut is_json = Vec::new();
    while let Some(e) = raw.next().await.expect("read") {
        let e = e.get_original_event();
        is_json.push(e.is_json);
        let envelope: serde_json::Value =
            serde_json::from_slice(&e.custom_metadata).expect("the envelope is JSON");
        assert_eq!(envelope["dealreg"], 1);
        assert_eq!(envelope["hash"].as_str().map(str::len), Some(64));
    }
    assert_eq!(is_json, [true, false, false, false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_without_the_envelope_is_refused_by_every_read() {
    let (_double, store) = common::fresh().await;
    store
        .append(
            "account-ours.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("append");
    let foreign = store
        .client()
        .append_to_stream(
            "account-foreign.example",
            &Default::default(),
            EventData::json("Foreign", &serde_json::json!({"n": 1}))
                .expect("json")
                .id(Uuid::new_v4()),
        )
        .await
        .expect("a plain client append");
    let where_ = Position::pair(foreign.position.commit, foreign.position.prepare).to_string();
    let explained = |result: Result<Vec<_>, StoreError>| match result {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("not a dealreg event"), "{message}");
            assert!(message.contains("account-foreign.example"), "{message}");
            assert!(message.contains(&format!("position {where_}")), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    explained(store.read_stream("account-foreign.example", None, 10).await);
    explained(store.read_all(Position::ORIGIN, 10).await);
    let mut sub = store.subscribe_all(Position::ORIGIN);
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("the subscription answers")
        {
            Some(Ok(page)) => delivered += page.len(),
            Some(err) => {
                explained(err);
                break;
            }
            None => panic!("the subscription ended without its error"),
        }
    }
    assert_eq!(
        delivered, 1,
        "the events before the foreign one were delivered"
    );
    assert!(
        sub.next().await.is_none(),
        "the subscription ends after its error"
    );
    // Appending to it would chain from an event dealreg cannot read.
    assert!(store
        .append(
            "account-foreign.example",
            ExpectedVersion::Any,
            vec![event("e", 1)]
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_records_are_not_part_of_the_log() {
    let (_double, store) = common::fresh().await;
    let a = store
        .append(
            "account-a.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("append");
    // A soft delete writes to `$$…`; a tombstone writes `$streamDeleted` into the stream.
    store
        .client()
        .delete_stream("ghost", &DeleteStreamOptions::default())
        .await
        .expect("soft delete");
    for n in 0..5 {
        store
            .client()
            .tombstone_stream(format!("gone-{n}"), &TombstoneStreamOptions::default())
            .await
            .expect("tombstone");
    }
    let b = store
        .append(
            "account-b.example",
            ExpectedVersion::NoStream,
            vec![event("e", 1)],
        )
        .await
        .expect("append");
    store
        .client()
        .tombstone_stream("account-b.example", &TombstoneStreamOptions::default())
        .await
        .expect("tombstone a dealreg stream");
    let raw = raw_all(&store).await;
    assert_eq!(raw.len(), 9, "$all holds the system records: {raw:?}");

    let all = read_everything(&store).await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [a.positions[0], b.positions[0]]
    );
    assert_eq!(store.last_position().await.expect("head"), b.positions[0]);
    let after_a = store.read_all(a.positions[0], 1).await.expect("read");
    assert_eq!(
        after_a.iter().map(|e| e.position).collect::<Vec<_>>(),
        b.positions,
        "a page of system records is skipped, not taken for the log's end"
    );
    let mut sub = store.subscribe_all(Position::ORIGIN);
    assert_eq!(take(&mut sub, 2).await, [a.positions[0], b.positions[0]]);
    let c = store
        .append(
            "account-c.example",
            ExpectedVersion::NoStream,
            vec![event("e", 2)],
        )
        .await
        .expect("append");
    assert_eq!(take(&mut sub, 1).await, c.positions);

    // The tombstoned dealreg stream says so.
    match store.read_stream("account-b.example", None, 10).await {
        Err(StoreError::Backend(message)) => assert!(message.contains("tombstoned"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    match store
        .append(
            "account-b.example",
            ExpectedVersion::Exact(b.tip),
            vec![event("e", 3)],
        )
        .await
    {
        Err(StoreError::Backend(message)) => assert!(message.contains("tombstoned"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrentdb_reserved_names_are_refused() {
    let (_double, store) = common::fresh().await;
    for (stream, kind) in [("$system", "e"), ("account-x.example", "$type")] {
        match store
            .append(stream, ExpectedVersion::Any, vec![event(kind, 0)])
            .await
        {
            Err(StoreError::InvalidAppend(message)) => assert!(message.contains('$'), "{message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(read_everything(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connection_strings_fail_at_connect_with_what_to_write() {
    match KurrentStore::connect("http://localhost:2113").await {
        Err(e @ OpenError::BadUrl { .. }) => {
            assert!(
                e.to_string().contains("kurrentdb://HOST:2113?tls=false"),
                "{e}"
            )
        }
        other => panic!("expected BadUrl, got {other:?}"),
    }
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!(
        "kurrentdb://admin:s3cret@127.0.0.1:{port}?tls=false&discoveryInterval=0&maxDiscoverAttempts=2"
    );
    match tokio::time::timeout(WAIT, KurrentStore::connect(&url)).await {
        Ok(Err(e @ OpenError::Unreachable { .. })) => {
            let message = e.to_string();
            assert!(message.contains("did not answer"), "{message}");
            assert!(
                !message.contains("s3cret"),
                "the password is never shown: {message}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let double = KurrentDouble::start().await;
    let options = KurrentOptions {
        namespace: Some("no.dots".into()),
        ..KurrentOptions::default()
    };
    assert!(matches!(
        KurrentStore::connect_with(&common::url_of(double.addr()), options).await,
        Err(OpenError::BadNamespace { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_appends_racing_on_one_stream_all_land_in_one_chain() {
    let (_double, store) = common::fresh().await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..8 {
                store
                    .append(
                        "account-any-race.example",
                        ExpectedVersion::Any,
                        vec![event("w", w * 100 + n)],
                    )
                    .await
                    .expect("an Any append lands");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let stream = store
        .read_stream("account-any-race.example", None, 100)
        .await
        .expect("read");
    assert_eq!(stream.len(), 32);
    verify_stream(&stream).expect("one chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_settled_by_sending_the_same_append_again() {
    let double = KurrentDouble::start().await;
    let proxy = common::Proxy::start(double.addr()).await;
    let store = common::store_at(proxy.addr(), KurrentOptions::default()).await;
    let s = "account-lost-reply.example";
    let first = store
        .append(s, ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
        .expect("append");

    // The append reaches the server, its reply does not come back, then the connection
    // drops: the store cannot know whether it was written, so it sends it again.
    proxy.swallow_replies(true);
    let cutter = {
        let proxy_cut = std::sync::Arc::new(proxy);
        let proxy = proxy_cut.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            proxy.swallow_replies(false);
            proxy.cut();
        });
        (proxy_cut, task)
    };
    let second = store
        .append(s, ExpectedVersion::Exact(first.tip), vec![event("e", 1)])
        .await
        .expect("the retry learns that the append landed");
    cutter.1.await.expect("cutter");
    assert_eq!(second.revisions, vec![1]);
    let stream = store.read_stream(s, None, 10).await.expect("read");
    assert_eq!(stream.len(), 2, "written once, not twice");
    assert_eq!(stream[1].position, second.positions[0]);
    verify_stream(&stream).expect("chained");
    assert_eq!(double.event_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_never_gets_an_answer_is_an_unknown_outcome() {
    let double = KurrentDouble::start().await;
    let proxy = common::Proxy::start(double.addr()).await;
    let options = KurrentOptions {
        deadline: Duration::from_millis(300),
        append_attempts: 2,
        retry_delay: Duration::from_millis(50),
        ..KurrentOptions::default()
    };
    let store = common::store_at(proxy.addr(), options).await;
    proxy.swallow_replies(true);
    let s = "account-no-answer.example";
    match store
        .append(s, ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
    {
        Err(StoreError::OutcomeUnknown { reason }) => {
            assert!(reason.contains("no definite answer"), "{reason}")
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    // It did land, once: why the answer had to be "unknown", not "not written".
    let direct = common::store_at(double.addr(), KurrentOptions::default()).await;
    let stream = direct.read_stream(s, None, 10).await.expect("read");
    assert_eq!(stream.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_after_a_dropped_connection_without_skipping_or_repeating() {
    let double = KurrentDouble::start().await;
    let proxy = common::Proxy::start(double.addr()).await;
    let writer = common::store_at(double.addr(), KurrentOptions::default()).await;
    let quick = KurrentOptions {
        retry_delay: Duration::from_millis(50),
        ..KurrentOptions::default()
    };
    let reader = common::store_at(proxy.addr(), quick).await;
    let mut sub = reader.subscribe_all(Position::ORIGIN);
    let append = |n: usize| {
        let writer = writer.clone();
        async move {
            writer
                .append(
                    "account-resume.example",
                    ExpectedVersion::Any,
                    vec![event("e", n)],
                )
                .await
                .expect("append")
                .positions[0]
        }
    };
    let mut before = Vec::new();
    for n in 0..5 {
        before.push(append(n).await);
    }
    assert_eq!(take(&mut sub, 5).await, before);

    let connections = proxy.accepted();
    proxy.cut();
    let mut after = Vec::new();
    for n in 5..10 {
        after.push(append(n).await);
    }
    assert_eq!(
        take(&mut sub, 5).await,
        after,
        "nothing skipped, nothing repeated"
    );
    assert!(
        proxy.accepted() > connections,
        "the subscription came back on a new connection"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.next())
            .await
            .is_err(),
        "nothing more than what was appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_from_a_checkpoint_past_other_namespaces() {
    let double = KurrentDouble::start().await;
    let proxy = common::Proxy::start(double.addr()).await;
    let in_ns = |ns: &str| KurrentOptions {
        namespace: Some(ns.into()),
        retry_delay: Duration::from_millis(50),
        ..KurrentOptions::default()
    };
    let mine = common::store_at(double.addr(), in_ns("mine")).await;
    let other = common::store_at(double.addr(), in_ns("other")).await;
    let reader = common::store_at(proxy.addr(), in_ns("mine")).await;
    let first = mine
        .append(
            "account-1.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("append");
    let mut sub = reader.subscribe_all(Position::ORIGIN);
    assert_eq!(take(&mut sub, 1).await, first.positions);
    // More than a checkpoint window (32) of records the reader's filter passes over.
    for n in 0..40 {
        other
            .append(
                "account-x.example",
                ExpectedVersion::Any,
                vec![event("e", n)],
            )
            .await
            .expect("append elsewhere");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    let second = mine
        .append(
            "account-2.example",
            ExpectedVersion::NoStream,
            vec![event("e", 1)],
        )
        .await
        .expect("append");
    assert_eq!(take(&mut sub, 1).await, second.positions);
    let everything = read_everything(&reader).await;
    assert_eq!(
        everything.len(),
        2,
        "the namespace's log holds its own events only"
    );
    assert!(everything.iter().all(|e| !e.stream.starts_with("mine.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_with_an_error_once_the_server_is_gone() {
    let double = KurrentDouble::start().await;
    let options = KurrentOptions {
        resubscribe_attempts: 2,
        retry_delay: Duration::from_millis(50),
        ..KurrentOptions::default()
    };
    let url = format!(
        "{}&maxDiscoverAttempts=2&gossipTimeout=500",
        common::url_of(double.addr())
    );
    let store = KurrentStore::connect_with(&url, options)
        .await
        .expect("connect");
    let first = store
        .append(
            "account-gone.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("append");
    let mut sub = store.subscribe_all(Position::ORIGIN);
    assert_eq!(take(&mut sub, 1).await, first.positions);
    drop(double);
    match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
        Ok(Some(Err(StoreError::Backend(message)))) => {
            assert!(message.contains("could not be resumed"), "{message}")
        }
        other => panic!("expected the subscription's error, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
}
