//! Partner confinement with real NATS permissions: a nats-server runs the shipped example
//! configuration (adapters/nats/deploy/nats-server.conf), `dealreg serve` connects as its
//! service user, and partner A (user `partner-a`) cannot publish as partner B, cannot
//! read B's views or feed, and gets only partner-safe data in its replies and views.

mod nats_support;
mod support;

use std::time::Duration;

use futures_util::StreamExt;
use nats_support::*;
use serde_json::json;
use support::{approve, certify, onboard};
use uuid::Uuid;

const A: &str = "0190b0b0-0000-7000-8000-00000000000a";
const B: &str = "0190b0b0-0000-7000-8000-00000000000b";
const CONFIG: &str = include_str!("../adapters/nats/deploy/nats-server.conf");

async fn partner(url: &str, id: &str) -> async_nats::Client {
    let user = if id == A { "partner-a" } else { "partner-b" };
    connect_as(url, user, Some(format!("_INBOX.partner-{id}"))).await
}

fn submission(registration: Uuid, partner: &str, domain: &str, amount: i64) -> serde_json::Value {
    let partner: Uuid = partner.parse().expect("uuid");
    let mut command = support::submit(registration, partner, domain, "analytics", "reseller");
    command["expected_close"] = json!(days_from_now(60));
    command["estimated_amount"]["amount_minor"] = json!(amount);
    command
}

