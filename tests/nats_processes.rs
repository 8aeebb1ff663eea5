//! Two `dealreg serve` processes on one store file, over a real nats-server: racing
//! submissions end with exactly one protected registration; a SIGKILL of one process under
//! load loses no acknowledged command, a retry with the same key has exactly one effect,
//! and a feed consumer stopped and restarted sees every row change once, in order.

mod nats_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nats_support::*;
use serde_json::json;
use support::{approve, certify, onboard};
use uuid::Uuid;

const CM: &str = "dealreg.vendor.channel_manager.cmd";

async fn ready_partner(client: &async_nats::Client, name: &str) -> Uuid {
    let partner = Uuid::now_v7();
    for command in [
        onboard(partner, name, &["reseller"], "gold", 500),
        certify(partner, "analytics", &days_from_now(700)),
    ] {
        let subject = format!("{CM}.{}", command["type"].as_str().unwrap_or_default());
        let (reply, _) = request(client, &subject, &json!({ "command": command }), None).await;
        assert_eq!(reply["ok"], json!(true), "{name}: {reply}");
    }
    partner
}

fn submission(registration: Uuid, partner: Uuid, domain: &str) -> serde_json::Value {
    let mut command = support::submit(registration, partner, domain, "analytics", "reseller");
    command["expected_close"] = json!(days_from_now(60));
    command
}

async fn two_serves(
    dir: &tempfile::TempDir,
    server: &NatsServer,
    client: &async_nats::Client,
) -> (Serve, Serve) {
    let store = dir.path().join("shared.db");
    let first = Serve::start(
        &store,
        &server.url,
        &[],
        &[],
        dir.path().join("serve-1.log"),
        client,
    )
    .await;
    let second = Serve::start(
        &store,
        &server.url,
        &[],
        &[],
        dir.path().join("serve-2.log"),
        client,
    )
    .await;
    (first, second)
}

/// Requests per instance of the service, from `$SRV.STATS`.
async fn requests_per_instance(client: &async_nats::Client) -> Vec<u64> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish_with_reply("$SRV.STATS.dealreg", inbox, "".into())
        .await
        .expect("stats");
    let mut counts = Vec::new();
    while let Ok(Some(reply)) =
        tokio::time::timeout(Duration::from_millis(500), replies.next()).await
    {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(&reply.payload) else {
            continue;
        };
        let n = stats["endpoints"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["num_requests"].as_u64()).sum())
            .unwrap_or(0);
        counts.push(n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_racing_submissions_to_two_processes_end_with_one_protected_registration() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let (_first, _second) = two_serves(&dir, &server, &client).await;
    let mut partners = Vec::new();
    for i in 0..10 {
        partners.push(ready_partner(&client, &format!("Racer {i}")).await);
    }
    let mut tasks = Vec::new();
    for n in 0..100 {
        let client = client.clone();
        let partner = partners[n % 10];
        tasks.push(tokio::spawn(async move {
            let registration = Uuid::now_v7();
            let domain = if n % 2 == 0 {
                "https://www.Initech.example/about"
            } else {
                "sales.initech.example"
            };
            let (submitted, _) = request(
                &client,
                &format!("dealreg.partner.{partner}.cmd.submit_registration"),
                &json!({ "command": submission(registration, partner, domain) }),
                Some(&format!("race-submit-{n}")),
            )
            .await;
            if submitted["ok"] != json!(true) {
                return (submitted, None);
            }
            let (approved, _) = request(
                &client,
                &format!("{CM}.approve_registration"),
                &json!({ "command": approve(registration, "initech.example") }),
                Some(&format!("race-approve-{n}")),
            )
            .await;
            (submitted, Some(approved))
        }));
    }
    let mut answered = 0;
    let mut protected = 0;
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        // `request` panics when a request goes unanswered: every one is answered here.
        let (submitted, approved) = task.await.expect("every request was answered");
        answered += 1;
        let last = approved.as_ref().unwrap_or(&submitted);
        if last["ok"] == json!(true) {
            protected += 1;
        } else {
            let code = last["error"]["code"].as_str().unwrap_or("none").to_string();
            *codes.entry(code).or_default() += 1;
        }
    }
    assert_eq!(answered, 100);
    assert_eq!(
        protected, 1,
        "exactly one approval wins; the others: {codes:?}"
    );
    // Both processes took requests.
    let per_instance = requests_per_instance(&client).await;
    assert_eq!(per_instance.len(), 2, "{per_instance:?}");
    assert!(per_instance.iter().all(|n| *n > 0), "{per_instance:?}");
    // And the view agrees: one protected registration on the account.
    let head = {
        let (pipeline, _) =
            request(&client, "dealreg.vendor.query.metrics", &json!({}), None).await;
        support::position_number(&pipeline["position"]).unwrap_or(0)
    };
    let (pipeline, _) = request(
        &client,
        "dealreg.vendor.query.pipeline",
        &json!({ "min_position": head }),
        None,
    )
    .await;
    let text = pipeline["answer"].to_string();
    assert_eq!(
        text.matches("\"status\":\"protected\"").count(),
        1,
        "{pipeline}"
    );
    eprintln!("race over NATS: {codes:?}");
}

