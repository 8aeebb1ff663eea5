//! HubSpot webhook deliveries: signatures, the commands they become, and bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Recorded;
use dealreg_clock::{Clock, SystemClock};
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::sync::{ChangeSource, Outbound, SyncError};
use dealreg_crm::webhook::{self, HubspotInbound};
use dealreg_crm::{CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, HUBSPOT_TOKEN};
use serde_json::{json, Value};

const SECRET: &[u8] = b"hubspot-app-secret";
const PUBLIC: &str = "https://hooks.example.com";
const PATH: &str = "/crm/hubspot/webhook";
const REGISTRATION: &str = "0193a000-0000-7000-8000-000000000001";

struct One(Option<ViewChange>);

impl ChangeSource for One {
    async fn changes_after(
        &mut self,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> Result<Option<(Vec<ViewChange>, String)>, SyncError> {
        Ok(self.0.take().map(|c| (vec![c], "1".to_string())))
    }
}

/// A fake HubSpot holding one synced registration deal, and the inbound side over it.
async fn setup(dir: &tempfile::TempDir) -> (FakeCrm, Arc<HubspotInbound<Recorded>>, String) {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let state = Arc::new(SyncState::open(&dir.path().join("crm.db")).expect("state"));
    let client = || HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into()).expect("client");
    let sync = Outbound {
        config: CrmConfig::default_mapping().expect("mapping"),
        target: Target::Hubspot,
        client: client(),
        state: Arc::clone(&state),
        clock: Arc::new(SystemClock),
        adapter: "hubspot".into(),
        backoff: Duration::from_millis(10),
    };
    let change = ViewChange {
        view: "pipeline".into(),
        table: "registration".into(),
        key: format!("registration/{REGISTRATION}"),
        position: "1".into(),
        partner: None,
        row: Some(json!({
            "registration_id": REGISTRATION, "account": "acme.com", "company": "Acme",
            "partner": "Contoso", "partner_id": "0193a000-0000-7000-8000-aaaaaaaaaaaa",
            "product_line": "analytics", "motion": "reseller", "stage": "transact",
            "status": "approved", "protection": "protected",
            "estimated_amount": { "amount_minor": 4_200_000, "currency": "USD" },
            "attribution": { "sourcing": null, "influencers": {} }
        })),
    };
    sync.run_once(&mut One(Some(change)), 10)
        .await
        .expect("sync");
    let deal_id = fake.records("deals")[REGISTRATION].0.clone();
    let inbound = Arc::new(HubspotInbound {
        config: CrmConfig::default_mapping().expect("mapping"),
        app_secret: SECRET.to_vec(),
        public_base: PUBLIC.into(),
        client: client(),
        state,
        clock: Arc::new(SystemClock),
        commands: Recorded::default(),
    });
    (fake, inbound, deal_id)
}

fn now_ms() -> String {
    SystemClock.now().timestamp_millis().to_string()
}

async fn deliver(inbound: &HubspotInbound<Recorded>, body: &[u8], timestamp: &str) -> (u16, Value) {
    let signature = webhook::sign(SECRET, "POST", &format!("{PUBLIC}{PATH}"), body, timestamp);
    let (status, answer) = inbound
        .deliver("POST", PATH, Some(&signature), Some(timestamp), body)
        .await;
    (status.as_u16(), answer)
}

async fn processed(inbound: &HubspotInbound<Recorded>) -> Vec<Value> {
    inbound.process_pending().await.expect("processed")
}

