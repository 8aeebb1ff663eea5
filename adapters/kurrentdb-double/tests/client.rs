//! The real `kurrentdb` client against the double: every call the KurrentDB backend will
//! make, through the client's own connect path, answered the way the client expects.

use std::time::Duration;

use dealreg_kurrentdb_double::KurrentDouble;
use kurrentdb::{
    AppendToStreamOptions, Client, CurrentRevision, DeleteStreamOptions, Error, EventData,
    Position, ReadAllOptions, ReadStreamOptions, StreamPosition, StreamState,
    SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter, TombstoneStreamOptions,
};
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn client(double: &KurrentDouble) -> Client {
    Client::new(double.url().parse().unwrap()).unwrap()
}

fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &json!({ "n": n })).unwrap()
}

fn expect(state: StreamState) -> AppendToStreamOptions {
    AppendToStreamOptions::default().stream_state(state)
}

async fn read_stream_all(client: &Client, stream: &str, options: &ReadStreamOptions) -> Vec<u64> {
    let mut read = client.read_stream(stream, options).await.unwrap();
    let mut revisions = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        revisions.push(e.get_original_event().revision);
    }
    revisions
}

async fn next_event(sub: &mut kurrentdb::Subscription) -> SubscriptionEvent {
    tokio::time::timeout(WAIT, sub.next_subscription_event())
        .await
        .expect("a subscription message within the wait")
        .unwrap()
}

#[tokio::test]
async fn connects_and_reports_server_features() {
    let double = KurrentDouble::start().await;
    assert!(double.url().starts_with("kurrentdb://127.0.0.1:"));
    let client = client(&double);
    let info = client.server_info().await.unwrap();
    assert_eq!(info.version().major(), 25);
    // Batch append is not advertised, so the client refuses it without calling.
    assert!(matches!(
        client.batch_append(&Default::default()).await,
        Err(Error::UnsupportedFeature)
    ));
}

#[tokio::test]
async fn append_checks_each_expected_state() {
    let double = KurrentDouble::start().await;
    let client = client(&double);

    // NoStream on a new stream: revisions 0 and 1.
    let first = client
        .append_to_stream(
            "deal-1",
            &expect(StreamState::NoStream),
            vec![event("A", 0), event("A", 1)],
        )
        .await
        .unwrap();
    assert_eq!(first.next_expected_version, 1);
    assert!(first.position.commit > 0);
    assert_eq!(first.position.commit, first.position.prepare);

    // NoStream again, new ids: refused with the current revision.
    match client
        .append_to_stream("deal-1", &expect(StreamState::NoStream), event("A", 2))
        .await
    {
        Err(Error::WrongExpectedVersion { expected, current }) => {
            assert_eq!(expected, StreamState::NoStream);
            assert_eq!(current, CurrentRevision::Current(1));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }

    let exists = client
        .append_to_stream("deal-1", &expect(StreamState::StreamExists), event("A", 2))
        .await
        .unwrap();
    assert_eq!(exists.next_expected_version, 2);
    assert!(exists.position > first.position);

    let exact = client
        .append_to_stream(
            "deal-1",
            &expect(StreamState::StreamRevision(2)),
            event("A", 3),
        )
        .await
        .unwrap();
    assert_eq!(exact.next_expected_version, 3);

    match client
        .append_to_stream(
            "deal-1",
            &expect(StreamState::StreamRevision(1)),
            event("A", 9),
        )
        .await
    {
        Err(Error::WrongExpectedVersion { expected, current }) => {
            assert_eq!(expected, StreamState::StreamRevision(1));
            assert_eq!(current, CurrentRevision::Current(3));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }

    let any = client
        .append_to_stream("deal-1", &expect(StreamState::Any), event("A", 4))
        .await
        .unwrap();
    assert_eq!(any.next_expected_version, 4);

    // On a stream that does not exist: StreamExists and a revision are refused with
    // "no stream"; Any creates it.
    for state in [StreamState::StreamExists, StreamState::StreamRevision(0)] {
        match client
            .append_to_stream("deal-2", &expect(state), event("A", 0))
            .await
        {
            Err(Error::WrongExpectedVersion { expected, current }) => {
                assert_eq!(expected, state);
                assert_eq!(current, CurrentRevision::NoStream);
            }
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        }
    }
    let created = client
        .append_to_stream("deal-2", &expect(StreamState::Any), event("A", 0))
        .await
        .unwrap();
    assert_eq!(created.next_expected_version, 0);
    assert_eq!(double.event_count(), 6);
}

#[tokio::test]
async fn a_retried_append_is_idempotent() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let batch = || {
        vec![
            event("A", 0).id(ids[0]),
            event("A", 1)
                .id(ids[1])
                .metadata_as_json(&json!({ "causation": "c-1" }))
                .unwrap(),
        ]
    };

    let first = client
        .append_to_stream("deal-1", &expect(StreamState::NoStream), batch())
        .await
        .unwrap();
    // The same ids at the same expected revision: success, nothing written again.
    let retry = client
        .append_to_stream("deal-1", &expect(StreamState::NoStream), batch())
        .await
        .unwrap();
    assert_eq!(retry.next_expected_version, first.next_expected_version);
    assert_eq!(retry.position, first.position);
    // Also with Any, by ids alone.
    let retry_any = client
        .append_to_stream("deal-1", &expect(StreamState::Any), batch())
        .await
        .unwrap();
    assert_eq!(retry_any.position, first.position);
    assert_eq!(double.event_count(), 2);

    // Ids and custom metadata come back as written.
    let mut read = client
        .read_stream("deal-1", &ReadStreamOptions::default())
        .await
        .unwrap();
    let e0 = read.next().await.unwrap().unwrap();
    let e1 = read.next().await.unwrap().unwrap();
    assert!(read.next().await.unwrap().is_none());
    let (e0, e1) = (e0.get_original_event(), e1.get_original_event());
    assert_eq!((e0.id, e1.id), (ids[0], ids[1]));
    assert_eq!(e0.event_type, "A");
    assert!(e0.is_json);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&e1.custom_metadata).unwrap(),
        json!({ "causation": "c-1" })
    );
    assert!(e0.custom_metadata.is_empty());
    assert_eq!(e1.stream_id(), "deal-1");
    assert_eq!(e1.position.commit, first.position.commit);
}

