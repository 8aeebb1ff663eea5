//! The ADR-50 (atomic batch publish) rules the store relies on, each checked against the
//! real server on its own, so that a server that changes one fails here by name.

use std::time::Duration;

use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream, ErrorCode};
use async_nats::HeaderMap;
use dealreg_events::conformance::event;
use dealreg_events::{EventStore, ExpectedVersion, Position, StoreError};
use dealreg_nats_testkit::NatsServer;
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore, MAX_BATCH};

struct Msg {
    subject: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn msg(subject: &'static str) -> Msg {
    Msg {
        subject,
        headers: Vec::new(),
    }
}

impl Msg {
    fn with(mut self, name: &'static str, value: impl ToString) -> Msg {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// Publishes `msgs` as one batch: all but the last without reply, the last as the commit.
async fn batch(
    client: &async_nats::Client,
    js: &jetstream::Context,
    msgs: Vec<Msg>,
) -> Result<u64, PublishError> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let n = msgs.len();
    for (i, m) in msgs.into_iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        for (name, value) in &m.headers {
            headers.insert(*name, value.as_str());
        }
        let payload = format!("m{i}").into_bytes().into();
        if i + 1 < n {
            client
                .publish_with_headers(m.subject, headers, payload)
                .await
                .expect("publish a batch message");
        } else {
            headers.insert("Nats-Batch-Commit", "1");
            let ack = js
                .send_publish(
                    m.subject,
                    PublishMessage::build().headers(headers).payload(payload),
                )
                .await
                .expect("send the commit");
            return ack.await.map(|a| a.sequence);
        }
    }
    unreachable!("a batch has a last message")
}

fn code(e: &PublishError) -> Option<u64> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(|j| j.error_code().0)
}

async fn setup(
    server: &NatsServer,
) -> (
    async_nats::Client,
    jetstream::Context,
    jetstream::stream::Stream,
) {
    let client = async_nats::connect(server.url()).await.expect("connect");
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(10));
    let stream = js
        .create_stream(stream::Config {
            name: "ADR50".into(),
            subjects: vec!["ev.>".into()],
            allow_atomic_publish: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("create the stream");
    (client, js, stream)
}

async fn stored(stream: &mut jetstream::stream::Stream) -> u64 {
    stream.info().await.expect("info").state.messages
}

#[tokio::test]
async fn only_the_first_message_may_carry_the_expected_last_sequence() {
    let server = NatsServer::start();
    let (client, js, mut stream) = setup(&server).await;
    let refused = batch(
        &client,
        &js,
        vec![
            msg("ev.a"),
            msg("ev.a").with(NATS_EXPECTED_LAST_SEQUENCE.as_ref(), 1),
        ],
    )
    .await
    .expect_err("an expected last sequence on a later message is refused");
    println!("later message: {refused} (code {:?})", code(&refused));
    assert_eq!(stored(&mut stream).await, 0, "nothing of the refused batch");
    let seq = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SEQUENCE.as_ref(), 0),
            msg("ev.a"),
        ],
    )
    .await
    .expect("on the first message it holds");
    assert_eq!(seq, 2);
    let wrong = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SEQUENCE.as_ref(), 1),
            msg("ev.a"),
        ],
    )
    .await
    .expect_err("a wrong expectation on the first message");
    assert_eq!(
        code(&wrong),
        Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE.0),
        "{wrong}"
    );
    assert_eq!(stored(&mut stream).await, 2);
}

#[tokio::test]
async fn a_subject_expectation_on_a_later_message_of_a_subject_the_batch_wrote_is_refused() {
    let server = NatsServer::start();
    let (client, js, mut stream) = setup(&server).await;
    let refused = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 0),
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 1),
        ],
    )
    .await
    .expect_err("refused");
    assert_eq!(code(&refused), Some(10164), "{refused}");
    assert_eq!(stored(&mut stream).await, 0);
    // The store's way: the subject expectation on the first message only.
    let seq = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 0),
            msg("ev.a"),
            msg("ev.a"),
        ],
    )
    .await
    .expect("taken");
    assert_eq!(seq, 3, "stored contiguously, the ack names the last");
    let conflict = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 2),
            msg("ev.a"),
        ],
    )
    .await
    .expect_err("the subject is at 3");
    assert_eq!(
        code(&conflict),
        Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE.0),
        "{conflict}"
    );
    assert_eq!(stored(&mut stream).await, 3);
}

/// What `EventStore::append_streams` relies on: a subject expectation on the first message of each
/// subject of a batch is taken, and one that does not hold refuses the whole batch.
#[tokio::test]
async fn each_subject_may_carry_its_expectation_on_its_first_message() {
    let server = NatsServer::start();
    let (client, js, mut stream) = setup(&server).await;
    let seq = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 0),
            msg("ev.a"),
            msg("ev.b").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 0),
        ],
    )
    .await
    .expect("two subjects, each expectation on its subject's first message");
    assert_eq!(seq, 3);
    let refused = batch(
        &client,
        &js,
        vec![
            msg("ev.a").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 2),
            msg("ev.b").with(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE.as_ref(), 1),
        ],
    )
    .await
    .expect_err("ev.b is at 3, not 1");
    assert_eq!(
        code(&refused),
        Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE.0),
        "{refused}"
    );
    assert_eq!(stored(&mut stream).await, 3, "no part of the refused batch");
}

#[tokio::test]
async fn a_thousand_messages_commit_and_a_thousand_and_one_do_not() {
    let server = NatsServer::start();
    let (client, js, mut stream) = setup(&server).await;
    let seq = batch(&client, &js, (0..1000).map(|_| msg("ev.big")).collect())
        .await
        .expect("1000 messages commit");
    assert_eq!(seq, 1000);
    assert_eq!(stored(&mut stream).await, 1000);
    let refused = batch(&client, &js, (0..1001).map(|_| msg("ev.big")).collect())
        .await
        .expect_err("1001 messages are refused");
    assert_eq!(code(&refused), Some(10199), "{refused}");
    assert_eq!(
        stored(&mut stream).await,
        1000,
        "nothing of the refused batch"
    );
}

#[tokio::test]
async fn the_store_refuses_more_than_a_batch_without_sending() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let store = JetStreamStore::open(client, JetStreamOptions::default())
        .await
        .expect("open");
    let events: Vec<_> = (0..=MAX_BATCH).map(|n| event("e", n)).collect();
    assert!(matches!(
        store.append("s", ExpectedVersion::NoStream, events).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert_eq!(store.last_position().await.expect("head"), Position::ORIGIN);
    let events: Vec<_> = (0..MAX_BATCH).map(|n| event("e", n)).collect();
    let appended = store
        .append("s", ExpectedVersion::NoStream, events)
        .await
        .expect("a full batch");
    assert_eq!(appended.positions.len(), MAX_BATCH);
    assert_eq!(appended.positions[0], Position::at(1));
    assert_eq!(appended.tip.position, Position::at(MAX_BATCH as u64));
    let read = store
        .read_stream("s", None, 2 * MAX_BATCH)
        .await
        .expect("read");
    assert_eq!(read.len(), MAX_BATCH);
    dealreg_events::chain::verify_stream(&read).expect("one chain");
}
