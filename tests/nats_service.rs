//! `dealreg serve` against a real nats-server: commands with the actor from the subject,
//! coded errors for bad input (and the service keeps serving), queries at a position,
//! the change feed on JetStream, idempotency by `Nats-Msg-Id`, and the drain on SIGTERM.

mod nats_support;
mod support;

use std::time::Duration;

use futures_util::StreamExt;
use nats_support::*;
use serde_json::json;
use support::{approve, certify, onboard};
use uuid::Uuid;

const CM: &str = "dealreg.vendor.channel_manager.cmd";

fn submission(registration: Uuid, partner: Uuid, domain: &str) -> serde_json::Value {
    let mut command = support::submit(registration, partner, domain, "analytics", "reseller");
    command["expected_close"] = json!(days_from_now(60));
    command
}

async fn ready_partner(client: &async_nats::Client, name: &str) -> Uuid {
    let partner = Uuid::now_v7();
    for command in [
        onboard(partner, name, &["reseller"], "gold", 50),
        certify(partner, "analytics", &days_from_now(700)),
    ] {
        let subject = format!("{CM}.{}", command["type"].as_str().unwrap_or_default());
        let (reply, code) = request(client, &subject, &json!({ "command": command }), None).await;
        assert_eq!(reply["ok"], json!(true), "{name}: {reply}");
        assert_eq!(code, None);
    }
    partner
}

async fn started(dir: &tempfile::TempDir, server: &NatsServer) -> (async_nats::Client, Serve) {
    started_with(dir, server, &[]).await
}

async fn started_with(
    dir: &tempfile::TempDir,
    server: &NatsServer,
    extra: &[&str],
) -> (async_nats::Client, Serve) {
    let client = async_nats::connect(&server.url).await.expect("connect");
    let serve = Serve::start(
        &dir.path().join("dealreg.db"),
        &server.url,
        extra,
        &[],
        dir.path().join("serve.log"),
        &client,
    )
    .await;
    (client, serve)
}