#[tokio::test]
async fn reads_one_stream_forwards_from_a_revision_with_a_count() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    let events: Vec<_> = (0..5).map(|n| event("A", n)).collect();
    client
        .append_to_stream("deal-1", &Default::default(), events)
        .await
        .unwrap();
    client
        .append_to_stream("other", &Default::default(), event("B", 0))
        .await
        .unwrap();

    let options = ReadStreamOptions::default()
        .position(StreamPosition::Position(2))
        .forwards()
        .max_count(2);
    assert_eq!(read_stream_all(&client, "deal-1", &options).await, [2, 3]);
    let all = ReadStreamOptions::default();
    assert_eq!(
        read_stream_all(&client, "deal-1", &all).await,
        [0, 1, 2, 3, 4]
    );
    let past_end = ReadStreamOptions::default()
        .position(StreamPosition::Position(7))
        .forwards();
    assert!(read_stream_all(&client, "deal-1", &past_end)
        .await
        .is_empty());
    // `position(End)` turns the read backwards (the client's doing).
    let last = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    assert_eq!(read_stream_all(&client, "deal-1", &last).await, [4]);

    // A stream that does not exist: the call succeeds, the first next() says not found.
    let mut missing = client
        .read_stream("nobody", &ReadStreamOptions::default())
        .await
        .unwrap();
    assert!(matches!(missing.next().await, Err(Error::ResourceNotFound)));
}

#[tokio::test]
async fn reads_all_forwards_from_a_position_inclusively() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    let mut positions = Vec::new();
    for (n, stream) in ["a-1", "b-1", "a-2", "b-2"].iter().enumerate() {
        let written = client
            .append_to_stream(*stream, &Default::default(), event("A", n as u64))
            .await
            .unwrap();
        positions.push(written.position);
    }
    // Strictly increasing and not dense.
    for pair in positions.windows(2) {
        assert!(pair[1].commit > pair[0].commit + 1);
    }

    let read = |options: ReadAllOptions| {
        let client = client.clone();
        async move {
            let mut read = client.read_all(&options).await.unwrap();
            let mut out = Vec::new();
            while let Some(e) = read.next().await.unwrap() {
                let e = e.get_original_event();
                out.push((e.stream_id().to_owned(), e.position));
            }
            out
        }
    };

    let from_second = read(
        ReadAllOptions::default()
            .position(StreamPosition::Position(positions[1]))
            .forwards()
            .max_count(2),
    )
    .await;
    assert_eq!(
        from_second,
        [
            ("b-1".to_owned(), positions[1]),
            ("a-2".to_owned(), positions[2])
        ]
    );
    // A position between two records starts at the next one.
    let between = Position {
        commit: positions[1].commit + 1,
        prepare: positions[1].prepare + 1,
    };
    let after = read(
        ReadAllOptions::default()
            .position(StreamPosition::Position(between))
            .forwards(),
    )
    .await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].1, positions[2]);
    let everything = read(ReadAllOptions::default()).await;
    assert_eq!(everything.len(), 4);
    let filtered = read(
        ReadAllOptions::default().filter(SubscriptionFilter::on_stream_name().add_prefix("a-")),
    )
    .await;
    assert_eq!(filtered.len(), 2);
}