fn stage_change(deal_id: &str, stage: &str, occurred: i64) -> Vec<u8> {
    json!([{ "eventId": 1, "subscriptionId": 2, "portalId": 3, "appId": 4, "occurredAt": occurred,
             "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
             "objectId": deal_id.parse::<u64>().expect("numeric id"),
             "propertyName": "dealstage", "propertyValue": stage, "changeSource": "CRM" }])
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_bad_or_stale_signature_is_refused_and_does_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_fake, inbound, deal_id) = setup(&dir).await;
    let body = stage_change(&deal_id, "closedwon", 1);
    let timestamp = now_ms();
    let wrong = webhook::sign(
        b"another secret",
        "POST",
        &format!("{PUBLIC}{PATH}"),
        &body,
        &timestamp,
    );
    let (status, _) = inbound
        .deliver("POST", PATH, Some(&wrong), Some(&timestamp), &body)
        .await;
    assert_eq!(status.as_u16(), 401);
    let (status, _) = inbound
        .deliver("POST", PATH, None, Some(&timestamp), &body)
        .await;
    assert_eq!(status.as_u16(), 401);
    let stale = (SystemClock.now().timestamp_millis() - 5 * 60 * 1000 - 1000).to_string();
    let (status, answer) = deliver(&inbound, &body, &stale).await;
    assert_eq!(status, 401, "{answer}");
    assert!(inbound.commands.commands().is_empty());
}

#[tokio::test]
async fn a_won_stage_becomes_mark_won_with_the_deal_amount_and_one_key_per_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_fake, inbound, deal_id) = setup(&dir).await;
    let body = stage_change(&deal_id, "closedwon", 1_764_000_000_000);
    let (status, answer) = deliver(&inbound, &body, &now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "received": 1 }));
    // Delivered again (HubSpot retries): the same idempotency key, so the engine gives
    // the first outcome and writes nothing new.
    let (status, _) = deliver(&inbound, &body, &now_ms()).await;
    assert_eq!(status, 200);
    inbound.process_pending().await.expect("processed");
    let commands = inbound.commands.commands();
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0], commands[1]);
    assert_eq!(
        commands[0],
        json!({
            "idempotency_key": format!("hubspot:deal.propertyChange:{deal_id}:1764000000000"),
            "actor": { "kind": "vendor", "role": "rev_ops", "user": "hubspot" },
            "command": { "type": "mark_won", "account": "acme.com", "registration_id": REGISTRATION,
                         "amount": { "amount_minor": 4_200_000, "currency": "USD" },
                         "order_reference": format!("hubspot:deal:{deal_id}") }
        })
    );
    let (status, _) = deliver(
        &inbound,
        &stage_change(&deal_id, "closedlost", 2),
        &now_ms(),
    )
    .await;
    assert_eq!(status, 200);
    inbound.process_pending().await.expect("processed");
    assert_eq!(
        inbound.commands.commands()[2]["command"]["type"],
        json!("mark_lost")
    );
}

#[tokio::test]
async fn bad_input_is_answered_recorded_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fake, inbound, deal_id) = setup(&dir).await;
    // Not JSON.
    let (status, answer) = deliver(&inbound, b"{not json", &now_ms()).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], json!("not_json"));
    // An unknown stage, and a deal that matches no registration.
    deliver(
        &inbound,
        &stage_change(&deal_id, "negotiating_hard", 3),
        &now_ms(),
    )
    .await;
    let answer = processed(&inbound).await;
    assert_eq!(
        answer[0]["error"]["code"],
        json!("unknown_stage"),
        "{answer:?}"
    );
    deliver(&inbound, &stage_change("424242", "closedwon", 4), &now_ms()).await;
    let answer = processed(&inbound).await;
    assert_eq!(
        answer[0]["error"]["code"],
        json!("unknown_record"),
        "{answer:?}"
    );
    // A deal direct sales created without an amount.
    let mut properties = serde_json::Map::new();
    properties.insert("dealname".into(), json!("Globex direct"));
    properties.insert("dealreg_account".into(), json!("globex.com"));
    properties.insert("dealreg_product_line".into(), json!("analytics"));
    let no_amount = fake.create_deal(properties.clone());
    let creation = |id: &str| {
        json!([{ "occurredAt": 5, "subscriptionType": "deal.creation", "objectId": id.parse::<u64>().expect("id") }])
            .to_string()
            .into_bytes()
    };
    deliver(&inbound, &creation(&no_amount), &now_ms()).await;
    let answer = processed(&inbound).await;
    assert_eq!(answer[0]["error"]["code"], json!("no_amount"), "{answer:?}");
    assert!(inbound.commands.commands().is_empty(), "nothing executed");
    let recorded = inbound.state.inbound_errors(10).expect("errors");
    let codes: Vec<&str> = recorded.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(
        codes,
        vec!["no_amount", "unknown_record", "unknown_stage", "not_json"]
    );
    // With an amount it is a direct opportunity.
    properties.insert("amount".into(), json!("99000"));
    properties.insert("deal_currency_code".into(), json!("EUR"));
    let direct = fake.create_deal(properties);
    deliver(&inbound, &creation(&direct), &now_ms()).await;
    let answer = processed(&inbound).await;
    assert_eq!(answer[0]["ok"], json!(true), "{answer:?}");
    let commands = inbound.commands.commands();
    assert_eq!(
        commands[0]["command"],
        json!({ "type": "record_direct_opportunity", "account": "globex.com",
                "opportunity_id": format!("hubspot-{direct}"), "owner": "hubspot",
                "product_line": "analytics", "amount": { "amount_minor": 9_900_000, "currency": "EUR" } })
    );
}