/// A free loopback port (bound and released: another process could take it in between,
/// which on a test machine it does not).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on the metrics address: status line and body.
async fn http_get(addr: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    socket.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_over_nats_is_answered_queried_and_published() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = format!("127.0.0.1:{}", free_port());
    let key = dir.path().join("signing.key");
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .args(["audit", "keygen", "--out"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(keygen.status.success());
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let (key_arg, checkpoints_arg) = (
        key.to_string_lossy().to_string(),
        checkpoints.to_string_lossy().to_string(),
    );
    let (client, mut serve) = started_with(
        &dir,
        &server,
        &[
            "--metrics-addr",
            &metrics,
            "--signing-key",
            &key_arg,
            "--checkpoints",
            &checkpoints_arg,
            "--sign-every",
            "1",
        ],
    )
    .await;
    let (status, _) = http_get(&metrics, "/readyz").await;
    assert!(status.contains("200"), "{status}");

    // Discovery: the micro protocol's INFO lists one endpoint per command.
    let info = client
        .request("$SRV.INFO.dealreg", "".into())
        .await
        .expect("info");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("info JSON");
    let endpoints: Vec<&str> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in dealreg_domain::Command::NAMES {
        assert!(endpoints.contains(name), "no endpoint for {name}: {info}");
    }

    let partner = ready_partner(&client, "Northwind").await;
    let registration = Uuid::now_v7();
    let subject = format!("dealreg.partner.{partner}.cmd.submit_registration");
    let body = json!({ "command": submission(registration, partner, "acme.example") });
    let (first, code) = request(&client, &subject, &body, Some("submit-1")).await;
    assert_eq!(first["ok"], json!(true), "{first}");
    assert_eq!(code, None);
    assert_eq!(first["replayed"], json!(false));
    let position = support::last_position(&first).expect("a position");

    // The same Nats-Msg-Id again: the first reply, no second effect.
    let (again, _) = request(&client, &subject, &body, Some("submit-1")).await;
    assert_eq!(again["replayed"], json!(true), "{again}");
    assert_eq!(again["events"], first["events"]);

    // Read-your-writes: the partner's pipeline at the submission's position.
    let (pipeline, code) = request(
        &client,
        &format!("dealreg.partner.{partner}.query.pipeline"),
        &json!({ "min_position": position, "timeout_ms": 10000 }),
        None,
    )
    .await;
    assert_eq!(code, None, "{pipeline}");
    assert!(support::position_number(&pipeline["position"]).unwrap_or(0) >= position);
    assert!(
        pipeline["answer"]
            .to_string()
            .contains(&registration.to_string()),
        "{pipeline}"
    );

    // The vendor approves; the registration's history shows both facts.
    let (approved, _) = request(
        &client,
        &format!("{CM}.approve_registration"),
        &json!({ "command": approve(registration, "acme.example") }),
        None,
    )
    .await;
    assert_eq!(approved["ok"], json!(true), "{approved}");
    let approved_at =
        support::position_number(&approved["events"][0]["position"]).expect("position");
    let (history, _) = request(
        &client,
        "dealreg.vendor.query.registration",
        &json!({ "registration_id": registration, "min_position": approved_at }),
        None,
    )
    .await;
    let types: Vec<&str> = history["answer"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"]["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["registration_submitted", "registration_approved"],
        "{history}"
    );

    // A position the log has not reached: a coded timeout, not a stale answer.
    let (late, code) = request(
        &client,
        "dealreg.vendor.query.pipeline",
        &json!({ "min_position": 1_000_000, "timeout_ms": 200 }),
        None,
    )
    .await;
    assert_eq!(late["error"]["code"], json!("view_timeout"), "{late}");
    assert_eq!(code.as_deref(), Some("504"));

    // The feed: the registration's row, for the vendor and for its partner.
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("DEALREG_FEED").await.expect("feed stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("test-adapter".into()),
            filter_subject: format!("dealreg.feed.pipeline.registration.partner.{partner}"),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut stages = Vec::new();
    while stages.last().map(String::as_str) != Some("protected") {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap_or_else(|_| panic!("the feed stopped at {stages:?}"))
            .expect("a message")
            .expect("readable");
        let body: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        assert_eq!(body["key"], json!(format!("registration/{registration}")));
        let text = body.to_string();
        assert!(
            !text.contains("proof_of_work") && !text.contains("notes"),
            "partner-safe: {text}"
        );
        stages.push(
            body["row"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        message.ack().await.expect("ack");
    }

    // The metrics count what happened.
    let (status, body) = http_get(&metrics, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    for line in [
        "dealreg_commands_total{command=\"submit_registration\",outcome=\"ok\"} 2",
        "dealreg_commands_total{command=\"approve_registration\",outcome=\"ok\"} 1",
        "dealreg_queries_total{view=\"pipeline\",outcome=\"view_timeout\"} 1",
        "dealreg_holds_views 1",
    ] {
        assert!(body.contains(line), "no `{line}` in:\n{body}");
    }
    assert!(
        body.contains(
            "dealreg_command_seconds_bucket{command=\"submit_registration\",le=\"+Inf\"} 2"
        ),
        "{body}"
    );
    assert!(
        body.contains("dealreg_projection_behind{view=\"pipeline\"}"),
        "{body}"
    );

    // The service signed the log's head on its interval, and it verifies.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&checkpoints).map_or(true, |t| t.trim().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no signed checkpoint was written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(dir.path().join("dealreg.db"))
        .args(["audit", "verify", "--checkpoints"])
        .arg(&checkpoints)
        .output()
        .expect("verify");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // SIGTERM drains and exits 0.
    let status = serve.terminate();
    assert!(
        status.success(),
        "serve exited {status}: {}",
        serve.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_nats_gets_coded_errors_and_the_service_keeps_serving() {
    let server = NatsServer::start(Some("max_payload: 4MB\n"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let partner = ready_partner(&client, "Contoso").await;
    let other = Uuid::now_v7();
    let submit = format!("dealreg.partner.{partner}.cmd.submit_registration");
    let good = submission(Uuid::now_v7(), partner, "fabrikam.example");

    let mut wrong_type = good.clone();
    wrong_type["estimated_amount"]["amount_minor"] = json!("lots");
    let mut missing = good.clone();
    missing.as_object_mut().map(|c| c.remove("customer"));
    let mut array_amount = good.clone();
    array_amount["estimated_amount"] = json!([5000, "EUR"]);
    let cases: Vec<(&str, String, Vec<u8>, &str, &str)> = vec![
        ("malformed JSON", submit.clone(), b"{\"command\": ".to_vec(), "malformed_json", "400"),
        ("wrong type", submit.clone(), json!({ "command": wrong_type }).to_string().into_bytes(), "invalid_command", "400"),
        ("missing field", submit.clone(), json!({ "command": missing }).to_string().into_bytes(), "invalid_command", "400"),
        ("an array for an amount", submit.clone(), json!({ "command": array_amount }).to_string().into_bytes(), "invalid_command", "400"),
        ("an array for a query", "dealreg.vendor.query.pipeline".into(), b"[1, 2]".to_vec(), "invalid_query", "400"),
        ("unknown command", format!("dealreg.partner.{partner}.cmd.steal_deal"), b"{}".to_vec(), "unknown_command", "400"),
        ("2 MB payload", submit.clone(), vec![b' '; 2 << 20], "payload_too_large", "400"),
        ("another actor", submit.clone(),
            json!({ "actor": { "kind": "partner", "partner_id": other, "user": "x" }, "command": good }).to_string().into_bytes(),
            "actor_mismatch", "403"),
        ("another command", submit.clone(),
            json!({ "command": { "type": "withdraw_registration" } }).to_string().into_bytes(),
            "command_mismatch", "400"),
        ("unknown registration", format!("{CM}.approve_registration"),
            json!({ "command": approve(Uuid::now_v7(), "fabrikam.example") }).to_string().into_bytes(),
            "unknown_registration", "404"),
    ];
    for (what, subject, body, code, status) in cases {
        let (reply, header) = request_bytes(&client, &subject, body, None).await;
        assert_eq!(reply["ok"], json!(false), "{what}: {reply}");
        assert_eq!(reply["error"]["code"], json!(code), "{what}: {reply}");
        assert!(
            !reply["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: the error says what to do"
        );
        assert_eq!(header.as_deref(), Some(status), "{what}: {reply}");
    }
    // Queries too.
    let (reply, header) = request_bytes(
        &client,
        &format!("dealreg.partner.{partner}.query.pipeline"),
        b"{\"min_position\": \"soon\"}".to_vec(),
        None,
    )
    .await;
    assert_eq!(reply["error"]["code"], json!("invalid_query"), "{reply}");
    assert_eq!(header.as_deref(), Some("400"));
    let (reply, _) = request_bytes(
        &client,
        &format!("dealreg.partner.{partner}.query.conflicts"),
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(reply["error"]["code"], json!("unknown_view"), "{reply}");

    // Still serving.
    let (reply, header) = request(&client, &submit, &json!({ "command": good }), None).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(header, None);
}

/// A refusal quotes a bounded prefix of what it refuses: a 50 KB value in a command (the
/// limit is 64 KB) or a 600 KB one in a query gives a reply of a few KB (header and body),
/// not the input twice over, and the service goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_quotes_a_bounded_prefix_of_a_huge_input() {
    let server = NatsServer::start(Some("max_payload: 4MB\n"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let partner = ready_partner(&client, "Contoso").await;
    let huge = "x".repeat(600_000);
    let mut command = submission(Uuid::now_v7(), partner, "fabrikam.example");
    command["motion"] = json!("x".repeat(50_000));
    let cases = [
        (
            format!("dealreg.partner.{partner}.cmd.submit_registration"),
            json!({ "command": command }),
            "invalid_command",
        ),
        (
            "dealreg.vendor.query.pipeline".to_string(),
            json!({ "timeout_ms": huge }),
            "invalid_query",
        ),
    ];
    for (subject, body, code) in cases {
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            client.request(subject.clone(), body.to_string().into()),
        )
        .await
        .expect("answered in time")
        .expect("answered");
        let header = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(value["error"]["code"], json!(code), "{subject}");
        assert!(header.starts_with(code), "{subject}: {header}");
        assert!(
            reply.payload.len() < 4096 && header.len() < 4096,
            "{subject}: a reply of {} bytes with a header of {} bytes quotes too much",
            reply.payload.len(),
            header.len()
        );
        assert!(
            value["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("bytes in all")),
            "{subject}: the message says it was cut: {value}"
        );
    }
    let (answer, _) = request(
        &client,
        &format!("dealreg.partner.{partner}.cmd.submit_registration"),
        &json!({ "command": submission(Uuid::now_v7(), partner, "after.example") }),
        None,
    )
    .await;
    assert_eq!(answer["ok"], json!(true), "the service goes on: {answer}");
}

/// Every page of a query after the other, following `next`: the pages' answers and
/// the largest reply's size.
async fn all_pages(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> (Vec<serde_json::Value>, usize) {
    let mut pages = Vec::new();
    let mut largest = 0;
    let mut body = body;
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            client.request(subject.to_string(), body.to_string().into()),
        )
        .await
        .unwrap_or_else(|_| panic!("{subject}: no answer in 20 s (a reply the server dropped?)"))
        .expect("answered");
        largest = largest.max(reply.payload.len());
        let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(value["ok"], json!(true), "{subject}: {value}");
        let next = value["next"].as_str().map(str::to_string);
        pages.push(value);
        match next {
            Some(next) => body["after"] = json!(next),
            None => return (pages, largest),
        }
        assert!(pages.len() < 200, "{subject}: the pages do not end");
    }
}

/// The registration ids of pipeline answers (grouped by motion and stage).
fn pipeline_ids(pages: &[serde_json::Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for page in pages {
        for stages in page["answer"].as_object().expect("by motion").values() {
            for rows in stages.as_object().expect("by stage").values() {
                for row in rows.as_array().expect("rows") {
                    ids.push(row["registration_id"].as_str().expect("an id").to_string());
                }
            }
        }
    }
    ids
}

/// An answer larger than the server's `max_payload` comes in pages that each fit, every
/// registration once, in id order; a caller's `limit` cuts smaller pages; a bad cursor
/// or limit is a coded error. Without paging, the vendor's pipeline of these 40
/// registrations (~30 KB) was a reply the server dropped: the asker heard nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_a_message_comes_in_pages() {
    let server = NatsServer::start(Some("max_payload: 8KB\n"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let partner = ready_partner(&client, "Contoso").await;
    let mut submitted = Vec::new();
    let mut last = 0;
    for n in 0..40 {
        let registration = Uuid::now_v7();
        let (reply, _) = request(
            &client,
            &format!("dealreg.partner.{partner}.cmd.submit_registration"),
            &json!({ "command": submission(registration, partner, &format!("customer{n}.example")) }),
            None,
        )
        .await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        last = support::last_position(&reply).expect("a position");
        submitted.push(registration.to_string());
    }
    submitted.sort();

    let (pages, largest) = all_pages(
        &client,
        "dealreg.vendor.query.pipeline",
        json!({ "min_position": last, "timeout_ms": 10000 }),
    )
    .await;
    assert!(
        pages.len() > 1,
        "40 rows do not fit 8 KB: {} page(s)",
        pages.len()
    );
    assert!(largest <= 8 * 1024, "a reply of {largest} bytes");
    let mut ids = pipeline_ids(&pages);
    assert_eq!(ids.len(), 40, "every registration once: {ids:?}");
    ids.sort();
    assert_eq!(ids, submitted);

    let (pages, _) = all_pages(
        &client,
        &format!("dealreg.partner.{partner}.query.pipeline"),
        json!({ "min_position": last, "limit": 7 }),
    )
    .await;
    assert_eq!(pages.len(), 6, "40 by 7");
    assert!(pipeline_ids(&pages[..5]).len() == 35 && pipeline_ids(&pages[5..]).len() == 5);
    let mut ids = pipeline_ids(&pages);
    ids.sort();
    assert_eq!(
        ids, submitted,
        "the partner's pages hold the same registrations"
    );

    let one = &submitted[0];
    let (whole, _) = request(
        &client,
        "dealreg.vendor.query.registration",
        &json!({ "registration_id": one }),
        None,
    )
    .await;
    let events = whole["answer"]["events"]
        .as_array()
        .expect("events")
        .clone();
    assert!(!events.is_empty() && whole.get("next").is_none(), "{whole}");
    let (pages, _) = all_pages(
        &client,
        "dealreg.vendor.query.registration",
        json!({ "registration_id": one, "limit": 1 }),
    )
    .await;
    let paged: Vec<serde_json::Value> = pages
        .iter()
        .flat_map(|p| {
            p["answer"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        paged, events,
        "a history a line at a time is the whole history"
    );

    for (body, says) in [
        (json!({ "after": "account:acme.com" }), "not a cursor"),
        (json!({ "limit": 0 }), "`limit`"),
        (json!({ "limit": 10001 }), "`limit`"),
    ] {
        let (refused, code) = request(&client, "dealreg.vendor.query.pipeline", &body, None).await;
        assert_eq!(
            refused["error"]["code"],
            json!("invalid_query"),
            "{body}: {refused}"
        );
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{refused}"
        );
        assert_eq!(code.as_deref(), Some("400"));
    }
}

/// Sends `command` as a channel manager and returns the position of the reply's last event.
async fn as_cm(client: &async_nats::Client, command: serde_json::Value) -> u64 {
    let subject = format!("{CM}.{}", command["type"].as_str().unwrap_or_default());
    let (reply, _) = request(client, &subject, &json!({ "command": command }), None).await;
    assert_eq!(reply["ok"], json!(true), "{subject}: {reply}");
    reply["events"]
        .as_array()
        .and_then(|events| events.last())
        .and_then(|e| support::position_number(&e["position"]))
        .expect("a position")
}

/// Ledger and conflicts answers larger than a message come in pages through the service,
/// every entry, balance and account once: 24 accounts each claimed by two resellers (a
/// horizontal conflict each), the first partner's deal won on each (a ledger entry each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_and_conflicts_come_in_pages_through_the_service() {
    let server = NatsServer::start(Some("max_payload: 8KB\n"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let first = ready_partner(&client, "Contoso").await;
    let second = ready_partner(&client, "Fabrikam").await;
    let mut accounts = Vec::new();
    let mut won = Vec::new();
    let mut last = 0;
    for n in 0..24 {
        let domain = format!("customer{n}.example");
        let mine = Uuid::now_v7();
        as_cm(&client, submission(mine, first, &domain)).await;
        as_cm(&client, submission(Uuid::now_v7(), second, &domain)).await;
        as_cm(&client, approve(mine, &domain)).await;
        as_cm(
            &client,
            json!({ "type": "set_sourcing_partner", "account": domain, "registration_id": mine, "partner_id": first, "reason": "originated" }),
        )
        .await;
        for advance in support::to_closing_stage(mine, &domain, "reseller") {
            as_cm(&client, advance).await;
        }
        last = as_cm(&client, support::won(mine, &domain, 4_000_000, "EUR")).await;
        accounts.push(domain);
        won.push(mine.to_string());
    }
    accounts.sort();
    won.sort();

    let (pages, largest) = all_pages(
        &client,
        "dealreg.vendor.query.conflicts",
        json!({ "min_position": last, "timeout_ms": 10000, "limit": 5 }),
    )
    .await;
    assert!(
        pages.len() >= 5,
        "24 accounts by 5: {} page(s)",
        pages.len()
    );
    assert!(largest <= 8 * 1024, "a reply of {largest} bytes");
    let mut seen: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            p["answer"]["conflicts"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, accounts, "every account's conflicts once");

    let (pages, largest) = all_pages(
        &client,
        "dealreg.vendor.query.ledger",
        json!({ "min_position": last, "timeout_ms": 10000 }),
    )
    .await;
    assert!(pages.len() > 1, "24 entries do not fit 8 KB");
    assert!(largest <= 8 * 1024, "a reply of {largest} bytes");
    let mut entries: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            p["answer"]["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|e| {
            e["registration_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    entries.sort();
    assert_eq!(entries, won, "every win's commission entry once");
    let balances: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            p["answer"]["balances"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(balances, vec![first.to_string()], "one balance, once");
}

/// One item larger than a reply may hold (a registration's history whose submission
/// carries 13 KB of proof of work, under a 16 KB `max_payload`) is answered
/// `answer_too_large` (413) with its size and the room, through the service; the service
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_larger_than_a_reply_is_answer_too_large_through_the_service() {
    let server = NatsServer::start(Some("max_payload: 16KB\n"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let partner = ready_partner(&client, "Contoso").await;
    let registration = Uuid::now_v7();
    let mut command = submission(registration, partner, "bulky.example");
    command["proof_of_work"] = json!("minutes of the CFO workshop; ".repeat(450));
    let last = as_cm(&client, command).await;
    let (refused, code) = request(
        &client,
        "dealreg.vendor.query.registration",
        &json!({ "registration_id": registration, "min_position": last, "timeout_ms": 10000 }),
        None,
    )
    .await;
    assert_eq!(
        refused["error"]["code"],
        json!("answer_too_large"),
        "{refused}"
    );
    assert_eq!(code.as_deref(), Some("413"));
    let details = &refused["error"]["details"];
    assert!(
        details["bytes"].as_u64() > details["room"].as_u64(),
        "{refused}"
    );
    let (fine, _) = request(
        &client,
        "dealreg.vendor.query.pipeline",
        &json!({ "min_position": last }),
        None,
    )
    .await;
    assert_eq!(fine["ok"], json!(true), "the service goes on: {fine}");
}

/// The cursor is a key, not an offset: rows written between two page requests (one that
/// sorts before the cursor, one after it, and a change to a row already read and to one
/// not yet read) neither shift nor repeat the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_between_pages_neither_shift_nor_repeat_the_others() {
    let server = NatsServer::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, _serve) = started(&dir, &server).await;
    let partner = ready_partner(&client, "Contoso").await;
    let mut submitted = Vec::new();
    let mut last = 0;
    for n in 0..20 {
        let registration = Uuid::now_v7();
        last = as_cm(
            &client,
            submission(registration, partner, &format!("customer{n}.example")),
        )
        .await;
        submitted.push(registration);
    }
    submitted.sort();
    let page = |after: Option<String>, min: u64| {
        let mut body = json!({ "min_position": min, "timeout_ms": 10000, "limit": 5 });
        if let Some(after) = after {
            body["after"] = json!(after);
        }
        body
    };
    let (first, _) = request(
        &client,
        "dealreg.vendor.query.pipeline",
        &page(None, last),
        None,
    )
    .await;
    let mut ids = pipeline_ids(std::slice::from_ref(&first));
    assert_eq!(ids.len(), 5, "{first}");
    // Between the pages: a row before the cursor, one after it, and changes to rows on
    // both sides of it.
    let before = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001);
    let after = Uuid::from_u128(0xffff_ffff_ffff_7fff_bfff_ffff_ffff_fff0);
    as_cm(&client, submission(before, partner, "early.example")).await;
    as_cm(&client, submission(after, partner, "late.example")).await;
    let read = submitted[0];
    as_cm(&client, approve(read, &account_of(&client, read).await)).await;
    let unread = submitted[12];
    let position = as_cm(
        &client,
        json!({ "type": "withdraw_registration", "account": account_of(&client, unread).await, "registration_id": unread, "reason": "postponed" }),
    )
    .await;
    let mut cursor = first["next"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(at) = cursor {
        let (next, _) = request(
            &client,
            "dealreg.vendor.query.pipeline",
            &page(Some(at), position),
            None,
        )
        .await;
        assert_eq!(next["ok"], json!(true), "{next}");
        ids.extend(pipeline_ids(std::slice::from_ref(&next)));
        cursor = next["next"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages < 50, "the pages do not end");
    }
    let mut expected: Vec<String> = submitted.iter().map(Uuid::to_string).collect();
    expected.push(after.to_string());
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "no row twice: {ids:?}");
    assert_eq!(
        sorted, expected,
        "every row once; the one written behind the cursor is not in later pages, the one ahead is"
    );
}

/// The account (customer domain) a registration was submitted for, from its history.
async fn account_of(client: &async_nats::Client, registration: Uuid) -> String {
    let (history, _) = request(
        client,
        "dealreg.vendor.query.registration",
        &json!({ "registration_id": registration, "timeout_ms": 10000 }),
        None,
    )
    .await;
    history["answer"]["account"]
        .as_str()
        .unwrap_or_else(|| panic!("an account: {history}"))
        .to_string()
}
