//! The CRM adapters end to end: `dealreg crm ...` on the demo's store against the local
//! CRM fakes (adapters/crm-fake), as an operator runs them.

mod nats_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dealreg_crm::mapping::DEFAULT_MAPPING;
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET, HUBSPOT_TOKEN};
use serde_json::{json, Value};
use support::demo_store;

const APP_SECRET: &str = "hubspot-app-secret";

/// The default mapping with the CRMs' addresses pointed at `fake`.
fn config(dir: &Path, fake: &FakeCrm) -> std::path::PathBuf {
    let text = DEFAULT_MAPPING
        .replace(
            "base_url = \"https://api.hubapi.com\"",
            &format!("base_url = \"{}\"", fake.url()),
        )
        .replace(
            "token_url = \"https://login.salesforce.com/services/oauth2/token\"",
            &format!("token_url = \"{}\"", fake.token_url()),
        );
    let path = dir.join("crm.toml");
    std::fs::write(&path, text).expect("write crm.toml");
    path
}

fn crm(store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dealreg"));
    command
        .arg("--store")
        .arg(store)
        .arg("crm")
        .args(args)
        .env("DEALREG_SALESFORCE_CLIENT_ID", CLIENT_ID)
        .env("DEALREG_SALESFORCE_CLIENT_SECRET", CLIENT_SECRET)
        .env("DEALREG_HUBSPOT_TOKEN", HUBSPOT_TOKEN)
        .env("DEALREG_HUBSPOT_APP_SECRET", APP_SECRET);
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("run dealreg crm")
}

