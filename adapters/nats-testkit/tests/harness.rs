//! The harness against the real nats-server: one server answers, a cluster survives its
//! stream leader's death, and a killed node comes back with the writes it missed.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use dealreg_nats_testkit::{parse_version, server_version, NatsCluster, NatsServer};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_single_server_answers_publish_and_subscribe() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let info = client.server_info();
    assert_eq!(info.version, server_version());
    assert!(parse_version(&info.version) >= Some((2, 12, 0)));
    assert!(info.jetstream, "the server runs with JetStream");

    let mut sub = client.subscribe("greet.>").await.expect("subscribe");
    client
        .publish("greet.one", "hello".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let message = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription is open");
    assert_eq!(message.subject.as_str(), "greet.one");
    assert_eq!(&message.payload[..], b"hello");
}

#[tokio::test]
async fn a_restarted_server_keeps_its_port_and_its_streams() {
    let mut server = NatsServer::start_with(Some("jetstream { sync_interval: always }"));
    let varz = server.varz();
    assert_eq!(varz["jetstream"]["config"]["sync_always"], true, "{varz}");
    let url = server.url().to_string();
    {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("keep.a", "kept".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    // SIGKILL: with sync_always the acknowledged message is on disk already.
    server.restart();
    assert_eq!(server.url(), url);
    let client = async_nats::connect(server.url()).await.expect("reconnect");
    let js = jetstream::new(client);
    let mut stream = js.get_stream("KEEP").await.expect("the stream survived");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_elects_a_new_stream_leader_and_the_killed_node_rejoins() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.size(), 3);
    assert_eq!(cluster.store_dirs().len(), 3);
    assert_eq!(cluster.urls().split(',').count(), 3);

    let client = async_nats::connect(cluster.url_list())
        .await
        .expect("connect to the cluster");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["ev.>".into()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .expect("create an R3 stream");
    for i in 0..20 {
        publish(&js, &format!("ev.acct.{}", i % 4), &format!("before-{i}")).await;
    }

    let old = cluster.wait_for_stream_leader("EVENTS", WAIT).await;
    cluster.kill(old);
    assert!(!cluster.is_running(old));
    let new = cluster.wait_for_stream_leader("EVENTS", WAIT).await;
    assert_ne!(new, old, "a killed node cannot lead");

    // Every acknowledged message is still there, in order.
    let payloads = read_all(&js, "EVENTS").await;
    let expected: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    assert_eq!(payloads, expected);

    // Two of three replicas are a quorum: writes go on.
    for i in 0..20 {
        publish(&js, &format!("ev.acct.{}", i % 4), &format!("after-{i}")).await;
    }
    assert_eq!(read_all(&js, "EVENTS").await.len(), 40);

    // The killed node comes back on its ports and store, and catches up on what it missed.
    cluster.restart(old);
    assert!(cluster.is_running(old));
    let name = cluster.node_name(old).to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut stream = js.get_stream("EVENTS").await.expect("stream");
        let info = stream.info().await.expect("info").clone();
        let cluster_info = info
            .cluster
            .expect("a clustered stream reports its cluster");
        let caught_up = cluster_info.leader.as_deref() == Some(name.as_str())
            || cluster_info
                .replicas
                .iter()
                .any(|peer| peer.name == name && peer.current && !peer.offline);
        if caught_up && node_stream_messages(&cluster, old, "EVENTS") == Some(40) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {name} did not catch up: {cluster_info:?}\n{}",
            cluster.log(old)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes and waits for the ack, retrying while the cluster elects a leader (the ack of
/// a publish sent during an election may never come).
async fn publish(js: &jetstream::Context, subject: &str, payload: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ack = match js
            .publish(subject.to_string(), payload.to_string().into())
            .await
        {
            Ok(future) => future.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match ack {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish {subject}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("publish {subject} failed until the deadline: {e}"),
        }
    }
}

/// Every payload of the stream in sequence order, read by direct get through any replica.
async fn read_all(js: &jetstream::Context, name: &str) -> Vec<String> {
    let mut stream = js.get_stream(name).await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let message = stream.direct_get(seq).await.expect("direct get");
        out.push(String::from_utf8_lossy(&message.payload).to_string());
    }
    out
}

/// How many messages node `i`'s own replica of `stream` holds, from its `/jsz`.
fn node_stream_messages(cluster: &NatsCluster, i: usize, stream: &str) -> Option<u64> {
    let url = format!("{}/jsz?accounts=true&streams=true", cluster.monitor_url(i));
    let body = get(&url)?;
    let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
    jsz["account_details"]
        .as_array()?
        .iter()
        .flat_map(|account| {
            account["stream_detail"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|detail| detail["name"] == stream)?["state"]["messages"]
        .as_u64()
}

fn get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}
