//! The JetStream event store on one real nats-server: the whole conformance suite, the
//! multi-stream capability, and what `open` refuses or reports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use dealreg_events::conformance::{self, event};
use dealreg_events::{EventStore, ExpectedVersion, Position, StoreError};
use dealreg_nats_testkit::NatsServer;
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore, OpenError};

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Options for a fresh JetStream stream of its own (name and subjects), so the cases of
/// one server never see each other's events.
fn fresh() -> JetStreamOptions {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    JetStreamOptions {
        stream: format!("EVENTS_{n}"),
        subject_prefix: format!("case{n}.ev"),
        ..JetStreamOptions::default()
    }
}

async fn open(server: &NatsServer, options: JetStreamOptions) -> JetStreamStore {
    let client = async_nats::connect(server.url()).await.expect("connect");
    JetStreamStore::open(client, options).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_one_server() {
    let started = Instant::now();
    let server = NatsServer::start();
    conformance::run_all(|| open(&server, fresh())).await;
    conformance::multi_stream_all(|| open(&server, fresh())).await;
    println!("conformance on one server: {:?}", started.elapsed());
}

#[tokio::test]
async fn connect_takes_a_list_of_urls() {
    let server = NatsServer::start();
    let urls = vec![server.url().to_string()];
    let store = JetStreamStore::connect(&urls, fresh())
        .await
        .expect("connect");
    store
        .append("s", ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
        .expect("append");
    assert!(matches!(
        JetStreamStore::connect(&[], fresh()).await,
        Err(OpenError::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn a_missing_stream_is_refused_without_create() {
    let server = NatsServer::start();
    let options = JetStreamOptions {
        create: false,
        ..fresh()
    };
    let client = async_nats::connect(server.url()).await.expect("connect");
    let err = JetStreamStore::open(client, options)
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, OpenError::StreamMissing { .. }), "{err}");
}

#[tokio::test]
async fn a_stream_without_atomic_publish_is_refused() {
    let server = NatsServer::start();
    let options = JetStreamOptions {
        create: false,
        ..fresh()
    };
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client.clone())
        .create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: vec![format!("{}.>", options.subject_prefix)],
            allow_direct: true,
            allow_atomic_publish: false,
            ..Default::default()
        })
        .await
        .expect("create a stream by hand");
    let err = JetStreamStore::open(client, options.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, OpenError::AtomicPublishOff { .. }), "{err}");
    assert!(err.to_string().contains(&options.stream), "{err}");
}

#[tokio::test]
async fn a_stream_with_limits_is_refused() {
    let server = NatsServer::start();
    let options = fresh();
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client.clone())
        .create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: vec![format!("{}.>", options.subject_prefix)],
            allow_direct: true,
            allow_atomic_publish: true,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .expect("create a stream by hand");
    let err = JetStreamStore::open(client, options)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("max_age"), "{err}");
}

#[tokio::test]
async fn an_existing_stream_is_used_and_reopened() {
    let server = NatsServer::start();
    let options = fresh();
    let first = open(&server, options.clone()).await;
    let appended = first
        .append("s", ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
        .expect("append");
    let again = open(
        &server,
        JetStreamOptions {
            create: false,
            ..options
        },
    )
    .await;
    let read = again.read_stream("s", None, 10).await.expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].position, appended.tip.position);
}

#[tokio::test]
async fn durability_is_read_from_the_monitoring_endpoint() {
    let plain = NatsServer::start();
    let store = open(
        &plain,
        JetStreamOptions {
            monitoring_url: Some(plain.monitor_url().to_string()),
            ..fresh()
        },
    )
    .await;
    let durability = store.durability().clone();
    assert_eq!(durability.sync_always, Some(false), "{durability:?}");
    assert!(!durability.acknowledged_means_durable());
    println!("default server: {durability}");

    let unchecked = open(&plain, fresh()).await;
    assert_eq!(unchecked.durability().sync_always, None);
    assert!(!unchecked.durability().acknowledged_means_durable());

    let synced = NatsServer::start_with(Some("jetstream { sync_interval: always }"));
    let store = open(
        &synced,
        JetStreamOptions {
            monitoring_url: Some(synced.monitor_url().to_string()),
            ..fresh()
        },
    )
    .await;
    assert_eq!(store.durability().sync_always, Some(true));
    assert!(store.durability().acknowledged_means_durable());
    println!("sync always: {}", store.durability());
}

#[tokio::test]
async fn a_message_written_outside_dealreg_is_reported_by_its_sequence() {
    let server = NatsServer::start();
    let options = fresh();
    let store = open(&server, options.clone()).await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
        .expect("append");
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
        .publish(format!("{}.s", options.subject_prefix), "raw".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let err = store.read_stream("s", None, 10).await.expect_err("foreign");
    assert!(err.to_string().contains("message 2"), "{err}");
    let err = store
        .read_all(Position::ORIGIN, 10)
        .await
        .expect_err("foreign");
    assert!(err.to_string().contains("message 2"), "{err}");
}

#[tokio::test]
async fn event_types_a_header_would_change_are_refused() {
    let server = NatsServer::start();
    let store = open(&server, fresh()).await;
    let mut odd = event(" padded", 0);
    assert!(matches!(
        store
            .append("s", ExpectedVersion::Any, vec![odd.clone()])
            .await,
        Err(StoreError::InvalidAppend(_))
    ));
    odd.event_type = "Bücher: opened.v2".into();
    store
        .append("s", ExpectedVersion::Any, vec![odd.clone()])
        .await
        .expect("a type with UTF-8, dots and colons is fine");
    let read = store.read_stream("s", None, 10).await.expect("read");
    assert_eq!(read[0].event_type, odd.event_type);
}

#[tokio::test]
async fn long_streams_read_in_pages_and_after_a_tip() {
    let server = NatsServer::start();
    let store = open(&server, fresh()).await;
    let mut tip = None;
    for chunk in 0..3 {
        let events = (0..500).map(|n| event("e", chunk * 500 + n)).collect();
        tip = Some(
            store
                .append("long", ExpectedVersion::after(tip.as_ref()), events)
                .await
                .expect("append")
                .tip,
        );
        store
            .append("other", ExpectedVersion::Any, vec![event("o", chunk)])
            .await
            .expect("append");
    }
    let started = Instant::now();
    let all = store.read_stream("long", None, 10_000).await.expect("read");
    println!("read 1500 events of one stream in {:?}", started.elapsed());
    assert_eq!(all.len(), 1500);
    dealreg_events::chain::verify_stream(&all).expect("chain");
    let after = store
        .read_stream(
            "long",
            Some(&dealreg_events::StreamTip::of(&all[1200])),
            10_000,
        )
        .await
        .expect("read");
    assert_eq!(after.len(), 299);
    assert_eq!(after[0].revision, 1201);
    let log = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read all");
    assert_eq!(log.len(), 1503);
}