/// A command's reply, when each attempt was sent and when the reply came.
struct Answered {
    reply: serde_json::Value,
    sent: Vec<Instant>,
    answered: Instant,
}

impl Answered {
    fn attempts(&self) -> usize {
        self.sent.len()
    }
}

/// Sends `command` with `key` until a reply arrives (another process takes over when the
/// one that had it dies), and returns the reply with the instant of each attempt.
async fn until_answered(
    client: &async_nats::Client,
    subject: &str,
    body: &serde_json::Value,
    key: &str,
) -> Answered {
    let mut sends = Vec::new();
    loop {
        sends.push(Instant::now());
        let attempts = sends.len();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", key);
        let sent = tokio::time::timeout(
            Duration::from_secs(3),
            client.request_with_headers(subject.to_string(), headers, body.to_string().into()),
        )
        .await;
        if let Ok(Ok(reply)) = sent {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&reply.payload) {
                let retry = value["error"]["code"].as_str().is_some_and(|c| {
                    ["store_failed", "store_unavailable", "contention"].contains(&c)
                });
                if !retry {
                    return Answered {
                        reply: value,
                        sent: sends,
                        answered: Instant::now(),
                    };
                }
            }
        }
        assert!(attempts < 40, "{key} was never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When a process or server was killed: just before the signal, and once it was dead.
#[derive(Clone, Copy)]
struct Kill {
    began: Instant,
    done: Instant,
}

impl Kill {
    fn now(kill: impl FnOnce()) -> Kill {
        let began = Instant::now();
        kill();
        Kill {
            began,
            done: Instant::now(),
        }
    }
}

/// Asserts that the kill of `what` overlapped the load of `answers`: commands were in
/// flight at it (sent before it, not answered before it), some of them retried or answered
/// after it, and commands first sent after it were answered too. A kill after the load
/// ended, or before it began, fails here.
fn assert_killed_under_load(kill: Kill, answers: &[&Answered], what: &str) {
    let in_flight: Vec<&&Answered> = answers
        .iter()
        .filter(|a| a.sent[0] < kill.began && a.answered > kill.began)
        .collect();
    let retried_after = in_flight
        .iter()
        .filter(|a| a.sent.iter().any(|s| *s > kill.done))
        .count();
    let answered_after = in_flight.iter().filter(|a| a.answered > kill.done).count();
    let sent_after = answers.iter().filter(|a| a.sent[0] > kill.done).count();
    eprintln!(
        "{what} killed with {} commands in flight: {retried_after} of them retried after it, \
         {answered_after} answered after it; {sent_after} commands sent after it",
        in_flight.len()
    );
    assert!(
        !in_flight.is_empty(),
        "no command was in flight when {what} was killed"
    );
    assert!(
        retried_after + answered_after > 0,
        "no command in flight at the kill of {what} was retried or answered after it"
    );
    assert!(
        sent_after > 0,
        "no command was sent after {what} was killed: the load had ended"
    );
}

/// `registration_submitted` events per idempotency key in the log of `store` (`--store`).
fn submissions_per_key(store: &std::ffi::OsStr) -> BTreeMap<String, usize> {
    let events = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(store)
        .arg("events")
        .output()
        .expect("dealreg events");
    assert!(
        events.status.success(),
        "dealreg events: {}",
        String::from_utf8_lossy(&events.stderr)
    );
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&events.stdout).lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("event line");
        if event["event_type"] == json!("registration_submitted") {
            let key = event["metadata"]["idempotency_key"]
                .as_str()
                .unwrap_or("none")
                .to_string();
            *per_key.entry(key).or_default() += 1;
        }
    }
    per_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_processes_loses_nothing_and_retries_apply_once() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let (mut first, mut second) = two_serves(&dir, &server, &client).await;
    let mut partners = Vec::new();
    for i in 0..4 {
        partners.push(ready_partner(&client, &format!("Steady {i}")).await);
    }
    // A CRM adapter's durable consumer on the vendor feed of registrations.
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("DEALREG_FEED").await.expect("feed stream");
    let consumer_config = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("crm".into()),
        filter_subject: "dealreg.feed.pipeline.registration.vendor".into(),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        // Messages the stopped reader had pulled but not acknowledged come back after this.
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    };
    stream
        .create_consumer(consumer_config.clone())
        .await
        .expect("consumer");

    const N: usize = 120;
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    for n in 0..N {
        let (client, acknowledged, semaphore) = (
            client.clone(),
            Arc::clone(&acknowledged),
            Arc::clone(&semaphore),
        );
        let partner = partners[n % partners.len()];
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.expect("permit");
            let registration = Uuid::now_v7();
            let key = format!("kill-{n}");
            let answered = until_answered(
                &client,
                &format!("dealreg.partner.{partner}.cmd.submit_registration"),
                &json!({ "command": submission(registration, partner, &format!("customer-{n}.example")) }),
                &key,
            )
            .await;
            assert_eq!(answered.reply["ok"], json!(true), "{key}: {}", answered.reply);
            acknowledged.lock().expect("lock").insert(registration);
            (key, registration, answered)
        }));
    }
    // Kill the first process (the views' lease holder) once some are acknowledged.
    while acknowledged.lock().expect("lock").len() < N / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Kill::now(|| first.kill());
    let mut retried = 0;
    let mut registrations = BTreeMap::new();
    let mut answers = Vec::new();
    for task in tasks {
        let (key, registration, answered) = task.await.expect("task");
        retried += usize::from(answered.attempts() > 1);
        registrations.insert(key, registration);
        answers.push(answered);
    }
    eprintln!("{retried} of {N} submissions were retried after the kill");
    assert_killed_under_load(
        kill,
        &answers.iter().collect::<Vec<_>>(),
        "the views' lease holder",
    );

    // Half the feed, then the consumer stops and comes back.
    let mut seen: Vec<(String, u64)> = Vec::new();
    let read = |limit: usize| {
        let stream = stream.clone();
        let config = consumer_config.clone();
        async move {
            let consumer = stream
                .create_consumer(config)
                .await
                .expect("consumer again");
            let mut messages = consumer.messages().await.expect("messages");
            let mut got = Vec::new();
            while got.len() < limit {
                let Ok(Some(Ok(message))) =
                    tokio::time::timeout(Duration::from_secs(15), messages.next()).await
                else {
                    break;
                };
                let body: serde_json::Value =
                    serde_json::from_slice(&message.payload).expect("JSON");
                got.push((
                    body["key"].as_str().unwrap_or_default().to_string(),
                    support::position_number(&body["position"]).unwrap_or(0),
                ));
                message.ack().await.expect("ack");
            }
            got
        }
    };
    seen.extend(read(N / 2).await);
    let mut keys: BTreeSet<String> = seen.iter().map(|(k, _)| k.clone()).collect();
    let wanted: BTreeSet<String> = registrations
        .values()
        .map(|r| format!("registration/{r}"))
        .collect();
    while !wanted.is_subset(&keys) {
        let more = read(wanted.difference(&keys).count()).await;
        assert!(
            !more.is_empty(),
            "the feed stopped with {} of {} registrations",
            wanted.intersection(&keys).count(),
            wanted.len()
        );
        keys.extend(more.iter().map(|(k, _)| k.clone()));
        seen.extend(more);
    }
    let unique: BTreeSet<&(String, u64)> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row change was delivered twice");
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, position) in &seen {
        if let Some(before) = last.insert(key, *position) {
            assert!(*position > before, "{key}: {position} after {before}");
        }
    }

    // Every acknowledged command is in the log exactly once, per idempotency key.
    let status = second.terminate();
    assert!(status.success(), "{}", second.log_text());
    let per_key = submissions_per_key(dir.path().join("shared.db").as_os_str());
    for key in registrations.keys() {
        assert_eq!(per_key.get(key), Some(&1), "{key}: {per_key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_one_process_while_the_other_takes_the_rest() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let (mut first, mut second) = two_serves(&dir, &server, &client).await;
    let partner = ready_partner(&client, "Draining").await;
    const N: usize = 200;
    let mut tasks = Vec::new();
    for n in 0..N {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("drain-{n}");
            let body = json!({ "command": submission(Uuid::now_v7(), partner, &format!("drain-{n}.example")) });
            // A request the server delivered in the instant the draining process
            // unsubscribed can go unanswered (the client library drops what arrives for a
            // closed subscription); the client retries it with the same key, as documented.
            until_answered(
                &client,
                &format!("dealreg.partner.{partner}.cmd.submit_registration"),
                &body,
                &key,
            )
            .await
        }));
        if n == N / 4 {
            // SIGTERM the first while requests are in flight (from another thread, so the
            // requests keep flowing while it drains).
            let pid = first.pid();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut retried = 0;
    for task in tasks {
        let answered = task.await.expect("answered");
        assert_eq!(answered.reply["ok"], json!(true), "{}", answered.reply);
        retried += usize::from(answered.attempts() > 1);
    }
    assert!(
        retried <= N / 10,
        "{retried} of {N} needed a retry: the drain lost more than an instant's requests"
    );
    eprintln!("{retried} of {N} requests were retried around the drain");
    let status = first.child.take().expect("runs").wait().expect("wait");
    assert!(
        status.success(),
        "the drained process exited {status}: {}",
        first.log_text()
    );
    assert!(first.log_text().contains("drained"), "{}", first.log_text());
    let status = second.terminate();
    assert!(status.success(), "{}", second.log_text());
    // One effect per key, retried or not.
    let events = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(dir.path().join("shared.db"))
        .arg("events")
        .output()
        .expect("dealreg events");
    let submitted = String::from_utf8_lossy(&events.stdout)
        .lines()
        .filter(|l| {
            l.contains("\"event_type\":\"registration_submitted\"") && l.contains("\"drain-")
        })
        .count();
    assert_eq!(submitted, N, "one registration per key");
}