#[tokio::test]
async fn subscription_to_all_catches_up_goes_live_and_checkpoints() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    // Catch-up material: matching and non-matching streams interleaved.
    for n in 0..3 {
        client
            .append_to_stream(format!("deal-{n}"), &Default::default(), event("A", n))
            .await
            .unwrap();
        client
            .append_to_stream(format!("noise-{n}"), &Default::default(), event("B", n))
            .await
            .unwrap();
    }

    // Window 2: a checkpoint every 2 considered records, matching or not.
    let filter = SubscriptionFilter::on_stream_name()
        .add_prefix("deal-")
        .max(2);
    let mut sub = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(filter.clone()),
        )
        .await;

    assert!(matches!(
        next_event(&mut sub).await,
        SubscriptionEvent::Confirmed(_)
    ));
    let mut caught_up_events = Vec::new();
    let mut checkpoints = Vec::new();
    loop {
        match next_event(&mut sub).await {
            SubscriptionEvent::EventAppeared(e) => {
                caught_up_events.push(e.get_original_event().stream_id().to_owned())
            }
            SubscriptionEvent::Checkpoint(p) => checkpoints.push(p),
            SubscriptionEvent::CaughtUp(Some(c)) => {
                assert_eq!(c.position, checkpoints.last().copied());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(caught_up_events, ["deal-0", "deal-1", "deal-2"]);
    // 6 records considered, window 2: checkpoints after records 2, 4 and 6 (the last also
    // being the end-of-catch-up one, which the server does not repeat).
    assert_eq!(checkpoints.len(), 3);
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]));

    // Live: a matching event, then two non-matching ones that only move the checkpoint.
    let live = client
        .append_to_stream("deal-9", &Default::default(), event("A", 9))
        .await
        .unwrap();
    match next_event(&mut sub).await {
        SubscriptionEvent::EventAppeared(e) => {
            assert_eq!(e.get_original_event().stream_id(), "deal-9");
            assert_eq!(e.get_original_event().position, live.position);
        }
        other => panic!("expected the live event, got {other:?}"),
    }
    let noise = client
        .append_to_stream("noise-9", &Default::default(), event("B", 9))
        .await
        .unwrap();
    match next_event(&mut sub).await {
        SubscriptionEvent::Checkpoint(p) => assert_eq!(p, noise.position),
        other => panic!("expected a live checkpoint, got {other:?}"),
    }

    // `next()` skips everything but events.
    client
        .append_to_stream("deal-10", &Default::default(), event("A", 10))
        .await
        .unwrap();
    let e = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.get_original_event().stream_id(), "deal-10");

    // Resuming from a checkpoint is exclusive: only what came after it.
    let mut resumed = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Position(checkpoints[1]))
                .filter(filter),
        )
        .await;
    let mut streams = Vec::new();
    loop {
        match next_event(&mut resumed).await {
            SubscriptionEvent::EventAppeared(e) => {
                streams.push(e.get_original_event().stream_id().to_owned())
            }
            SubscriptionEvent::CaughtUp(_) => break,
            _ => {}
        }
    }
    assert_eq!(streams, ["deal-2", "deal-9", "deal-10"]);
}

#[tokio::test]
async fn subscription_filters_on_event_type_and_excludes_system_records() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    client
        .append_to_stream("deal-1", &Default::default(), event("DealRegistered", 0))
        .await
        .unwrap();
    client
        .append_to_stream("deal-1", &Default::default(), event("Other", 1))
        .await
        .unwrap();
    client
        .tombstone_stream("deal-1", &TombstoneStreamOptions::default())
        .await
        .unwrap();

    let by_type = SubscriptionFilter::on_event_type().add_prefix("Deal");
    let mut sub = client
        .subscribe_to_all(&SubscribeToAllOptions::default().filter(by_type))
        .await;
    let e = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.get_original_event().event_type, "DealRegistered");

    // Unfiltered, $all shows the tombstone record too; excluding system events hides it.
    let mut everything = client.read_all(&ReadAllOptions::default()).await.unwrap();
    let mut types = Vec::new();
    while let Some(e) = everything.next().await.unwrap() {
        types.push(e.get_original_event().event_type.clone());
    }
    assert_eq!(types, ["DealRegistered", "Other", "$streamDeleted"]);
    let user_only = SubscriptionFilter::on_event_type().exclude_system_events();
    let mut sub = client
        .subscribe_to_all(&SubscribeToAllOptions::default().filter(user_only))
        .await;
    let mut seen = Vec::new();
    loop {
        match next_event(&mut sub).await {
            SubscriptionEvent::EventAppeared(e) => {
                seen.push(e.get_original_event().event_type.clone())
            }
            SubscriptionEvent::CaughtUp(_) => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["DealRegistered", "Other"]);
}

