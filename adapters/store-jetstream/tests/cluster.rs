//! The JetStream event store on a real 3-node cluster with R3 streams: the whole
//! conformance suite, 64 writers racing on one expectation, and reads through a follower.
//! One cluster for every case (each case has a stream of its own): starting clusters is
//! what costs time on a small machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dealreg_events::conformance::{self, event};
use dealreg_events::{EventStore, ExpectedVersion, StreamTip};
use dealreg_nats_testkit::NatsCluster;
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore};

static CASE: AtomicUsize = AtomicUsize::new(0);

fn fresh() -> JetStreamOptions {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    JetStreamOptions {
        stream: format!("R3_{n}"),
        subject_prefix: format!("r3c{n}.ev"),
        replicas: 3,
        timeout: Duration::from_secs(10),
        ..JetStreamOptions::default()
    }
}

async fn open(urls: Vec<String>, options: JetStreamOptions) -> JetStreamStore {
    let client = async_nats::connect(urls)
        .await
        .expect("connect to the cluster");
    JetStreamStore::open(client, options)
        .await
        .expect("open an R3 store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_races_and_follower_reads_on_a_three_node_cluster() {
    let cluster = NatsCluster::start(3);
    let urls = cluster.url_list();

    let started = Instant::now();
    conformance::run_all(|| open(urls.clone(), fresh())).await;
    conformance::multi_stream_all(|| open(urls.clone(), fresh())).await;
    println!("conformance on R3: {:?}", started.elapsed());

    let started = Instant::now();
    let store = open(urls.clone(), fresh()).await;
    assert!(store.durability().acknowledged_means_durable());
    conformance::racing_writers_with_one_expectation_have_one_winner(store, 64, 50).await;
    println!("64 writers x 50 rounds on R3: {:?}", started.elapsed());

    // A writer on the leader and a reader on a follower: every acknowledged append is read
    // at once through the follower (the leader fences what the follower's replica has).
    let options = fresh();
    let writer = open(urls.clone(), options.clone()).await;
    let leader = cluster
        .wait_for_stream_leader(&options.stream, Duration::from_secs(30))
        .await;
    let follower = (leader + 1) % cluster.size();
    let writer = {
        drop(writer);
        open(vec![cluster.url(leader)], options.clone()).await
    };
    let reader = open(
        vec![cluster.url(follower)],
        JetStreamOptions {
            create: false,
            ..options
        },
    )
    .await;
    let started = Instant::now();
    let mut tip: Option<StreamTip> = None;
    for n in 0..200 {
        let events = (0..=(n % 3)).map(|k| event("e", n * 10 + k)).collect();
        let appended = writer
            .append("followed", ExpectedVersion::after(tip.as_ref()), events)
            .await
            .expect("append on the leader");
        let read = reader
            .read_stream("followed", tip.as_ref(), 100)
            .await
            .expect("read on a follower");
        assert_eq!(
            read.last().map(StreamTip::of),
            Some(appended.tip.clone()),
            "append {n}: the follower's read ends at the acknowledged tip"
        );
        let all = reader
            .read_all(tip.as_ref().map_or(Default::default(), |t| t.position), 100)
            .await
            .expect("read the log on a follower");
        assert_eq!(all.last().map(|e| e.position), Some(appended.tip.position));
        tip = Some(appended.tip);
    }
    println!(
        "200 appends read back through a follower: {:?}",
        started.elapsed()
    );
}
