//! `dealreg serve` as an operator runs it: a JetStream-backed deployment under the example
//! server configuration (credentials on every connection, partners still confined), wrong
//! credentials refused without printing them, a missing permission named as such, a drain
//! that ends when the server is gone, and a cluster node that freezes without closing its
//! connections (SIGSTOP) while commands keep being acknowledged through the other nodes.

mod nats_support;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nats_support::*;
use serde_json::json;
use support::{certify, onboard};
use uuid::Uuid;

const A: &str = "0190b0b0-0000-7000-8000-00000000000a";
const CONFIG: &str = include_str!("../adapters/nats/deploy/nats-server.conf");
const SERVICE_SECRET: &str = "dealreg-secret";

async fn vendor_command(vendor: &async_nats::Client, command: serde_json::Value) {
    let subject = format!(
        "dealreg.vendor.channel_manager.cmd.{}",
        command["type"].as_str().unwrap_or_default()
    );
    let (reply, _) = request(vendor, &subject, &json!({ "command": command }), None).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
}

fn submission(registration: Uuid, partner: Uuid, domain: &str) -> serde_json::Value {
    let mut command = support::submit(registration, partner, domain, "analytics", "reseller");
    command["expected_close"] = json!(days_from_now(60));
    command
}

/// Messages in the JetStream log's stream, as the vendor sees them.
async fn log_messages(vendor: &async_nats::Client) -> u64 {
    let js = async_nats::jetstream::new(vendor.clone());
    let mut stream = js
        .get_stream("DEALREG_EVENTS")
        .await
        .expect("the log stream");
    stream.info().await.expect("stream info").state.messages
}