/// A new partner, ready, submits one registration for `domain` over NATS: the partner,
/// the registration and the position of its first event.
async fn one_submission(
    client: &async_nats::Client,
    name: &str,
    domain: &str,
) -> (Uuid, Uuid, u64) {
    let partner = ready_partner(client, name).await;
    let registration = Uuid::now_v7();
    let (submitted, _) = request(
        client,
        &format!("dealreg.partner.{partner}.cmd.submit_registration"),
        &json!({ "command": submission(registration, partner, domain) }),
        None,
    )
    .await;
    assert_eq!(submitted["ok"], json!(true), "{submitted}");
    let position = support::last_position(&submitted).expect("a position");
    (partner, registration, position)
}

/// `serve --no-views` answers commands and queries but never folds: alone, its answers
/// stay at the views as last saved (a query for the new position times out, coded); once
/// a `serve` without the flag joins, that one keeps the views and the same query is
/// answered with the registration in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_views_process_answers_commands_and_leaves_the_views_to_another() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let store = dir.path().join("shared.db");
    let mut commands_only = Serve::start(
        &store,
        &server.url,
        &["--no-views"],
        &[],
        dir.path().join("serve-no-views.log"),
        &client,
    )
    .await;
    let (partner, registration, position) = one_submission(&client, "Split", "split.example").await;
    let pipeline = format!("dealreg.partner.{partner}.query.pipeline");
    let (late, code) = request(
        &client,
        &pipeline,
        &json!({ "min_position": position, "timeout_ms": 500 }),
        None,
    )
    .await;
    assert_eq!(late["error"]["code"], json!("view_timeout"), "{late}");
    assert_eq!(code.as_deref(), Some("504"));
    assert!(
        commands_only
            .log_text()
            .contains("never takes the views lease"),
        "{}",
        commands_only.log_text()
    );

    let mut keeper = Serve::start(
        &store,
        &server.url,
        &[],
        &[],
        dir.path().join("serve-views.log"),
        &client,
    )
    .await;
    let (answer, code) = request(
        &client,
        &pipeline,
        &json!({ "min_position": position, "timeout_ms": 10000 }),
        None,
    )
    .await;
    assert_eq!(code, None, "{answer}");
    assert!(
        support::position_number(&answer["position"]).unwrap_or(0) >= position,
        "{answer}"
    );
    assert!(
        answer["answer"]
            .to_string()
            .contains(&registration.to_string()),
        "{answer}"
    );
    assert!(
        keeper.log_text().contains("took the views lease"),
        "{}",
        keeper.log_text()
    );
    assert!(
        !commands_only.log_text().contains("took the views lease"),
        "{}",
        commands_only.log_text()
    );
    for serve in [&mut commands_only, &mut keeper] {
        let status = serve.terminate();
        assert!(status.success(), "{}", serve.log_text());
    }
}