/// A request that the server must refuse to deliver: no reply arrives.
async fn denied(client: &async_nats::Client, subject: &str, body: serde_json::Value) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    {
        Err(_) => true,
        Ok(Err(_)) => true,
        Ok(Ok(reply)) => {
            eprintln!("{subject} was answered: {:?}", reply.payload);
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_is_confined_to_its_own_subjects_and_sees_only_partner_safe_data() {
    let server = NatsServer::start(Some(CONFIG));
    let dir = tempfile::tempdir().expect("temp dir");
    let vendor = connect_as(&server.url, "vendor", None).await;
    let _serve = Serve::start(
        &dir.path().join("dealreg.db"),
        &server.url,
        &["--user", "dealreg"],
        &[("DEALREG_NATS_PASSWORD", "dealreg-secret")],
        dir.path().join("serve.log"),
        &vendor,
    )
    .await;
    for (id, name) in [(A, "Alpha Resellers"), (B, "Bravo Systems")] {
        let id: Uuid = id.parse().expect("uuid");
        for command in [
            onboard(id, name, &["reseller"], "gold", 50),
            certify(id, "analytics", &days_from_now(700)),
        ] {
            let subject = format!(
                "dealreg.vendor.channel_manager.cmd.{}",
                command["type"].as_str().unwrap_or_default()
            );
            let (reply, _) = request(&vendor, &subject, &json!({ "command": command }), None).await;
            assert_eq!(reply["ok"], json!(true), "{reply}");
        }
    }
    let a = partner(&server.url, A).await;
    let b = partner(&server.url, B).await;

    // A subscribes to its own feed and (it tries) to B's.
    let mut own_feed = a
        .subscribe(format!("dealreg.feed.*.*.partner.{A}"))
        .await
        .expect("own feed");
    let mut stolen_feed = a
        .subscribe(format!("dealreg.feed.*.*.partner.{B}"))
        .await
        .expect("the client sends the SUB; the server refuses it");

    // Both partners register the same customer: a conflict, and A must learn nothing of B.
    let (reg_a, reg_b) = (Uuid::now_v7(), Uuid::now_v7());
    let (reply_b, _) = request(
        &b,
        &format!("dealreg.partner.{B}.cmd.submit_registration"),
        &json!({ "command": submission(reg_b, B, "globex.example", 7_654_321) }),
        None,
    )
    .await;
    assert_eq!(reply_b["ok"], json!(true), "{reply_b}");
    let (reply_a, _) = request(
        &a,
        &format!("dealreg.partner.{A}.cmd.submit_registration"),
        &json!({ "command": submission(reg_a, A, "globex.example", 1_234_567) }),
        None,
    )
    .await;
    let position = reply_a["events"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .filter_map(|e| support::position_number(&e["position"]))
                .max()
        })
        .expect("positions");
    let secrets = [B, "Bravo Systems", "7654321", &reg_b.to_string()];
    let safe = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} leaks `{secret}`: {text}");
        }
    };
    safe("A's reply", &reply_a.to_string());

    // A cannot publish as B: neither commands nor queries reach the service.
    assert!(
        denied(
            &a,
            &format!("dealreg.partner.{B}.cmd.withdraw_registration"),
            json!({ "command": { "account": "globex.example", "registration_id": reg_b, "reason": "x" } }),
        )
        .await
    );
    assert!(
        denied(
            &a,
            &format!("dealreg.partner.{B}.query.pipeline"),
            json!({})
        )
        .await
    );
    assert!(denied(&a, "dealreg.vendor.query.pipeline", json!({})).await);
    assert!(
        denied(
            &a,
            "dealreg.vendor.channel_manager.cmd.approve_registration",
            json!({ "command": approve(reg_a, "globex.example") }),
        )
        .await
    );

    // A's views and history: its own registration, nothing of B's.
    let (pipeline, _) = request(
        &a,
        &format!("dealreg.partner.{A}.query.pipeline"),
        &json!({ "min_position": position }),
        None,
    )
    .await;
    assert!(
        pipeline["answer"].to_string().contains(&reg_a.to_string()),
        "{pipeline}"
    );
    safe("A's pipeline", &pipeline.to_string());
    let (history, _) = request(
        &a,
        &format!("dealreg.partner.{A}.query.registration"),
        &json!({ "registration_id": reg_a }),
        None,
    )
    .await;
    assert_eq!(history["ok"], json!(true), "{history}");
    safe("A's history", &history.to_string());
    // B's registration is unknown to A, exactly like one that does not exist.
    let (theirs, _) = request(
        &a,
        &format!("dealreg.partner.{A}.query.registration"),
        &json!({ "registration_id": reg_b }),
        None,
    )
    .await;
    assert_eq!(
        theirs["error"]["code"],
        json!("unknown_registration"),
        "{theirs}"
    );
    let (ledger, _) = request(
        &a,
        &format!("dealreg.partner.{A}.query.ledger"),
        &json!({ "partner_id": B }),
        None,
    )
    .await;
    assert_eq!(ledger["error"]["code"], json!("not_permitted"), "{ledger}");

    // The vendor sees both, and the conflict.
    let (all, _) = request(
        &vendor,
        "dealreg.vendor.query.pipeline",
        &json!({ "min_position": position }),
        None,
    )
    .await;
    let all = all.to_string();
    assert!(
        all.contains(&reg_a.to_string()) && all.contains(&reg_b.to_string()),
        "{all}"
    );

    // A's feed carries its own rows, partner-safe; B's feed never reaches A.
    let message = tokio::time::timeout(Duration::from_secs(10), own_feed.next())
        .await
        .expect("A's feed message")
        .expect("a message");
    let text = String::from_utf8_lossy(&message.payload).to_string();
    assert!(text.contains(&reg_a.to_string()), "{text}");
    safe("A's feed", &text);
    // A refused subscription receives nothing (or ends): either way nothing of B's.
    let stolen = tokio::time::timeout(Duration::from_secs(1), stolen_feed.next()).await;
    assert!(
        !matches!(stolen, Ok(Some(_))),
        "A received B's feed: {stolen:?}"
    );
    // The auditor reads, and writes nothing.
    let auditor = connect_as(&server.url, "auditor", None).await;
    let (metrics, _) = request(&auditor, "dealreg.vendor.query.metrics", &json!({}), None).await;
    assert_eq!(metrics["ok"], json!(true), "{metrics}");
    let (program, _) = request(&auditor, "dealreg.vendor.query.program", &json!({}), None).await;
    assert_eq!(program["ok"], json!(true), "{program}");
    assert!(program["answer"].is_object(), "{program}");
    assert!(
        denied(
            &auditor,
            "dealreg.vendor.channel_manager.cmd.approve_registration",
            json!({ "command": approve(reg_a, "globex.example") }),
        )
        .await
    );
    // The vendor's durable consumer of the feed (a CRM sync keeps one): the auditor can
    // neither delete it nor replace its configuration, nor ack its messages...
    let js = async_nats::jetstream::new(vendor.clone());
    let feed = js
        .get_stream("DEALREG_FEED")
        .await
        .expect("the feed stream");
    feed.create_consumer(async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("vendor-crm".into()),
        ..Default::default()
    })
    .await
    .expect("the vendor's durable consumer");
    assert!(
        denied(
            &auditor,
            "$JS.API.CONSUMER.DELETE.DEALREG_FEED.vendor-crm",
            json!({})
        )
        .await
    );
    assert!(
        denied(
            &auditor,
            "$JS.API.CONSUMER.CREATE.DEALREG_FEED.vendor-crm",
            json!({ "stream_name": "DEALREG_FEED", "config": { "durable_name": "vendor-crm", "ack_policy": "none" } }),
        )
        .await
    );
    assert!(
        denied(
            &auditor,
            "$JS.API.CONSUMER.MSG.NEXT.DEALREG_FEED.vendor-crm",
            json!({ "batch": 1 })
        )
        .await
    );
    let still = feed
        .consumer_info("vendor-crm")
        .await
        .expect("the vendor's consumer is still there");
    assert_eq!(
        still.config.ack_policy,
        async_nats::jetstream::consumer::AckPolicy::Explicit,
        "its configuration is unchanged"
    );
    // ...and reads the stored feed, message by message.
    let (first, _) = request(
        &auditor,
        "$JS.API.STREAM.MSG.GET.DEALREG_FEED",
        &json!({ "seq": 1 }),
        None,
    )
    .await;
    assert!(first["message"]["subject"].is_string(), "{first}");
}