/// Runs `dealreg` with `args` and `envs` to its end (at most 60 s): exit status and stderr.
fn run_dealreg(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dealreg");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dealreg {args:?} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dealreg serve` on `store` as the example configuration's service user, with `password`
/// in the environment, to its end: exit status and stderr.
fn serve_as_service(store: &str, url: &str, password: &str) -> (std::process::ExitStatus, String) {
    run_dealreg(
        &[
            "--store",
            store,
            "serve",
            "--nats-url",
            url,
            "--nats-user",
            "dealreg",
        ],
        &[("DEALREG_NATS_PASSWORD", password)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_deployment_runs_under_the_example_configuration_with_partners_confined() {
    let server = NatsServer::start(Some(CONFIG));
    let dir = tempfile::tempdir().expect("temp dir");
    let vendor = connect_as(&server.url, "vendor", None).await;
    let store = format!(
        "jetstream:{}?views={}",
        server.url,
        dir.path().join("views.db").display()
    );
    let mut serve = Serve::start(
        &store,
        &server.url,
        &["--nats-user", "dealreg"],
        &[("DEALREG_NATS_PASSWORD", SERVICE_SECRET)],
        dir.path().join("serve.log"),
        &vendor,
    )
    .await;
    let a: Uuid = A.parse().expect("uuid");
    vendor_command(
        &vendor,
        onboard(a, "Alpha Resellers", &["reseller"], "gold", 50),
    )
    .await;
    vendor_command(&vendor, certify(a, "analytics", &days_from_now(700))).await;

    let partner = connect_as(
        &server.url,
        "partner-a",
        Some(format!("_INBOX.partner-{A}")),
    )
    .await;
    // The partner tries to read the log and the key vault directly.
    let mut log_tap = partner.subscribe("dealreg.ev.>").await.expect("SUB sent");
    let mut keys_tap = partner.subscribe("dealreg.keys.>").await.expect("SUB sent");
    let (reply, _) = request(
        &partner,
        &format!("dealreg.partner.{A}.cmd.submit_registration"),
        &json!({ "command": submission(Uuid::now_v7(), a, "initech.example") }),
        None,
    )
    .await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    // ... and to write into it.
    let before = log_messages(&vendor).await;
    partner
        .publish("dealreg.ev.account-initech.example", "forged".into())
        .await
        .expect("PUB sent");
    let _ = partner.flush().await;
    for tap in [&mut log_tap, &mut keys_tap] {
        let got = tokio::time::timeout(Duration::from_millis(500), tap.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "a partner read a message of the log or the key vault"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log_messages(&vendor).await,
        before,
        "a partner wrote into the log"
    );
    assert!(before >= 4, "the log holds the commands' events: {before}");

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log_text());
    assert!(
        !serve.log_text().contains(SERVICE_SECRET),
        "the password is in serve's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_without_printing_them() {
    let server = NatsServer::start(Some(CONFIG));
    let dir = tempfile::tempdir().expect("temp dir");
    let views = dir.path().join("views.db");
    let host = server.url.trim_start_matches("nats://").to_string();
    // In the store URL.
    let in_url = format!(
        "jetstream:nats://dealreg:url-secret-4711@{host}?views={}",
        views.display()
    );
    let (status, err) = run_dealreg(&["--store", &in_url, "events"], &[]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("uthorization"), "{err}");
    assert!(
        !err.contains("url-secret-4711"),
        "the password was printed: {err}"
    );
    // In the environment, for the store and the service.
    let store = format!("jetstream:{}?views={}", server.url, views.display());
    let (status, err) = serve_as_service(&store, &server.url, "env-secret-0815");
    assert!(!status.success(), "{err}");
    assert!(err.contains("uthorization"), "{err}");
    assert!(
        !err.contains("env-secret-0815"),
        "the password was printed: {err}"
    );
    // The service's URL with a password, on a SQLite store: refused, not printed.
    let url = format!("nats://dealreg:url-secret-4712@{host}");
    let (status, err) = run_dealreg(
        &[
            "--store",
            &dir.path().join("s.db").display().to_string(),
            "serve",
            "--nats-url",
            &url,
            "--drain-secs",
            "2",
        ],
        &[],
    );
    assert!(!status.success(), "{err}");
    assert!(err.contains("uthorization"), "{err}");
    assert!(
        !err.contains("url-secret-4712"),
        "the password was printed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_user_without_the_log_subjects_is_told_which_permission_is_missing() {
    let config = CONFIG.replace("\"dealreg.ev.>\", ", "");
    assert_ne!(config, CONFIG, "the example grants dealreg.ev.>");
    let server = NatsServer::start(Some(&config));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!(
        "jetstream:{}?views={}",
        server.url,
        dir.path().join("views.db").display()
    );
    let (status, err) = serve_as_service(&store, &server.url, SERVICE_SECRET);
    assert!(!status.success(), "{err}");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        last.contains("refused this user publishing") && last.contains("dealreg.ev.>"),
        "{err}"
    );
    assert!(!last.contains("may or may not"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_by_its_deadline_when_the_server_goes_away() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let mut serve = Serve::start(
        &dir.path().join("dealreg.db"),
        &server.url,
        &["--drain-secs", "3"],
        &[],
        dir.path().join("serve.log"),
        &client,
    )
    .await;
    // Both at once, as a machine shutting down sends them.
    let pid = serve.pid().to_string();
    let nats_pid = server.server_pid().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid, &nats_pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut child = serve.child.take().expect("serve runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            panic!(
                "serve had not exited 40 s after SIGTERM: {}",
                serve.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = serve.log_text();
    // It either drained before the server went (nothing was pending) or says what it left.
    if !status.success() {
        assert!(log.contains("the drain did not finish within 3s"), "{log}");
    }
}

/// The node a client named `name` is connected to, from each node's `/connz`.
async fn node_of(cluster: &dealreg_nats_testkit::NatsCluster, name: &str) -> Option<usize> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    for i in 0..cluster.size() {
        let url = format!("{}/connz?limit=1024", cluster.monitor_url(i));
        let Ok(reply) = http.get(&url).send().await else {
            continue;
        };
        let Ok(connz) = reply.json::<serde_json::Value>().await else {
            continue;
        };
        let found = connz["connections"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == json!(name)));
        if found {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_does_not_stop_the_service() {
    let cluster = dealreg_nats_testkit::NatsCluster::start(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let urls = cluster.urls();
    let first = async_nats::connect(cluster.url_list())
        .await
        .expect("connect to the cluster");
    let mut serve = Serve::start(
        &dir.path().join("dealreg.db"),
        &urls,
        &[],
        &[],
        dir.path().join("serve.log"),
        &first,
    )
    .await;
    let name = format!("dealreg-serve-{}", serve.pid());
    let frozen = node_of(&cluster, &name)
        .await
        .expect("serve's connection is on a node");
    let other = (frozen + 1) % cluster.size();
    let client = async_nats::connect(cluster.url(other))
        .await
        .expect("connect to a node that stays up");
    let partner = Uuid::now_v7();
    vendor_command(
        &client,
        onboard(partner, "Frost Partners", &["reseller"], "gold", 500),
    )
    .await;
    vendor_command(&client, certify(partner, "analytics", &days_from_now(700))).await;

    let pid = cluster.pid(frozen).expect("the node runs").to_string();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let frozen_at = Instant::now();
    // Commands through a node that is up, each tried until it is acknowledged.
    let mut acknowledged = 0;
    let mut first_ack = None;
    for i in 0..5 {
        let body = json!({
            "idempotency_key": format!("frozen-{i}"),
            "command": submission(Uuid::now_v7(), partner, &format!("frozen-{i}.example"))
        });
        loop {
            assert!(
                frozen_at.elapsed() < Duration::from_secs(60),
                "no command acknowledged within 60 s of the freeze: {}",
                serve.log_text()
            );
            let subject = format!("dealreg.partner.{partner}.cmd.submit_registration");
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                client.request(subject, body.to_string().into()),
            )
            .await;
            if let Ok(Ok(reply)) = answer {
                if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&reply.payload) {
                    if value["ok"] == json!(true) {
                        acknowledged += 1;
                        first_ack.get_or_insert(frozen_at.elapsed());
                        break;
                    }
                }
            }
        }
    }
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let resumed = first_ack.expect("acknowledged");
    eprintln!("node {frozen} frozen: first command acknowledged after {resumed:?}");
    assert_eq!(acknowledged, 5);
    assert!(
        serve.log_text().contains("stopped answering"),
        "serve did not say why it moved: {}",
        serve.log_text()
    );
    // The resumed node drops the connection it held once it reads the close.
    let mut moved_to = node_of(&cluster, &name).await;
    let since = Instant::now();
    while moved_to == Some(frozen) && since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        moved_to = node_of(&cluster, &name).await;
    }
    assert!(
        moved_to.is_some_and(|n| n != frozen),
        "serve is on {moved_to:?}, the frozen node was {frozen}"
    );
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log_text());
}