#[tokio::test]
async fn the_endpoint_answers_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_fake, inbound, deal_id) = setup(&dir).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(webhook::serve(listener, Arc::clone(&inbound), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}{PATH}");
    let body = stage_change(&deal_id, "closedwon", 9);
    let timestamp = now_ms();
    let signature = webhook::sign(
        SECRET,
        "POST",
        &format!("{PUBLIC}{PATH}"),
        &body,
        &timestamp,
    );
    let bad = http
        .post(&url)
        .header("X-HubSpot-Signature-v3", "AAAA")
        .header("X-HubSpot-Request-Timestamp", &timestamp)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 401);
    let good = http
        .post(&url)
        .header("X-HubSpot-Signature-v3", &signature)
        .header("X-HubSpot-Request-Timestamp", &timestamp)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(good.status().as_u16(), 200);
    let huge = http
        .post(&url)
        .body(vec![b'x'; webhook::MAX_BODY + 1])
        .send()
        .await
        .expect("send");
    assert_eq!(huge.status().as_u16(), 413);
    // Answered at once, processed by the endpoint's worker afterwards.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inbound.commands.commands().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inbound.commands.commands().len(), 1);
    let _ = stop.send(());
    server.await.expect("server stops");
}

/// Issue 31 item 16: the v3 signature checked against HubSpot's own example, the test
/// vector of HubSpot's official Python client (github.com/HubSpot/hubspot-api-python,
/// tests/spec/utils/test_signature.py, `test_get_signature__v3`): client secret, body,
/// URL, method and timestamp as given there, and the signature it expects. Not built with
/// the adapter's own signing.
#[test]
fn the_signature_of_hubspots_own_example_matches() {
    let secret = b"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    let body = b"{'example_field':'example_value'}";
    let uri = "https://www.example.com/webhook_uri";
    let expected = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=";
    assert!(webhook::signature_matches(
        secret, "POST", uri, body, "15000000", expected
    ));
    assert!(!webhook::signature_matches(
        secret, "POST", uri, body, "15000001", expected
    ));
    assert!(!webhook::signature_matches(
        secret,
        "POST",
        "https://www.example.com/webhook_uri2",
        body,
        "15000000",
        expected
    ));
}

