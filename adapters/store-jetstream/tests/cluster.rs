//! The JetStream event store on a real 3-node cluster with R3 streams: the whole
//! conformance suite, 64 writers racing on one expectation (each on its own connection,
//! spread over the nodes), and reads through a follower.
//! One cluster for every case (each case has a stream of its own): starting clusters is
//! what costs time on a small machine.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_events::chain::verify_stream;
use dealreg_events::conformance::{self, event};
use dealreg_events::{EventStore, ExpectedVersion, StoreError, StreamTip};
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

/// `writers` writers, each a store on its own connection, the connections spread over the
/// cluster's nodes in turn (each to one node's URL only), race `rounds` times to append
/// to one stream with the same expectation, all released at once by a barrier: exactly one
/// wins each round, the others are told the stream moved, and the winners make one chain.
/// The writers were on every node, and they raced: in most rounds some loser's append was
/// sent before the winner's was acknowledged.
async fn racing_writers_on_their_own_connections(
    cluster: &NatsCluster,
    writers: usize,
    rounds: usize,
) {
    let options = fresh();
    let mut stores = Vec::new();
    let mut nodes = BTreeSet::new();
    for w in 0..writers {
        let client = async_nats::connect(cluster.url(w % cluster.size()))
            .await
            .expect("connect to a node");
        nodes.insert(client.server_info().server_name);
        let store = JetStreamStore::open(client, options.clone())
            .await
            .expect("open an R3 store");
        assert!(store.durability().acknowledged_means_durable());
        stores.push(Arc::new(store));
    }
    assert_eq!(
        nodes.len(),
        cluster.size(),
        "the writers' connections reach every node: {nodes:?}"
    );
    let s = "account-race.example";
    let mut tip = stores[0]
        .append(s, ExpectedVersion::NoStream, vec![event("seed", 0)])
        .await
        .expect("seed")
        .tip;
    // A round raced when some loser's append was sent before the winner's was acknowledged
    // (not always: the winner may be answered before the scheduler starts the others).
    let (mut rounds_raced, mut overlapping) = (0, 0);
    for round in 0..rounds {
        let start = Arc::new(tokio::sync::Barrier::new(writers));
        let mut tasks = Vec::new();
        for (w, store) in stores.iter().enumerate() {
            let (store, tip, start) = (Arc::clone(store), tip.clone(), Arc::clone(&start));
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let sent = Instant::now();
                let appended = store
                    .append(s, ExpectedVersion::Exact(tip), vec![event("w", w)])
                    .await;
                (appended, sent, Instant::now())
            }));
        }
        let mut winners = Vec::new();
        let mut losers_sent = Vec::new();
        for task in tasks {
            match task.await.expect("writer") {
                (Ok(appended), _, answered) => winners.push((appended, answered)),
                (Err(StoreError::WrongExpectedVersion { .. }), sent, _) => losers_sent.push(sent),
                (Err(other), _, _) => panic!("a racing writer failed otherwise: {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (appended, won_at) = winners.remove(0);
        let raced = losers_sent.iter().filter(|sent| **sent < won_at).count();
        rounds_raced += usize::from(raced > 0);
        overlapping += raced;
        tip = appended.tip;
    }
    println!(
        "{writers} writers on {} nodes: {rounds_raced} of {rounds} rounds raced; {overlapping} losing appends of {} were sent before their round's winner was acknowledged",
        nodes.len(),
        rounds * (writers - 1)
    );
    assert!(
        rounds_raced * 2 >= rounds,
        "only {rounds_raced} of {rounds} rounds raced: the writers mostly ran one after another"
    );
    let stream = stores[writers - 1]
        .read_stream(s, None, 1000)
        .await
        .expect("read");
    assert_eq!(stream.len(), rounds + 1);
    verify_stream(&stream).expect("the winners make one chain");
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
    racing_writers_on_their_own_connections(&cluster, 64, 50).await;
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
