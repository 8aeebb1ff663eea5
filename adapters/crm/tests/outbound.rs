//! The outbound sync against the local CRM fakes: batching, per-record failures and the
//! dead-letter list, token expiry, throttling, API limits, restarts.

mod common;
use common::{registration_change, registration_id, state, ListSource};

use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::SystemClock;
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::sync::Outbound;
use dealreg_crm::{CrmClient, CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET, HUBSPOT_TOKEN};
use serde_json::{json, Value};

fn registration(n: usize, status: &str) -> ViewChange {
    registration_change(
        n,
        status,
        json!({ "last_quoted_discount_percent": 10, "internal_notes": ["margin is thin"] }),
    )
}

fn outbound<C: CrmClient>(target: Target, client: C, state: Arc<SyncState>) -> Outbound<C> {
    Outbound {
        config: CrmConfig::default_mapping().expect("the default mapping"),
        target,
        client,
        state,
        clock: Arc::new(SystemClock),
        adapter: format!("{}-test", target.name()),
        backoff: Duration::from_millis(20),
    }
}

fn salesforce(fake: &FakeCrm) -> SalesforceClient {
    let settings = SalesforceSettings {
        token_url: fake.token_url(),
        ..SalesforceSettings::default()
    };
    SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into()).expect("a client")
}

#[tokio::test]
async fn salesforce_batches_of_200_with_a_rejected_record_dead_lettered_and_retried() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    fake.reject(&registration_id(7));
    let sync = outbound(Target::Salesforce, salesforce(&fake), Arc::clone(&state));
    let mut source = ListSource((0..450).map(|n| registration(n, "submitted")).collect());
    let report = sync.run_once(&mut source, 1000).await.expect("sync");
    // 450 Leads and the partner's Account (issue 31 item 6).
    assert_eq!(report.records, 451);
    assert_eq!(report.written, 450);
    assert_eq!(report.dead_lettered, 1);
    let leads = fake.records("Lead");
    assert_eq!(leads.len(), 449);
    let upserts: Vec<usize> = fake
        .log()
        .iter()
        .filter(|l| l.method == "PATCH")
        .map(|l| l.records)
        .collect();
    assert_eq!(
        upserts,
        vec![1, 200, 200, 50],
        "the partner's Account first, then Collections of at most 200 records"
    );
    // The fields as mapped: amounts exact, first-sync fields on creation.
    let (_, lead) = &leads[&registration_id(3)];
    assert_eq!(lead["Dealreg_Estimated_Amount__c"], json!(12500.50));
    assert_eq!(lead["Dealreg_Currency__c"], json!("EUR"));
    assert_eq!(lead["LeadSource"], json!("Partner"));
    assert_eq!(lead["Company"], json!("Customer 3"));
    assert_eq!(lead["Dealreg_Status__c"], json!("submitted"));
    // The dead letter says what the CRM said.
    let letters = state.dead_letters("salesforce").expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].external_id, registration_id(7));
    assert_eq!(letters[0].code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
    // Fixed in the CRM, retried: one more record, no duplicates, the list is empty.
    fake.accept_all();
    let retried = sync.retry_dead_letters().await.expect("retry");
    assert_eq!(retried.written, 1);
    assert_eq!(fake.records("Lead").len(), 450);
    assert!(state
        .dead_letters("salesforce")
        .expect("letters")
        .is_empty());
}

#[tokio::test]
async fn salesforce_fetches_a_new_token_on_401_and_loses_nothing() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sync = outbound(Target::Salesforce, salesforce(&fake), state(&dir));
    let mut source = ListSource((0..10).map(|n| registration(n, "submitted")).collect());
    sync.run_once(&mut source, 5).await.expect("sync");
    assert_eq!(fake.tokens_issued(), 1);
    fake.expire_token();
    source
        .0
        .extend((10..20).map(|n| registration(n, "submitted")));
    let report = sync
        .run_once(&mut source, 5)
        .await
        .expect("sync after expiry");
    assert_eq!(report.written, 10);
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(fake.records("Lead").len(), 20);
    assert!(fake.log().iter().any(|l| l.status == 401));
}

#[tokio::test]
async fn salesforce_spaces_requests_out_when_api_usage_is_high() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = salesforce(&fake);
    client.limit_pause = Duration::from_millis(600);
    let sync = outbound(Target::Salesforce, client, state(&dir));
    fake.set_usage(14_000, 15_000);
    let mut source = ListSource((0..3).map(|n| registration(n, "submitted")).collect());
    sync.run_once(&mut source, 1).await.expect("sync");
    let patches: Vec<Instant> = fake
        .log()
        .iter()
        .filter(|l| l.method == "PATCH")
        .map(|l| l.at)
        .collect();
    // The partner's Account, then a Lead a request (issue 31 item 6).
    assert_eq!(patches.len(), 4);
    for pair in patches.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]) >= Duration::from_millis(590),
            "above 90% of the daily limit, requests are spaced out"
        );
    }
    assert_eq!(sync.client.api_usage(), Some((14_004, 15_000)));
}