/// `serve --views-only` keeps the views for `serve --no-views` processes and answers
/// nothing itself: one service instance answers the command, the query for its position
/// is answered from the views the other process folded, and only that one took the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_views_only_process_keeps_the_views_and_answers_no_request() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let store = dir.path().join("split.db");
    let mut commands = Serve::start(
        &store,
        &server.url,
        &["--no-views"],
        &[],
        dir.path().join("serve-commands.log"),
        &client,
    )
    .await;
    let mut views =
        Serve::start_views_only(&store, &server.url, dir.path().join("serve-views.log")).await;
    assert_eq!(
        count_instances(&client).await,
        1,
        "the views-only process registered no service instance"
    );
    let (partner, registration, position) =
        one_submission(&client, "Split Views", "split-views.example").await;
    let (answer, code) = request(
        &client,
        &format!("dealreg.partner.{partner}.query.pipeline"),
        &json!({ "min_position": position, "timeout_ms": 10000 }),
        None,
    )
    .await;
    assert_eq!(code, None, "{answer}");
    assert!(
        answer["answer"]
            .to_string()
            .contains(&registration.to_string()),
        "{answer}"
    );
    assert!(
        views
            .log_text()
            .contains("answers no request (--views-only)"),
        "{}",
        views.log_text()
    );
    assert!(
        !commands.log_text().contains("took the views lease"),
        "{}",
        commands.log_text()
    );
    let answered = requests_per_instance(&client).await;
    assert!(
        answered.len() == 1 && answered[0] >= 2,
        "one instance answered the command and the query: {answered:?}"
    );
    for serve in [&mut commands, &mut views] {
        let status = serve.terminate();
        assert!(status.success(), "{}", serve.log_text());
    }
}