/// The permission lists of each kind of user in the example server configuration (which
/// the test above runs) and in the AsyncAPI document's `x-permissions` are the same.
#[test]
fn the_asyncapi_permissions_are_the_example_configurations() {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/adapters/nats/deploy/nats-server.conf"
    ))
    .expect("the example configuration");
    let asyncapi = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/asyncapi.yaml"
    ))
    .expect("the AsyncAPI document");
    // `["a", "b"]` after `key` on the first line at or after `from` that holds `key`.
    let list_after = |text: &str, from: usize, key: &str| -> Vec<String> {
        let line = text[from..]
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no `{key}` after byte {from}"));
        let start = line.find('[').expect("a list");
        let end = line.rfind(']').expect("a list");
        serde_json::from_str(&line[start..=end]).expect("a list of strings")
    };
    let conf_lists = |anchor: &str| {
        let at = conf
            .find(anchor)
            .unwrap_or_else(|| panic!("no {anchor} in the configuration"));
        let publish = list_after(&conf, at, "publish = { allow =");
        let subscribe = list_after(&conf, at, "subscribe = { allow =");
        let own = |l: Vec<String>| -> Vec<String> {
            l.into_iter().map(|s| s.replace(A, "<own id>")).collect()
        };
        (own(publish), own(subscribe))
    };
    let start = asyncapi.find("x-permissions:").expect("x-permissions");
    let documented = |role: &str| {
        let at = start
            + asyncapi[start..]
                .find(&format!("\n  {role}:"))
                .unwrap_or_else(|| panic!("no {role} in x-permissions"));
        let publish_at = at + asyncapi[at..].find("publish:").expect("publish");
        let subscribe_at = at + asyncapi[at..].find("subscribe:").expect("subscribe");
        (
            list_after(&asyncapi, publish_at, "allow:"),
            list_after(&asyncapi, subscribe_at, "allow:"),
        )
    };
    for (role, anchor) in [
        ("partner", "user = \"partner-a\""),
        ("vendor", "VENDOR = {"),
        ("auditor", "AUDITOR = {"),
        ("service", "SERVICE = {"),
    ] {
        assert_eq!(documented(role), conf_lists(anchor), "{role}");
    }
}
