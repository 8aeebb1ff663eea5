//! Connections to a real nats-server: credentials from `Access`, a refused user named
//! without its password, and the probe staying quiet for a user that may not publish on
//! its own inbox (it must not reconnect for ever).

use std::time::Duration;

use dealreg_nats_connect::{connect, Access, Liveness};
use dealreg_nats_testkit::NatsServer;

const CONFIG: &str = "authorization {\n  users = [\n    { user = \"svc\", password = \"svc-pw-123\" }\n    { user = \"reader\", password = \"reader-pw-456\", permissions = { publish = { allow = [\"dealreg.vendor.>\"] }, subscribe = { allow = [\"_INBOX.>\"] } } }\n  ]\n}\n";

fn access(user: &str, password: &str) -> Access {
    Access {
        user: Some((user.into(), password.into())),
        ..Access::default()
    }
}

fn quick() -> Liveness {
    Liveness {
        every: Duration::from_millis(200),
        silence: Duration::from_millis(600),
    }
}

/// How many times the connection was made (1: never dropped).
fn connects(connection: &dealreg_nats_connect::Connection) -> u64 {
    connection
        .client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_never_shown() {
    let server = NatsServer::start_with(Some(CONFIG));
    let urls = vec![server.url().to_string()];
    let refused = connect(&urls, &access("svc", "wrong-pw-789"), "t", quick()).await;
    let e = refused.expect_err("a wrong password is refused");
    let text = e.to_string();
    assert!(
        text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(!text.contains("wrong-pw-789"), "{text}");
    // In the URL.
    let in_url = vec![server.url().replace("nats://", "nats://svc:url-pw-000@")];
    let e = connect(&in_url, &Access::default(), "t", quick())
        .await
        .expect_err("a wrong password in the URL is refused");
    assert!(!e.to_string().contains("url-pw-000"), "{e}");
    let ok = connect(&urls, &access("svc", "svc-pw-123"), "t", quick()).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_that_may_not_publish_on_its_inbox_keeps_its_connection() {
    let server = NatsServer::start_with(Some(CONFIG));
    let urls = vec![server.url().to_string()];
    let connection = connect(&urls, &access("reader", "reader-pw-456"), "t", quick())
        .await
        .expect("connect");
    // Ten silences' worth: a probe that never hears back would have reconnected by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let connects = connects(&connection);
    assert_eq!(connects, 1, "the connection was made again");
    assert!(!connection
        .refusals
        .since(std::time::Instant::now() - Duration::from_secs(60))
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_connection_is_never_dropped_by_the_probe() {
    let server = NatsServer::start_with(Some(CONFIG));
    let urls = vec![server.url().to_string()];
    let connection = connect(&urls, &access("svc", "svc-pw-123"), "t", quick())
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let connects = connects(&connection);
    assert_eq!(connects, 1);
}