/// Submissions `keys` (one new registration each, for the partners in turn), 16 at a
/// time, each sent again with its key until answered; `acknowledged` counts the answered.
fn steady_submissions(
    client: &async_nats::Client,
    partners: &[Uuid],
    keys: std::ops::Range<usize>,
    prefix: &'static str,
    acknowledged: &Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<(String, Uuid, Answered)>> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    keys.map(|n| {
        let (client, acknowledged, semaphore) = (
            client.clone(),
            Arc::clone(acknowledged),
            Arc::clone(&semaphore),
        );
        let partner = partners[n % partners.len()];
        tokio::spawn(async move {
            let _permit = semaphore.acquire().await.expect("permit");
            let registration = Uuid::now_v7();
            let key = format!("{prefix}-{n}");
            let answered = until_answered(
                &client,
                &format!("dealreg.partner.{partner}.cmd.submit_registration"),
                &json!({ "command": submission(registration, partner, &format!("{prefix}-{n}.example")) }),
                &key,
            )
            .await;
            assert_eq!(answered.reply["ok"], json!(true), "{key}: {}", answered.reply);
            acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (key, registration, answered)
        })
    })
    .collect()
}

/// What a views file holds: the pipeline's saved position (a token), and the entries
/// waiting in its feed outbox.
fn views_file_state(path: &std::path::Path) -> (Option<String>, i64) {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (None, 0);
    };
    let position = conn
        .query_row(
            "SELECT position FROM projection_state WHERE name = 'pipeline'",
            [],
            |r| r.get::<_, rusqlite::types::Value>(0),
        )
        .ok()
        .map(|v| match v {
            rusqlite::types::Value::Integer(n) => n.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        });
    let outbox = conn
        .query_row("SELECT count(*) FROM feed_outbox", [], |r| r.get(0))
        .unwrap_or(-1);
    (position, outbox)
}