#[tokio::test]
async fn a_tombstoned_stream_reads_and_writes_as_deleted() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    client
        .append_to_stream("deal-1", &Default::default(), event("A", 0))
        .await
        .unwrap();
    let position = client
        .tombstone_stream(
            "deal-1",
            &TombstoneStreamOptions::default().stream_state(StreamState::StreamRevision(0)),
        )
        .await
        .unwrap();
    assert!(position.is_some());

    assert!(matches!(
        client
            .read_stream("deal-1", &ReadStreamOptions::default())
            .await,
        Err(Error::ResourceDeleted)
    ));
    assert!(matches!(
        client
            .append_to_stream("deal-1", &Default::default(), event("A", 1))
            .await,
        Err(Error::ResourceDeleted)
    ));
    assert!(matches!(
        client
            .tombstone_stream("deal-1", &TombstoneStreamOptions::default())
            .await,
        Err(Error::ResourceDeleted)
    ));
}

#[tokio::test]
async fn a_soft_deleted_stream_reads_as_not_found_until_recreated() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    client
        .append_to_stream(
            "deal-1",
            &Default::default(),
            vec![event("A", 0), event("A", 1)],
        )
        .await
        .unwrap();

    // A wrong expected revision is a gRPC error here, not a WrongExpectedVersion.
    match client
        .delete_stream(
            "deal-1",
            &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(0)),
        )
        .await
    {
        Err(Error::Grpc { code, .. }) => assert_eq!(code, tonic::Code::FailedPrecondition),
        other => panic!("expected a FailedPrecondition error, got {other:?}"),
    }
    client
        .delete_stream("deal-1", &DeleteStreamOptions::default())
        .await
        .unwrap();
    let mut read = client
        .read_stream("deal-1", &ReadStreamOptions::default())
        .await
        .unwrap();
    assert!(matches!(read.next().await, Err(Error::ResourceNotFound)));

    // Appending recreates it; revisions go on where they were.
    let again = client
        .append_to_stream("deal-1", &expect(StreamState::NoStream), event("A", 2))
        .await
        .unwrap();
    assert_eq!(again.next_expected_version, 2);
    assert_eq!(
        read_stream_all(&client, "deal-1", &ReadStreamOptions::default()).await,
        [2]
    );
}

#[tokio::test]
async fn dropping_the_double_ends_its_subscriptions() {
    let double = KurrentDouble::start().await;
    let client = client(&double);
    let mut sub = client
        .subscribe_to_all(&SubscribeToAllOptions::default())
        .await;
    assert!(matches!(
        next_event(&mut sub).await,
        SubscriptionEvent::Confirmed(_)
    ));
    assert!(matches!(
        next_event(&mut sub).await,
        SubscriptionEvent::CaughtUp(_)
    ));
    drop(double);
    let end = tokio::time::timeout(WAIT, sub.next_subscription_event())
        .await
        .expect("the subscription ends when the double stops");
    assert!(end.is_err());
}

#[tokio::test]
async fn a_secure_double_refuses_the_client_as_a_secure_server_does() {
    use dealreg_kurrentdb_double::{DoubleOptions, Security, User};
    let double = KurrentDouble::start_with(DoubleOptions {
        security: Some(Security::with_users(vec![
            User::new("admin", "changeit", &["$admins"]),
            User::new("app", "app-pw", &[]),
        ])),
    })
    .await;
    let as_user = |user: Option<(&str, &str)>| {
        let url = match user {
            Some((name, pw)) => format!("kurrentdb://{name}:{pw}@{}?tls=false", double.addr()),
            None => double.url(),
        };
        Client::new(url.parse().unwrap()).unwrap()
    };
    let read_all = |client: Client| async move {
        let mut read = client.read_all(&ReadAllOptions::default()).await?;
        read.next().await.map(|_| ())
    };
    // Server features answer anyone (the client sends no credentials there).
    assert!(as_user(None).server_info().await.is_ok());
    // Anonymous, a wrong password, a user without an ACL on $all: all AccessDenied to
    // this client (UNAUTHENTICATED and PERMISSION_DENIED alike).
    for user in [None, Some(("admin", "wrong")), Some(("app", "app-pw"))] {
        assert!(
            matches!(read_all(as_user(user)).await, Err(Error::AccessDenied)),
            "{user:?}"
        );
    }
    // The user may write and read its own streams; the admin reads $all.
    let app = as_user(Some(("app", "app-pw")));
    app.append_to_stream("deal-1", &expect(StreamState::NoStream), event("A", 0))
        .await
        .unwrap();
    assert_eq!(
        read_stream_all(&app, "deal-1", &ReadStreamOptions::default()).await,
        vec![0]
    );
    assert!(read_all(as_user(Some(("admin", "changeit")))).await.is_ok());
    // Anonymous may not write.
    assert!(matches!(
        as_user(None)
            .append_to_stream("deal-2", &expect(StreamState::Any), event("A", 0))
            .await,
        Err(Error::AccessDenied)
    ));
}