fn view(store: &Path, args: &[&str]) -> Value {
    let out = support::dealreg(store, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON view")
}

/// Every registration of the vendor's pipeline view, by id.
fn registrations(store: &Path) -> BTreeMap<String, Value> {
    let grouped = view(store, &["view", "pipeline", "--vendor", "--json"]);
    let mut rows = BTreeMap::new();
    for stages in grouped.as_object().expect("by motion").values() {
        for list in stages.as_object().expect("by stage").values() {
            for row in list.as_array().expect("rows") {
                let id = row["registration_id"].as_str().expect("id").to_string();
                rows.insert(id, row.clone());
            }
        }
    }
    rows
}

/// A protected registration with its attribution set: one a CRM may close as won.
fn protected_with_attribution(rows: &BTreeMap<String, Value>) -> (&String, &Value) {
    rows.iter()
        .find(|(_, r)| {
            r["status"] == json!("protected")
                && (r["attribution"]["sourcing"].is_string()
                    || r["attribution"]["influencers"]
                        .as_object()
                        .is_some_and(|i| !i.is_empty()))
        })
        .expect("a protected registration with attribution in the demo")
}

fn decimal(amount: &Value) -> Value {
    let minor = amount["amount_minor"].as_i64().expect("minor units");
    Value::String(dealreg_crm::mapping::decimal(minor.into(), 2))
}

/// The CRM holds one record per registration, conflict flag and balance, with the
/// views' values.
fn assert_mirrors_views(fake: &FakeCrm, store: &Path) {
    let rows = registrations(store);
    let deals = fake.records("deals");
    assert_eq!(deals.len(), rows.len(), "one deal per registration");
    for (id, row) in &rows {
        let (_, deal) = &deals[id];
        assert_eq!(deal["dealreg_status"], row["status"], "{id}");
        assert_eq!(deal["dealreg_stage"], row["stage"], "{id}");
        assert_eq!(deal["dealreg_motion"], row["motion"], "{id}");
        assert_eq!(deal["dealreg_protection"], row["protection"], "{id}");
        assert_eq!(deal["dealreg_account"], row["account"], "{id}");
        assert_eq!(deal["amount"], decimal(&row["estimated_amount"]), "{id}");
        // HubSpot has no null: an empty value is "" (issue 31 item 11).
        let won = if row["won_amount"].is_null() {
            json!("")
        } else {
            decimal(&row["won_amount"])
        };
        assert_eq!(deal["dealreg_won_amount"], won, "{id}");
        let sourcing = match &row["attribution"]["sourcing"] {
            Value::Null => json!(""),
            other => other.clone(),
        };
        assert_eq!(deal["dealreg_sourcing_partner"], sourcing, "{id}");
        assert_eq!(
            deal["dealreg_influencers"],
            Value::String(row["attribution"]["influencers"].to_string()),
            "{id}"
        );
        let expires = match &row["protection_expires_at"] {
            Value::Null => json!(""),
            other => other.clone(),
        };
        assert_eq!(deal["dealreg_protection_expires_at"], expires, "{id}");
    }
    // Each deal is associated with its customer's company, one company per account.
    let companies = fake.records("companies");
    let accounts: std::collections::BTreeSet<&str> = rows
        .values()
        .filter_map(|r| r["account"].as_str())
        .collect();
    let account_companies = companies
        .values()
        .filter(|(_, c)| c.get("dealreg_account").is_some())
        .count();
    assert_eq!(account_companies, accounts.len(), "one company per account");
    let associations = fake.associations();
    for (id, row) in &rows {
        let (deal_id, _) = &deals[id];
        let (company_id, company) = &companies[row["account"].as_str().expect("account")];
        assert_eq!(company["domain"], row["account"]);
        assert!(
            associations.contains(&(
                "deals".into(),
                deal_id.clone(),
                "companies".into(),
                company_id.clone()
            )),
            "deal {deal_id} of {id} is linked to its company"
        );
    }
    let conflicts = view(store, &["view", "conflicts", "--json"]);
    let flags: usize = conflicts["conflicts"]
        .as_object()
        .expect("by account")
        .values()
        .map(|f| f.as_array().map_or(0, Vec::len))
        .sum();
    // No custom objects by default (issue 31 item 12): each customer's company carries
    // its conflict flags, each partner's company its balances.
    assert!(fake.records("dealreg_conflicts").is_empty());
    assert_eq!(
        hubspot_flags(fake),
        flags,
        "every conflict flag on its company"
    );
    for (account, list) in conflicts["conflicts"].as_object().expect("by account") {
        let (_, company) = &companies[account];
        let text = company["dealreg_conflicts"]
            .as_str()
            .expect("conflicts text");
        let list = list.as_array().expect("flags");
        for flag in list {
            let id = flag["conflict_id"].as_str().expect("id");
            assert!(text.contains(id), "{account}: {id} in {text}");
        }
        let open = list.iter().filter(|f| f["resolved_at"].is_null()).count();
        assert_eq!(
            company["dealreg_open_conflicts"],
            json!(open.to_string()),
            "{account}"
        );
    }
    let ledger = view(store, &["view", "ledger", "--json"]);
    assert!(fake.records("dealreg_commission_balances").is_empty());
    for (partner, by_currency) in ledger["balances"].as_object().expect("balances") {
        let (_, company) = &companies[partner];
        let text = company["dealreg_commission_balances"]
            .as_str()
            .expect("balances text");
        for (currency, minor) in by_currency.as_object().expect("by currency") {
            let minor = minor.as_i64().expect("minor units");
            let amount = dealreg_crm::mapping::decimal(minor.into(), 2);
            assert!(
                text.contains(&format!("{currency} {amount}")),
                "{partner}: {currency} {amount} in {text}"
            );
        }
    }
}

/// The conflict flags the fake HubSpot's companies carry.
fn hubspot_flags(fake: &FakeCrm) -> usize {
    fake.records("companies")
        .values()
        .filter_map(|(_, c)| c.get("dealreg_conflicts").and_then(Value::as_str))
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .map(|v| match v {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_lifecycle_appears_in_each_fake_crm_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    // HubSpot: deals, conflicts and balances with the views' values.
    let hubspot = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &hubspot);
    let state = dir.path().join("hubspot.crm.db");
    let args = [
        "sync",
        "--target",
        "hubspot",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let out = run(crm(&store, &args));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_mirrors_views(&hubspot, &store);
    let won: Vec<_> = hubspot
        .records("deals")
        .into_values()
        .filter(|(_, d)| d["dealreg_status"] == json!("won"))
        .collect();
    assert!(!won.is_empty(), "the demo wins deals");
    assert!(won
        .iter()
        .any(|(_, d)| d["dealreg_sourcing_partner"].is_string()
            && d["dealreg_influencers"] != json!("{}")));
    // Run again: nothing new is written (the pre-flight check reads the properties and
    // the board, nothing else).
    let writes = |fake: &FakeCrm| fake.log().iter().filter(|l| l.method != "GET").count();
    let requests = writes(&hubspot);
    let again = run(crm(&store, &args));
    assert!(again.status.success());
    assert_eq!(
        writes(&hubspot),
        requests,
        "an unchanged view sends nothing"
    );

    // Salesforce: Leads by default, first-sync fields set.
    let salesforce = FakeCrm::start(Kind::Salesforce).await;
    let cfg = config(dir.path(), &salesforce);
    let state = dir.path().join("salesforce.crm.db");
    let out = run(crm(
        &store,
        &[
            "sync",
            "--target",
            "salesforce",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--state",
            state.to_str().expect("utf-8"),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leads = salesforce.records("Lead");
    let rows = registrations(&store);
    assert_eq!(leads.len(), rows.len());
    for (id, row) in &rows {
        let (_, lead) = &leads[id];
        assert_eq!(lead["LeadSource"], json!("Partner"));
        assert_eq!(lead["Company"], row["company"]);
        assert_eq!(lead["Dealreg_Status__c"], row["status"]);
        let minor = row["estimated_amount"]["amount_minor"]
            .as_i64()
            .expect("minor");
        assert_eq!(
            lead["Dealreg_Estimated_Amount__c"].as_f64(),
            Some(minor as f64 / 100.0)
        );
    }
    assert_eq!(
        salesforce.records("Dealreg_Conflict__c").len(),
        hubspot_flags(&hubspot)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_killed_mid_batch_resumes_without_a_gap_or_a_second_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let args = [
        "sync",
        "--target",
        "hubspot",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
        "--batch",
        "5",
    ];
    // Each request is answered slowly, after its records are written: the kill lands
    // between a write and its acknowledgement.
    fake.stall(Duration::from_millis(400));
    let mut child = crm(&store, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sync");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.log().iter().filter(|l| l.records > 0).count() < 2 {
        assert!(Instant::now() < deadline, "the sync never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to save anything.
    child.kill().expect("kill");
    child.wait().expect("reap");
    let partial = fake.records("deals").len();
    assert!(
        partial < registrations(&store).len(),
        "killed before the end ({partial})"
    );
    fake.stall(Duration::ZERO);
    let out = run(crm(&store, &args));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_mirrors_views(&fake, &store);
    let records = fake.records("deals").len()
        + fake.records("companies").len()
        + fake.records("dealreg_conflicts").len()
        + fake.records("dealreg_commission_balances").len();
    assert_eq!(
        fake.creations(),
        records as u64,
        "no record was created twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_crm_refuses_is_a_dead_letter_shown_by_status_and_retried() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let rows = registrations(&store);
    let refused = rows.keys().next().expect("a registration").clone();
    fake.reject(&refused);
    let common = [
        "--target",
        "hubspot",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let sync = run(crm(&store, &[&["sync"][..], &common[..]].concat()));
    assert_eq!(sync.status.code(), Some(2), "dead letters make exit code 2");
    assert_eq!(
        fake.records("deals").len(),
        rows.len() - 1,
        "the others flowed"
    );
    let status = run(crm(&store, &[&["status"][..], &common[..]].concat()));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("dead letters: 1"), "{text}");
    assert!(
        text.contains(&refused) && text.contains("VALIDATION_ERROR"),
        "{text}"
    );
    fake.accept_all();
    let retry = run(crm(&store, &[&["retry"][..], &common[..]].concat()));
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stdout)
    );
    assert_eq!(fake.records("deals").len(), rows.len());
    let status = run(crm(&store, &[&["status"][..], &common[..]].concat()));
    assert!(String::from_utf8_lossy(&status.stdout).contains("dead letters: 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_wins_a_deal_once_and_a_forged_one_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let common = [
        "--target",
        "hubspot",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let sync = run(crm(&store, &[&["sync"][..], &common[..]].concat()));
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    // A protected registration with its attribution set: the one HubSpot will close.
    let rows = registrations(&store);
    let (id, row) = protected_with_attribution(&rows);
    let deal_id = fake.records("deals")[id].0.clone();
    let public = "https://hooks.example.com";
    let mut server = crm(
        &store,
        &[
            &["webhook"][..],
            &common[..],
            &["--listen", "127.0.0.1:0", "--public-url", public][..],
        ]
        .concat(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the webhook endpoint");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = server.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the listening line");
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on ADDR")
        .to_string();
    let body = json!([{ "eventId": 7, "subscriptionId": 1, "portalId": 1, "appId": 1, "occurredAt": 1_764_000_000_000_i64,
                        "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
                        "objectId": deal_id.parse::<u64>().expect("id"), "propertyName": "dealstage",
                        "propertyValue": "closedwon", "changeSource": "CRM" }])
    .to_string();
    let path = "/hubspot";
    let http = reqwest::Client::new();
    let post = |signature: String, timestamp: String| {
        http.post(format!("http://{addr}{path}"))
            .header("X-HubSpot-Signature-v3", signature)
            .header("X-HubSpot-Request-Timestamp", timestamp)
            .body(body.clone())
            .send()
    };
    let now = || chrono::Utc::now().timestamp_millis().to_string();
    let events_before = support::dealreg(&store, &["events"]).stdout.len();
    let ts = now();
    let forged = dealreg_crm::webhook::sign(
        b"not the secret",
        "POST",
        &format!("{public}{path}"),
        body.as_bytes(),
        &ts,
    );
    let answer = post(forged, ts).await.expect("deliver");
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(
        support::dealreg(&store, &["events"]).stdout.len(),
        events_before,
        "a forged delivery writes nothing"
    );
    for _ in 0..2 {
        let ts = now();
        let signature = dealreg_crm::webhook::sign(
            APP_SECRET.as_bytes(),
            "POST",
            &format!("{public}{path}"),
            body.as_bytes(),
            &ts,
        );
        let answer = post(signature, ts).await.expect("deliver");
        assert_eq!(answer.status().as_u16(), 200);
        let answer: Value = answer.json().await.expect("json");
        // Answered at once; the endpoint processes what it kept afterwards.
        assert_eq!(answer["received"], json!(1), "{answer}");
    }
    let kept = dealreg_crm::SyncState::open(&state).expect("the state file");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kept
        .pending_events("hubspot", 10)
        .expect("pending")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the deliveries were not processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let after = registrations(&store);
    assert_eq!(after[id]["status"], json!("won"));
    assert_eq!(
        after[id]["won_amount"], row["estimated_amount"],
        "won at the deal's amount"
    );
    let events = String::from_utf8_lossy(&support::dealreg(&store, &["events"]).stdout).to_string();
    let wins = events
        .lines()
        .filter(|l| l.contains(id.as_str()) && l.contains("\"event_type\":\"deal_won\""))
        .count();
    assert_eq!(wins, 1, "delivered twice, won once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_reads_the_feed_that_serve_publishes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let nats = nats_support::NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let mut serve = nats_support::Serve::start(
        &store,
        &nats.url,
        &[],
        &[],
        dir.path().join("serve.log"),
        &client,
    )
    .await;
    // The demo's row changes wait in the outbox; serve publishes them to DEALREG_FEED.
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    loop {
        let count = match js.get_stream("DEALREG_FEED").await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if count != last.0 {
            last = (count, Instant::now());
        } else if count > 0 && last.1.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not publish the feed: {}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serve.terminate().success());
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let args = [
        "sync",
        "--target",
        "hubspot",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
        "--feed",
        nats.url.as_str(),
        "--batch",
        "100",
    ];
    let out = run(crm(&store, &args));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_mirrors_views(&fake, &store);
    // The cursor is the stream sequence: a second run reads nothing and sends nothing
    // (but the pre-flight check's reads of the properties and the board).
    let writes = |fake: &FakeCrm| fake.log().iter().filter(|l| l.method != "GET").count();
    let requests = writes(&fake);
    let again = run(crm(&store, &args));
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("synced: 0 changes"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(writes(&fake), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_opportunity_closed_won_is_polled_into_one_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let common = [
        "--target",
        "salesforce",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let rows = registrations(&store);
    let (id, row) = protected_with_attribution(&rows);
    let minor = row["estimated_amount"]["amount_minor"]
        .as_i64()
        .expect("minor units");
    let opportunity = |stamp: &str| {
        json!({ "IsClosed": true, "IsWon": true, "Amount": dealreg_crm::mapping::decimal(minor.into(), 2),
                "SystemModstamp": stamp, "OwnerId": "005X", "Dealreg_Registration_Id__c": id,
                "Dealreg_Account__c": row["account"], "Dealreg_Product_Line__c": row["product_line"] })
        .as_object()
        .cloned()
        .expect("an object")
    };
    fake.put_opportunity("006WON", opportunity("2026-12-01T10:00:00.000+0000"));
    let out = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 commands (0 refused)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Polled again (the record is at the watermark): the same key, no second win.
    let again = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let after = registrations(&store);
    assert_eq!(after[id]["status"], json!("won"));
    assert_eq!(after[id]["won_amount"], row["estimated_amount"]);
    let events = String::from_utf8_lossy(&support::dealreg(&store, &["events"]).stdout).to_string();
    let wins = events
        .lines()
        .filter(|l| l.contains(id.as_str()) && l.contains("\"event_type\":\"deal_won\""))
        .count();
    assert_eq!(wins, 1, "polled twice, won once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_crm_in_step_when_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let nats = nats_support::NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let extra = [
        "--crm-target",
        "hubspot",
        "--crm-config",
        cfg.to_str().expect("utf-8"),
        "--crm-state",
        state.to_str().expect("utf-8"),
        "--crm-every",
        "1",
    ];
    let mut serve = nats_support::Serve::start(
        &store,
        &nats.url,
        &extra,
        &[("DEALREG_HUBSPOT_TOKEN", HUBSPOT_TOKEN)],
        dir.path().join("serve.log"),
        &client,
    )
    .await;
    let expected = registrations(&store).len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.records("deals").len() < expected {
        assert!(
            Instant::now() < deadline,
            "serve did not sync the CRM: {}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the last round finish (conflicts and balances come in the same feed).
    let mut last = fake.log().len();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = fake.log().len();
        if now == last {
            break;
        }
        last = now;
    }
    assert!(serve.terminate().success());
    assert_mirrors_views(&fake, &store);
}

/// Issue 31 item 3 (Salesforce): an empty org is refused by `crm check` and `crm sync`
/// (naming the fields, nothing sent); `crm setup` shows the steps, `--apply` takes them
/// through the Tooling API and a permission set, a second `--apply` creates nothing, and
/// then the check passes and the demo syncs with no dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_salesforce_org_is_set_up_checked_and_synced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Salesforce).await;
    fake.salesforce_empty_org();
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let common = [
        "--target",
        "salesforce",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let check = run(crm(&store, &[&["check"][..], &common[..]].concat()));
    assert_eq!(check.status.code(), Some(2), "{}", output_text(&check));
    for named in [
        "missing field Lead.Dealreg_Registration_Id__c",
        "missing field Opportunity.Dealreg_Status__c",
        "missing object Dealreg_Conflict__c",
    ] {
        assert!(
            output_text(&check).contains(named),
            "{named}: {}",
            output_text(&check)
        );
    }
    let sync = run(crm(&store, &[&["sync"][..], &common[..]].concat()));
    assert_eq!(sync.status.code(), Some(2), "{}", output_text(&sync));
    assert!(
        !fake.log().iter().any(|l| l.path.contains("/composite/")),
        "a refused check sends no record"
    );
    assert!(fake.records("Lead").is_empty());

    let dry = run(crm(&store, &[&["setup"][..], &common[..]].concat()));
    assert!(dry.status.success(), "{}", output_text(&dry));
    assert!(
        output_text(&dry).contains(
            "create the field Lead.Dealreg_Registration_Id__c: Text(255), External ID, Unique"
        ),
        "{}",
        output_text(&dry)
    );
    assert!(
        output_text(&dry).contains("Map Lead Fields"),
        "{}",
        output_text(&dry)
    );
    assert!(
        output_text(&dry).contains("FieldPermissions"),
        "{}",
        output_text(&dry)
    );
    assert!(
        fake.salesforce_tooling_created().is_empty(),
        "a dry run creates nothing"
    );

    let apply = run(crm(
        &store,
        &[&["setup", "--apply"][..], &common[..]].concat(),
    ));
    assert!(apply.status.success(), "{}", output_text(&apply));
    let created = fake.salesforce_tooling_created();
    assert!(created.contains(&"Lead.Dealreg_Registration_Id__c".to_string()));
    assert!(created.contains(&"Dealreg_Conflict__c".to_string()));
    let again = run(crm(
        &store,
        &[&["setup", "--apply"][..], &common[..]].concat(),
    ));
    assert!(again.status.success(), "{}", output_text(&again));
    assert_eq!(
        fake.salesforce_tooling_created(),
        created,
        "a second --apply creates nothing: {}",
        output_text(&again)
    );

    let check = run(crm(&store, &[&["check"][..], &common[..]].concat()));
    assert!(check.status.success(), "{}", output_text(&check));
    let sync = run(crm(&store, &[&["sync"][..], &common[..]].concat()));
    assert!(sync.status.success(), "{}", output_text(&sync));
    assert!(
        output_text(&sync).contains(" 0 dead-lettered"),
        "{}",
        output_text(&sync)
    );
    assert_eq!(fake.records("Lead").len(), registrations(&store).len());
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Issue 31 item 3 (HubSpot): an empty portal (no dealreg group, properties or board) is
/// refused by `crm check` and `crm sync` (naming what is missing, nothing sent); `crm
/// setup` shows the plan, `--apply` creates the group, the properties (the idProperty
/// with unique values) and the board "Partner registrations", and prints the ids HubSpot
/// gave it for crm.toml; a second `--apply` creates nothing; with those ids the check
/// passes and the demo syncs with no dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_hubspot_portal_is_set_up_checked_and_synced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start_hubspot_empty_portal().await;
    let cfg = config(dir.path(), &fake);
    let state = dir.path().join("crm.db");
    let args = |cfg: &Path, first: &[&'static str]| -> Vec<String> {
        first
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--target".into(),
                "hubspot".into(),
                "--config".into(),
                cfg.to_str().expect("utf-8").to_string(),
                "--state".into(),
                state.to_str().expect("utf-8").to_string(),
            ])
            .collect()
    };
    let go = |cfg: &Path, first: &[&'static str]| {
        let args = args(cfg, first);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(crm(&store, &refs))
    };
    let check = go(&cfg, &["check"]);
    assert_eq!(check.status.code(), Some(2), "{}", output_text(&check));
    for named in [
        "missing property deals.dealreg_registration_id (text, external id, unique)",
        "missing property deals.dealreg_status",
        "missing property companies.dealreg_account",
        "missing board: no deal pipeline partner_registrations",
    ] {
        assert!(
            output_text(&check).contains(named),
            "{named}: {}",
            output_text(&check)
        );
    }
    let sync = go(&cfg, &["sync"]);
    assert_eq!(sync.status.code(), Some(2), "{}", output_text(&sync));
    assert!(
        !fake.log().iter().any(|l| l.path.contains("/batch/")),
        "a refused check sends no record"
    );

    let dry = go(&cfg, &["setup"]);
    assert!(dry.status.success(), "{}", output_text(&dry));
    for shown in [
        "create the property group dealreg on deals",
        "create the property deals.dealreg_registration_id: type string, fieldType text, groupName dealreg, hasUniqueValue: true",
        "create the deal pipeline \"Partner registrations\"",
    ] {
        assert!(output_text(&dry).contains(shown), "{shown}: {}", output_text(&dry));
    }
    assert!(
        fake.hubspot_setup_created().is_empty(),
        "a dry run creates nothing"
    );

    let apply = go(&cfg, &["setup", "--apply"]);
    assert!(apply.status.success(), "{}", output_text(&apply));
    let created = fake.hubspot_setup_created();
    for made in [
        "deals group dealreg",
        "deals.dealreg_registration_id",
        "companies.dealreg_account",
        "pipeline Partner registrations",
    ] {
        assert!(created.contains(&made.to_string()), "{made}: {created:?}");
    }
    // The ids HubSpot gave the board, as setup printed them, in the team's crm.toml.
    let out = String::from_utf8_lossy(&apply.stdout).to_string();
    let block = out
        .split("# --- crm.toml, [hubspot] section: the board's ids ---\n")
        .nth(1)
        .and_then(|rest| rest.split("# --- end ---").next())
        .unwrap_or_else(|| panic!("the board's ids: {out}"))
        .to_string();
    let text = std::fs::read_to_string(&cfg)
        .expect("crm.toml")
        .replace("pipeline = \"partner_registrations\"", block.trim_end());
    let set_up = dir.path().join("crm-set-up.toml");
    std::fs::write(&set_up, text).expect("write crm.toml");

    let again = go(&set_up, &["setup", "--apply"]);
    assert!(again.status.success(), "{}", output_text(&again));
    assert_eq!(
        fake.hubspot_setup_created(),
        created,
        "a second --apply creates nothing: {}",
        output_text(&again)
    );
    let check = go(&set_up, &["check"]);
    assert!(check.status.success(), "{}", output_text(&check));
    let sync = go(&set_up, &["sync"]);
    assert!(sync.status.success(), "{}", output_text(&sync));
    assert!(
        output_text(&sync).contains(" 0 dead-lettered"),
        "{}",
        output_text(&sync)
    );
    assert_eq!(fake.records("deals").len(), registrations(&store).len());
}

/// Issue 31 item 3 (HubSpot): `crm check` names a mistyped property, an idProperty
/// without unique values, a read-only property and a stage the board lacks; exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_portal_with_wrong_properties_is_refused_by_the_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let cfg = config(dir.path(), &fake);
    let check = || {
        run(crm(
            &store,
            &[
                "check",
                "--target",
                "hubspot",
                "--config",
                cfg.to_str().expect("utf-8"),
            ],
        ))
    };
    let ok = check();
    assert!(
        ok.status.success(),
        "the default portal passes: {}",
        output_text(&ok)
    );
    fake.hubspot_define_property("deals", "dealreg_registration_id", "string", false);
    fake.hubspot_define_property("deals", "dealreg_status", "number", false);
    fake.hubspot_read_only("deals", "dealreg_stage");
    fake.hubspot_remove_stage("partner_registrations", "dealreg_won");
    let refused = check();
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    for named in [
        "mistyped property deals.dealreg_registration_id: it is string (text), without unique values",
        "mistyped property deals.dealreg_status: it is number (number)",
        "property deals.dealreg_stage is read-only",
        "missing stage: dealreg_won ([hubspot.stages] won)",
    ] {
        assert!(output_text(&refused).contains(named), "{named}: {}", output_text(&refused));
    }
}

/// Issue 31 item 7: a channel manager approves in Salesforce (Dealreg_Decision__c on the
/// registration's Lead); `crm poll` sends approve_registration as the role the user is
/// mapped to, and the engine's refusal of a second decision is written back to its
/// record (Dealreg_Decision_Error__c); a user with no role is refused and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_made_in_salesforce_reaches_the_engine_and_a_refusal_comes_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = demo_store(&dir);
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let cfg = config(dir.path(), &fake);
    let mut text = std::fs::read_to_string(&cfg).expect("crm.toml");
    text.push_str("\n[salesforce.approvers]\n\"005CHANNEL\" = \"channel_manager\"\n");
    std::fs::write(&cfg, text).expect("write crm.toml");
    let state = dir.path().join("crm.db");
    let common = [
        "--target",
        "salesforce",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let sync = run(crm(&store, &[&["sync"][..], &common[..]].concat()));
    assert!(sync.status.success(), "{}", output_text(&sync));
    let rows = registrations(&store);
    let (pending, _) = rows
        .iter()
        .find(|(_, r)| r["status"] == json!("pending"))
        .expect("a pending registration in the demo");
    let (decided, _) = rows
        .iter()
        .find(|(_, r)| r["status"] == json!("declined"))
        .expect("a declined registration in the demo");
    // A first poll reads what the sync wrote (no decision): nothing is sent.
    let poll = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert!(poll.status.success(), "{}", output_text(&poll));

    assert!(fake.salesforce_decide("Lead", pending, "Approve", "fits the program", "005CHANNEL"));
    assert!(fake.salesforce_decide("Lead", decided, "Approve", "reconsidered", "005CHANNEL"));
    let poll = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert_eq!(poll.status.code(), Some(2), "{}", output_text(&poll));
    assert!(
        output_text(&poll).contains("decisions: 2 sent (1 refused"),
        "{}",
        output_text(&poll)
    );
    let after = registrations(&store);
    assert_eq!(
        after[pending]["status"],
        json!("protected"),
        "approved from Salesforce"
    );
    let events = String::from_utf8_lossy(&support::dealreg(&store, &["events"]).stdout).to_string();
    assert!(
        events.lines().any(|l| l.contains(pending.as_str())
            && l.contains("registration_approved")
            && l.contains("salesforce:005CHANNEL")),
        "the approval is the mapped user's"
    );
    let leads = fake.records("Lead");
    assert!(leads[pending].1["Dealreg_Decision_Error__c"].is_null());
    let error = leads[decided].1["Dealreg_Decision_Error__c"]
        .as_str()
        .expect("the refusal written back")
        .to_string();
    assert!(!error.is_empty());

    // Polled again: the adapter's own write changed the records; nothing is sent twice.
    let again = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert!(again.status.success(), "{}", output_text(&again));

    // A user with no role: refused, recorded, written back; never guessed.
    let (other, _) = rows
        .iter()
        .find(|(id, r)| r["status"] == json!("declined") && *id != decided)
        .expect("another declined registration");
    assert!(fake.salesforce_decide("Lead", other, "Decline", "no", "005STRANGER"));
    let poll = run(crm(&store, &[&["poll"][..], &common[..]].concat()));
    assert_eq!(poll.status.code(), Some(2), "{}", output_text(&poll));
    let error = fake.records("Lead")[other].1["Dealreg_Decision_Error__c"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("005STRANGER")),
        "{error}"
    );
    let status = run(crm(&store, &[&["status"][..], &common[..]].concat()));
    assert!(
        output_text(&status).contains("unmapped_user"),
        "{}",
        output_text(&status)
    );
}