/// Waits until every views file's pipeline is saved at `position` or later and its outbox
/// is empty: each host folds its own views, and the outbox of the hosts that do not
/// publish is emptied by the marks of the one that does.
async fn until_hosts_caught_up(files: &[std::path::PathBuf], position: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<_> = files.iter().map(|f| views_file_state(f)).collect();
        let done = states.iter().all(|(at, outbox)| {
            at.as_deref()
                .and_then(|t| t.parse::<dealreg_events::Position>().ok())
                .and_then(|p| p.sequence())
                .is_some_and(|p| p >= position)
                && *outbox == 0
        });
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hosts' views did not catch up with {position}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message on the vendor feed of registrations, read from the start until idle:
/// `(key, position)` of each.
async fn whole_registration_feed(client: &async_nats::Client) -> Vec<(String, u64)> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("DEALREG_FEED").await.expect("feed stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "dealreg.feed.pipeline.registration.vendor".into(),
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut seen = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(3), messages.next()).await
    {
        let body: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        seen.push((
            body["key"].as_str().unwrap_or_default().to_string(),
            support::position_number(&body["position"]).unwrap_or(0),
        ));
    }
    seen
}

/// Two hosts, each with its own views file, serving one log on JetStream: both fold every
/// view; one publishes the feeds (the other's outbox empties by its marks); when that one
/// is killed, the other takes the duties over and the feed goes on, each change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_jetstream_log_fold_their_own_views_and_publish_once() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let client = async_nats::connect(&server.url).await.expect("connect");
    let files = [dir.path().join("host-a.db"), dir.path().join("host-b.db")];
    let spec =
        |views: &std::path::Path| format!("jetstream:{}?views={}", server.url, views.display());
    let mut hosts = Vec::new();
    for (i, file) in files.iter().enumerate() {
        hosts.push(
            Serve::start(
                spec(file),
                &server.url,
                &[],
                &[],
                dir.path().join(format!("host-{i}.log")),
                &client,
            )
            .await,
        );
    }
    let mut partners = Vec::new();
    for i in 0..3 {
        partners.push(ready_partner(&client, &format!("Two hosts {i}")).await);
    }
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registrations = BTreeMap::new();
    for task in steady_submissions(&client, &partners, 0..40, "hosts", &acknowledged) {
        let (key, registration, _) = task.await.expect("task");
        registrations.insert(key, registration);
    }
    let (metrics, _) = request(&client, "dealreg.vendor.query.metrics", &json!({}), None).await;
    let head = submissions_per_key(spec(&files[0]).as_ref());
    assert_eq!(head.len(), 40, "{head:?}");
    let last = {
        let (reply, _) = request(
            &client,
            &format!("{CM}.certify_partner"),
            &json!({ "command": certify(partners[0], "security", &days_from_now(700)) }),
            None,
        )
        .await;
        assert_eq!(reply["ok"], json!(true), "{reply} {metrics}");
        support::position_number(&reply["events"][0]["position"]).expect("position")
    };
    until_hosts_caught_up(&files, last).await;
    let holder = hosts
        .iter()
        .position(|h| h.log_text().contains("took the deployment's duties"))
        .expect("one host holds the duties");
    assert!(
        !hosts[1 - holder]
            .log_text()
            .contains("took the deployment's duties"),
        "both hosts took the duties"
    );

    // Kill the publishing host under load; the other takes the duties over.
    let tasks = steady_submissions(&client, &partners, 40..100, "hosts", &acknowledged);
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 55 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Kill::now(|| hosts[holder].kill());
    let mut answers = Vec::new();
    for task in tasks {
        let (key, registration, answered) = task.await.expect("task");
        registrations.insert(key, registration);
        answers.push(answered);
    }
    assert_killed_under_load(
        kill,
        &answers.iter().collect::<Vec<_>>(),
        "the publishing host",
    );
    let survivor = 1 - holder;
    let last = {
        let (reply, _) = request(
            &client,
            &format!("{CM}.certify_partner"),
            &json!({ "command": certify(partners[1], "security", &days_from_now(700)) }),
            None,
        )
        .await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        support::position_number(&reply["events"][0]["position"]).expect("position")
    };
    until_hosts_caught_up(&files[survivor..=survivor], last).await;
    assert!(
        hosts[survivor]
            .log_text()
            .contains("took the deployment's duties"),
        "{}",
        hosts[survivor].log_text()
    );
    let seen = whole_registration_feed(&client).await;
    let unique: BTreeSet<&(String, u64)> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row change was published twice");
    let keys: BTreeSet<String> = seen.iter().map(|(k, _)| k.clone()).collect();
    for registration in registrations.values() {
        assert!(
            keys.contains(&format!("registration/{registration}")),
            "registration {registration} never reached the feed"
        );
    }
    for (key, n) in submissions_per_key(spec(&files[survivor]).as_ref()) {
        assert_eq!(n, 1, "{key} was recorded {n} times");
    }
    let status = hosts[survivor].terminate();
    assert!(status.success(), "{}", hosts[survivor].log_text());
}

