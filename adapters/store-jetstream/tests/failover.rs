//! Killing the stream leader of a 3-node cluster while appends run: every acknowledged
//! append is readable afterwards (found by its event id), no event is stored twice, the
//! chains hold, appends resume within seconds, and a subscription that ran through it
//! delivered the whole log once, in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dealreg_events::conformance::{event, read_everything};
use dealreg_events::{EventStore, ExpectedVersion, Position, StoreError, StreamTip};
use dealreg_nats_testkit::NatsCluster;
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore};
use futures_util::StreamExt;
use uuid::Uuid;

const WRITERS: usize = 4;

#[derive(Default)]
struct Seen {
    /// Event ids whose append was acknowledged.
    acknowledged: Vec<Uuid>,
    /// When each acknowledgement came.
    times: Vec<Instant>,
    /// Errors met, by kind, with the first message of each.
    errors: HashMap<&'static str, (usize, String)>,
}

fn kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::WrongExpectedVersion { .. } => "wrong expected version",
        StoreError::OutcomeUnknown { .. } => "outcome unknown",
        StoreError::NotWritten { .. } => "not written",
        StoreError::Backend(_) => "backend",
        _ => "other",
    }
}

/// One writer: appends one event at a time with an exact expectation. After an error it
/// retries the same event with the same expectation; a refused expectation means its own
/// earlier attempt landed (nobody else writes its stream), which a read confirms.
async fn write(store: JetStreamStore, w: usize, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let stream = format!("account-w{w}.example");
    let mut tip: Option<StreamTip> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let next = event("e", n);
        loop {
            match store
                .append(
                    &stream,
                    ExpectedVersion::after(tip.as_ref()),
                    vec![next.clone()],
                )
                .await
            {
                Ok(appended) => {
                    let mut seen = seen.lock().expect("seen");
                    seen.acknowledged.push(next.event_id);
                    seen.times.push(Instant::now());
                    tip = Some(appended.tip);
                    break;
                }
                Err(e) => {
                    seen.lock()
                        .expect("seen")
                        .errors
                        .entry(kind(&e))
                        .or_insert_with(|| (0, e.to_string()))
                        .0 += 1;
                    if let StoreError::WrongExpectedVersion { .. } = e {
                        match store.read_stream(&stream, tip.as_ref(), 10).await {
                            Ok(after) => {
                                assert_eq!(after.len(), 1, "only this writer's earlier attempt");
                                assert_eq!(after[0].event_id, next.event_id);
                                tip = Some(StreamTip::of(&after[0]));
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_no_acknowledged_append() {
    let mut cluster = NatsCluster::start(3);
    let options = JetStreamOptions {
        stream: "FAILOVER".into(),
        replicas: 3,
        timeout: Duration::from_secs(4),
        ..JetStreamOptions::default()
    };
    let client = async_nats::ConnectOptions::new()
        .connect(cluster.url_list())
        .await
        .expect("connect");
    let store = JetStreamStore::open(client, options.clone())
        .await
        .expect("open");

    // A subscriber from the origin, through the whole failover.
    let mut subscription = store.subscribe_all(Position::ORIGIN);
    let delivered = Arc::new(Mutex::new(Vec::<Position>::new()));
    let reader = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            while let Some(page) = subscription.next().await {
                let page = page.expect("the subscription survives the failover");
                delivered
                    .lock()
                    .expect("delivered")
                    .extend(page.iter().map(|e| e.position));
            }
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(store.clone(), w, stop.clone(), seen.clone())))
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = cluster
        .wait_for_stream_leader(&options.stream, Duration::from_secs(30))
        .await;
    let before = seen.lock().expect("seen").acknowledged.len();
    assert!(before > 0, "appends ran before the kill");
    let killed_at = Instant::now();
    cluster.kill(leader);
    println!("killed the stream leader n{leader} after {before} acknowledged appends");

    // Appends resume: wait until 20 appends were acknowledged after the kill.
    let resumed = loop {
        let twentieth = seen
            .lock()
            .expect("seen")
            .times
            .iter()
            .filter(|t| **t > killed_at)
            .nth(19)
            .copied();
        if let Some(t) = twentieth {
            break t.duration_since(killed_at);
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no append was acknowledged within 30 s of the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("20 appends acknowledged {resumed:?} after the kill");
    assert!(
        resumed < Duration::from_secs(15),
        "resumed after {resumed:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    println!(
        "{} acknowledged appends, errors met: {:?}",
        seen.acknowledged.len(),
        seen.errors
    );
    let log = read_everything(&store).await;
    let mut ids = HashSet::new();
    for e in &log {
        assert!(
            ids.insert(e.event_id),
            "event {} is stored twice",
            e.event_id
        );
    }
    for id in &seen.acknowledged {
        assert!(
            ids.contains(id),
            "acknowledged event {id} is not in the log"
        );
    }
    let report = dealreg_events::chain::verify_log(&store)
        .await
        .expect("walk");
    assert!(report.breaks.is_empty(), "{:?}", report.breaks);
    assert_eq!(report.streams, WRITERS);

    // The subscription delivered the whole log, once, in order.
    let head = log.last().map(|e| e.position).expect("a log");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let got = delivered.lock().expect("delivered").clone();
        if got.last() == Some(&head) {
            assert_eq!(got, log.iter().map(|e| e.position).collect::<Vec<_>>());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription delivered {} of {} events",
            got.len(),
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "the subscription caught up {:?} after the kill",
        killed_at.elapsed()
    );
    reader.abort();
}