/// Issue 31 item 16: the developer platform's generic subscriptions (`object.*` with
/// `objectTypeId`) are read beside the legacy `deal.*` ones: a deal (`0-3`) moved to a won
/// stage wins, under the same key as the legacy event of that change; another object type
/// is ignored; `object.creation` of a deal direct sales entered is recorded.
#[tokio::test]
async fn the_developer_platforms_event_shapes_are_read_as_deals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fake, inbound, deal_id) = setup(&dir).await;
    let generic = |kind: &str, type_id: &str, id: &str, occurred: i64| {
        json!([{ "eventId": 11, "subscriptionId": 12, "portalId": 3, "appId": 4, "occurredAt": occurred,
                 "subscriptionType": kind, "attemptNumber": 0, "objectTypeId": type_id,
                 "objectId": id.parse::<u64>().expect("numeric id"),
                 "propertyName": "dealstage", "propertyValue": "closedwon", "changeSource": "CRM" }])
        .to_string()
        .into_bytes()
    };
    deliver(
        &inbound,
        &generic("object.propertyChange", "0-3", &deal_id, 1_764_000_000_000),
        &now_ms(),
    )
    .await;
    deliver(
        &inbound,
        &stage_change(&deal_id, "closedwon", 1_764_000_000_000),
        &now_ms(),
    )
    .await;
    deliver(
        &inbound,
        &generic("object.propertyChange", "0-1", &deal_id, 1_764_000_000_001),
        &now_ms(),
    )
    .await;
    let results = processed(&inbound).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[2]["ignored"].is_string(), "{results:?}");
    let commands = inbound.commands.commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[0]["command"]["type"], json!("mark_won"));
    assert_eq!(
        commands[0]["idempotency_key"],
        json!(format!(
            "hubspot:deal.propertyChange:{deal_id}:1764000000000"
        ))
    );
    assert_eq!(
        commands[0], commands[1],
        "one change, one key, either shape"
    );
    let mut properties = serde_json::Map::new();
    properties.insert("dealname".into(), json!("Initech direct"));
    properties.insert("dealreg_account".into(), json!("initech.com"));
    properties.insert("dealreg_product_line".into(), json!("analytics"));
    properties.insert("amount".into(), json!("5000"));
    properties.insert("deal_currency_code".into(), json!("USD"));
    let direct = fake.create_deal(properties);
    deliver(
        &inbound,
        &generic("object.creation", "0-3", &direct, 1_764_000_000_002),
        &now_ms(),
    )
    .await;
    let results = processed(&inbound).await;
    assert_eq!(results[0]["ok"], json!(true), "{results:?}");
    assert_eq!(
        inbound.commands.commands()[2]["command"]["type"],
        json!("record_direct_opportunity")
    );
}

/// Issue 31 item 16: a delivery is answered at once (its events kept in the state file)
/// and processed afterwards: a batch of 100 won deals is answered before any deal is
/// read from HubSpot or any command executed; an event whose deal cannot be read stays
/// kept and is processed on a later call, once.
#[tokio::test]
async fn a_delivery_is_answered_at_once_and_processed_from_the_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (fake, inbound, deal_id) = setup(&dir).await;
    let events: Vec<Value> = (0..100)
        .map(|i| {
            json!({ "eventId": i, "subscriptionId": 2, "portalId": 3, "appId": 4,
                    "occurredAt": 1_764_000_000_000_i64 + i,
                    "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
                    "objectId": deal_id.parse::<u64>().expect("numeric id"),
                    "propertyName": "dealstage", "propertyValue": "closedwon", "changeSource": "CRM" })
        })
        .collect();
    let body = Value::Array(events).to_string().into_bytes();
    let reads = |fake: &FakeCrm| {
        fake.log()
            .iter()
            .filter(|l| l.method == "GET" && l.path.starts_with("/crm/v3/objects/"))
            .count()
    };
    let (status, answer) = deliver(&inbound, &body, &now_ms()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "received": 100 }));
    assert!(
        inbound.commands.commands().is_empty(),
        "nothing executed yet"
    );
    assert_eq!(reads(&fake), 0, "no deal read before the answer");
    let results = processed(&inbound).await;
    assert_eq!(results.len(), 100);
    assert_eq!(inbound.commands.commands().len(), 100);
    assert!(inbound
        .state
        .pending_events("hubspot", 10)
        .expect("pending")
        .is_empty());

    // HubSpot cannot be asked (every request throttled): the event stays.
    fake.hubspot_window(0, Duration::from_millis(100));
    deliver(
        &inbound,
        &stage_change(&deal_id, "closedwon", 1_764_000_999_999),
        &now_ms(),
    )
    .await;
    assert!(inbound.process_pending().await.is_err());
    assert_eq!(
        inbound
            .state
            .pending_events("hubspot", 10)
            .expect("pending")
            .len(),
        1
    );
    fake.hubspot_window(100, Duration::from_secs(10));
    let results = processed(&inbound).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(inbound.commands.commands().len(), 101);
    assert!(processed(&inbound).await.is_empty(), "processed once");
}