/// A three-node JetStream cluster holding the log with three replicas, two hosts serving
/// it: the stream's leader is killed under steady load. Every acknowledged command is in
/// the log once (per idempotency key), the hosts go on within seconds, and `audit verify`
/// passes. The kill overlapped the load: commands were in flight at it and were retried or
/// answered after it, and commands sent after it were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_of_a_cluster_loses_no_acknowledged_command() {
    let mut cluster = dealreg_nats_testkit::NatsCluster::start(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let urls = cluster.urls();
    let client = async_nats::connect(cluster.url_list())
        .await
        .expect("connect to the cluster");
    let files = [dir.path().join("host-a.db"), dir.path().join("host-b.db")];
    let spec =
        |views: &std::path::Path| format!("jetstream:{urls}?replicas=3&views={}", views.display());
    let mut hosts = Vec::new();
    for (i, file) in files.iter().enumerate() {
        hosts.push(
            Serve::start(
                spec(file),
                &urls,
                &[],
                &[],
                dir.path().join(format!("host-{i}.log")),
                &client,
            )
            .await,
        );
    }
    let mut partners = Vec::new();
    for i in 0..4 {
        partners.push(ready_partner(&client, &format!("Cluster {i}")).await);
    }
    const N: usize = 120;
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = steady_submissions(&client, &partners, 0..N, "leader", &acknowledged);
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < N / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leader = cluster
        .wait_for_stream_leader("DEALREG_EVENTS", Duration::from_secs(10))
        .await;
    let at_kill = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    let kill = Kill::now(|| cluster.kill(leader));
    let killed = kill.done;
    // How long until the hosts acknowledge again.
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) <= at_kill + 1
        && acknowledged.load(std::sync::atomic::Ordering::SeqCst) < N
    {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no command was acknowledged in the minute after the stream leader died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = killed.elapsed();
    let mut registrations = BTreeMap::new();
    let mut retried = 0;
    let mut answers = Vec::new();
    for task in tasks {
        let (key, registration, answered) = task.await.expect("task");
        retried += usize::from(answered.attempts() > 1);
        registrations.insert(key, registration);
        answers.push(answered);
    }
    eprintln!(
        "stream leader killed after {at_kill} acknowledged: acknowledging again after {resumed:?}, {retried} of {N} retried"
    );
    assert_killed_under_load(
        kill,
        &answers.iter().collect::<Vec<_>>(),
        "the stream leader",
    );
    let per_key = submissions_per_key(spec(&files[0]).as_ref());
    for key in registrations.keys() {
        assert_eq!(per_key.get(key), Some(&1), "{key}: {per_key:?}");
    }
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(spec(&files[0]))
        .args(["audit", "verify"])
        .output()
        .expect("dealreg audit verify");
    assert!(
        verify.status.success(),
        "verify: {} {}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    for host in &mut hosts {
        let status = host.terminate();
        assert!(status.success(), "{}", host.log_text());
    }
}
