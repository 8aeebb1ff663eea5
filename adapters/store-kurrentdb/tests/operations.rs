//! What an operator meets on a real deployment, against the double (issue 30, item 10):
//! a secure server that refuses users who may not read `$all` (refused at open, with what
//! to grant), streams truncated by `$tb`/`$maxCount` metadata (refused, never folded in
//! part), and a follower that lags the leader (a short read-back after an append is read
//! again, then reported as an unknown outcome, never as a concurrent change).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use kurrentdb::{Acl, AppendToStreamOptions, StreamAclBuilder, StreamMetadata};

use dealreg_events::conformance::event;
use dealreg_events::{EventStore, ExpectedVersion, Position, StoreError};
use dealreg_kurrentdb_double::{DoubleOptions, KurrentDouble, Security, User};
use dealreg_store_kurrentdb::{KurrentOptions, KurrentStore, OpenError};

/// A connection string as `user` with `password` (no user part when `None`).
fn url_as(addr: SocketAddr, user: Option<(&str, &str)>) -> String {
    match user {
        Some((name, password)) => {
            format!("kurrentdb://{name}:{password}@{addr}?tls=false&discoveryInterval=0")
        }
        None => common::url_of(addr),
    }
}

async fn open_as(addr: SocketAddr, user: Option<(&str, &str)>) -> Result<KurrentStore, OpenError> {
    KurrentStore::connect(&url_as(addr, user)).await
}

