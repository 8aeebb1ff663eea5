//! A server older than 2.12 is refused at once, naming its version and the one required:
//! an older server ignores the atomic-batch headers and would store a multi-event append
//! piece by piece.

use dealreg_nats_testkit::HandshakeOnlyServer;
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore, OpenError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_older_than_2_12_is_refused_naming_both_versions() {
    let old = HandshakeOnlyServer::start("2.11.9");
    let started = std::time::Instant::now();
    let refused = JetStreamStore::connect(&[old.url().to_string()], JetStreamOptions::default())
        .await
        .err()
        .expect("an old server is refused");
    assert!(
        matches!(&refused, OpenError::ServerTooOld { found } if found == "2.11.9"),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("2.11.9") && message.contains("2.12"),
        "{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once, not after a timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_server_is_not_refused_by_the_handshake_check() {
    // The same handshake with a recent version passes the version check and goes on to
    // JetStream's API, which this listener does not serve: the error is then another one.
    let recent = HandshakeOnlyServer::start("2.12.1");
    let options = JetStreamOptions {
        timeout: std::time::Duration::from_millis(500),
        ..JetStreamOptions::default()
    };
    let err = JetStreamStore::connect(&[recent.url().to_string()], options)
        .await
        .err()
        .expect("nothing serves JetStream there");
    assert!(!matches!(err, OpenError::ServerTooOld { .. }), "{err:?}");
}