#[tokio::test]
async fn hubspot_waits_out_429_and_sends_nothing_before_retry_after() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into()).expect("client");
    let sync = outbound(Target::Hubspot, client, state(&dir));
    fake.throttle(2, 1);
    let started = Instant::now();
    let mut source = ListSource((0..250).map(|n| registration(n, "submitted")).collect());
    let report = sync.run_once(&mut source, 1000).await.expect("sync");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(report.throttled, 2);
    assert_eq!(fake.early_requests(), 0, "no request before Retry-After");
    let deals = fake.records("deals");
    assert_eq!(deals.len(), 250);
    let batches: Vec<usize> = fake
        .log()
        .iter()
        .filter(|l| l.status == 200 && l.path.ends_with("/deals/batch/upsert"))
        .map(|l| l.records)
        .collect();
    assert_eq!(batches, vec![100, 100, 50]);
    let (_, deal) = &deals[&registration_id(1)];
    assert_eq!(
        deal["amount"],
        json!("12500.50"),
        "HubSpot properties are exact decimal strings"
    );
    assert_eq!(deal["dealreg_registration_id"], json!(registration_id(1)));
}

#[tokio::test]
async fn hubspot_207_writes_the_good_records_and_dead_letters_the_bad_one() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let client = HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into()).expect("client");
    let sync = outbound(Target::Hubspot, client, Arc::clone(&state));
    fake.reject(&registration_id(2));
    let mut source = ListSource((0..5).map(|n| registration(n, "submitted")).collect());
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!((report.written, report.dead_lettered), (4, 1));
    assert!(fake.log().iter().any(|l| l.status == 207));
    let letters = state.dead_letters("hubspot").expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "VALIDATION_ERROR");
    assert!(
        letters[0].message.contains(&registration_id(2)),
        "{}",
        letters[0].message
    );
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor_and_sends_nothing_twice() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = || HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into()).expect("client");
    let changes: Vec<ViewChange> = (0..30).map(|n| registration(n, "submitted")).collect();
    {
        let sync = outbound(Target::Hubspot, client(), state(&dir));
        let mut source = ListSource(changes[..20].to_vec());
        sync.run_once(&mut source, 7).await.expect("first run");
    }
    let deal_requests = || {
        fake.log()
            .iter()
            .filter(|l| l.path.ends_with("/deals/batch/upsert"))
            .count()
    };
    let before = deal_requests();
    // A new process on the same state file: only the 10 new changes are sent.
    let sync = outbound(Target::Hubspot, client(), state(&dir));
    let mut source = ListSource(changes.clone());
    let report = sync.run_once(&mut source, 100).await.expect("second run");
    assert_eq!(report.changes, 10);
    assert_eq!(deal_requests() - before, 1);
    assert_eq!(fake.records("deals").len(), 30);
    // The same changes again from the start (a lost cursor): nothing is written, because
    // every record already holds these fields.
    sync.state.set_cursor(&sync.adapter, "0").expect("cursor");
    let again = sync.run_once(&mut source, 100).await.expect("third run");
    assert_eq!((again.written, again.unchanged), (0, 30));
    // A real change is written, once, to the same record.
    source.0.push(registration(4, "approved"));
    let changed = sync.run_once(&mut source, 100).await.expect("fourth run");
    assert_eq!(changed.written, 1);
    let deals = fake.records("deals");
    assert_eq!(deals.len(), 30);
    assert_eq!(
        deals[&registration_id(4)].1["dealreg_status"],
        json!("approved")
    );
}

#[test]
fn portal_records_are_built_from_the_partner_safe_form_only() {
    let text = r#"
[[object]]
name = "portal_registration"
view = "pipeline"
table = "registration"
portal = true
key = ["/row/registration_id"]
salesforce = { object = "Lead", external_id = "Dealreg_Registration_Id__c" }
[[object.field]]
from = "/row/status"
salesforce = "Dealreg_Status__c"
[[object.field]]
from = "/row/owner"
salesforce = "Dealreg_Owner__c"
"#;
    let config = CrmConfig::parse(text).expect("a portal mapping of partner-safe fields");
    // A vendor change makes no portal record; the partner's form does.
    let vendor = registration(1, "approved");
    assert!(config
        .records(Target::Salesforce, &vendor)
        .expect("map")
        .is_empty());
    let mut partner = vendor.clone();
    partner.partner = Some("0193a000-0000-7000-8000-aaaaaaaaaaaa".into());
    partner.row = Some(
        json!({ "registration_id": registration_id(1), "status": "approved", "owner": "Contoso Resellers" }),
    );
    let records = config.records(Target::Salesforce, &partner).expect("map");
    assert_eq!(records.len(), 1);
    let mut keys: Vec<&String> = records[0].fields.keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["Dealreg_Owner__c", "Dealreg_Status__c"]);
    assert!(!records[0]
        .fields
        .values()
        .any(|v| v == &Value::String("margin is thin".into())));
}