/// A secure double with the server's default users and two ordinary ones.
async fn secure_double() -> KurrentDouble {
    KurrentDouble::start_with(DoubleOptions {
        security: Some(Security::with_users(vec![
            User::new("admin", "changeit", &["$admins"]),
            User::new("ops", "changeit", &["$ops"]),
            User::new("reader", "r3ader-pw", &["dealreg"]),
            User::new("writer", "wr1ter-pw", &[]),
        ])),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_server_refuses_at_open_whoever_may_not_read_the_log() {
    let double = secure_double().await;
    let addr = double.addr();

    // No user: anonymous access is denied since 24.10.
    match open_as(addr, None).await {
        Err(e @ OpenError::AnonymousDenied { .. }) => {
            let message = e.to_string();
            assert!(message.contains("anonymous"), "{message}");
            assert!(message.contains("DEALREG_KURRENTDB_USER"), "{message}");
        }
        other => panic!("anonymous: {other:?}"),
    }

    // A user that may read ordinary streams but not $all, and $ops (which does not open it).
    for (user, password) in [("writer", "wr1ter-pw"), ("ops", "changeit")] {
        match open_as(addr, Some((user, password))).await {
            Err(e @ OpenError::AllDenied { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("user `{user}` may not read $all")),
                    "{message}"
                );
                assert!(message.contains("$admins"), "{message}");
                assert!(message.contains("ACL"), "{message}");
                assert!(!message.contains(password), "no password: {message}");
            }
            other => panic!("{user}: {other:?}"),
        }
    }

    // A wrong password, an unknown user: refused as such, the password never shown.
    for (user, password) in [("admin", "not-the-pw"), ("nobody", "n0body-pw")] {
        match open_as(addr, Some((user, password))).await {
            Err(e @ OpenError::Refused { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("refused user `{user}`")),
                    "{message}"
                );
                assert!(message.contains("password"), "{message}");
                assert!(!message.contains(password), "no password: {message}");
            }
            other => panic!("{user}/{password}: {other:?}"),
        }
    }

    // An admin opens it and works.
    let admin = open_as(addr, Some(("admin", "changeit")))
        .await
        .expect("an admin may read $all");
    admin
        .append(
            "account-secure.example",
            ExpectedVersion::NoStream,
            vec![event("e", 0)],
        )
        .await
        .expect("the admin appends");

    // An ACL on $all that names the reader's group lets it in.
    let acl = StreamMetadata::builder()
        .acl(Acl::Stream(
            StreamAclBuilder::new().add_read_roles("dealreg").build(),
        ))
        .build();
    admin
        .client()
        .set_stream_metadata("$all", &AppendToStreamOptions::default(), &acl)
        .await
        .expect("the admin writes $all's ACL");
    let reader = open_as(addr, Some(("reader", "r3ader-pw")))
        .await
        .expect("the ACL on $all lets the reader read it");
    let log = reader
        .read_all(Position::ORIGIN, 10)
        .await
        .expect("the reader reads the log");
    assert_eq!(log.len(), 1);
    // ... and the writer is still kept out.
    assert!(matches!(
        open_as(addr, Some(("writer", "wr1ter-pw"))).await,
        Err(OpenError::AllDenied { .. })
    ));
}

/// Writes `metadata` as the metadata of `stream` (the raw client, as an operator would).
async fn set_metadata(store: &KurrentStore, stream: &str, metadata: StreamMetadata) {
    store
        .client()
        .set_stream_metadata(stream, &AppendToStreamOptions::default(), &metadata)
        .await
        .expect("write the stream's metadata");
}

fn assert_truncated(result: Result<Vec<dealreg_events::RecordedEvent>, StoreError>) {
    match result {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("was truncated"), "{message}");
            assert!(message.contains("$tb"), "{message}");
            assert!(message.contains("$maxCount"), "{message}");
            assert!(message.contains("restore"), "{message}");
        }
        other => panic!("a truncated stream must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_is_refused_rather_than_folded_in_part() {
    let (_double, store) = common::fresh().await;
    let stream = "account-truncated.example";
    let first = store
        .append(
            stream,
            ExpectedVersion::NoStream,
            (0..3).map(|n| event("e", n)).collect(),
        )
        .await
        .expect("append three");
    store
        .append(
            stream,
            ExpectedVersion::Exact(first.tip.clone()),
            vec![event("e", 3)],
        )
        .await
        .expect("append one more");

    // Truncate before revision 2: a fold from the start would see revisions 2 and 3 only.
    set_metadata(
        &store,
        stream,
        StreamMetadata::builder().truncate_before(2).build(),
    )
    .await;
    assert_truncated(store.read_stream(stream, None, 100).await);
    // A read after revision 2 asks for nothing hidden.
    let after = store
        .read_stream(stream, Some(&first.tip), 100)
        .await
        .expect("read after the tip");
    assert_eq!(
        after.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![3]
    );

    // $maxCount hides all but the newest events the same way.
    set_metadata(
        &store,
        stream,
        StreamMetadata::builder().max_count(1).build(),
    )
    .await;
    assert_truncated(store.read_stream(stream, None, 100).await);

    // Once the metadata is gone (no scavenge ran), the stream folds whole again.
    set_metadata(&store, stream, StreamMetadata::default()).await;
    let whole = store
        .read_stream(stream, None, 100)
        .await
        .expect("read whole");
    assert_eq!(
        whole.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );

    // In a namespace the metadata stream is the namespaced one's.
    let options = KurrentOptions {
        namespace: Some("tenant-a".into()),
        ..KurrentOptions::default()
    };
    let namespaced = common::store_at(_double.addr(), options).await;
    namespaced
        .append(
            stream,
            ExpectedVersion::NoStream,
            (0..2).map(|n| event("e", n)).collect(),
        )
        .await
        .expect("append in the namespace");
    set_metadata(
        &namespaced,
        &format!("tenant-a.{stream}"),
        StreamMetadata::builder().max_count(1).build(),
    )
    .await;
    assert_truncated(namespaced.read_stream(stream, None, 100).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_read_back_from_a_lagging_follower_is_read_again_then_an_unknown_outcome() {
    let double = KurrentDouble::start().await;
    let options = KurrentOptions {
        retry_delay: Duration::from_millis(10),
        ..KurrentOptions::default()
    };
    let store = common::store_at(double.addr(), options).await;
    let stream = "account-follower.example";

    // The follower lags for two reads: the read-back is tried again and finds the event.
    double.lag_reads(1, 2);
    let first = store
        .append(stream, ExpectedVersion::NoStream, vec![event("e", 0)])
        .await
        .expect("a briefly lagging read-back is read again");
    let read = store.read_stream(stream, None, 10).await.expect("read");
    assert_eq!(first.positions, vec![read[0].position]);

    // It lags for longer than the store reads again: the append is written, where it
    // landed is unknown; never "changed by someone else".
    double.lag_reads(1, 1_000);
    match store
        .append(
            stream,
            ExpectedVersion::Exact(first.tip.clone()),
            vec![event("e", 1)],
        )
        .await
    {
        Err(StoreError::OutcomeUnknown { reason }) => {
            assert!(!reason.contains("someone else"), "{reason}");
            assert!(reason.contains("follower"), "{reason}");
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    double.lag_reads(0, 0);
    let read = store.read_stream(stream, None, 10).await.expect("read");
    assert_eq!(read.len(), 2, "the append was written");
}
