//! The HubSpot adapter against the strict fake HubSpot (issue 31, HubSpot items): what a
//! real portal refuses, the fake refuses, and the adapter sends what the documentation
//! shows. Each test failed on the adapter as it was before its item.

mod common;
use common::{registration_change, registration_id, state, ListSource};

use std::sync::Arc;
use std::time::Duration;

use dealreg_clock::SystemClock;
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::sync::Outbound;
use dealreg_crm::{CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, HUBSPOT_TOKEN};
use serde_json::{json, Value};

fn registration(n: usize, stage: &str, status: &str) -> ViewChange {
    registration_change(n, status, json!({ "stage": stage }))
}

fn sync(fake: &FakeCrm, state: Arc<SyncState>) -> Outbound<HubspotClient> {
    sync_with(fake, state, CrmConfig::default_mapping().expect("mapping"))
}

fn sync_with(fake: &FakeCrm, state: Arc<SyncState>, config: CrmConfig) -> Outbound<HubspotClient> {
    Outbound {
        config,
        target: Target::Hubspot,
        client: HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into()).expect("client"),
        state,
        clock: Arc::new(SystemClock),
        adapter: "hubspot-test".into(),
        backoff: Duration::from_millis(10),
    }
}

/// Item 10: one invalid record among 100 is refused alone: the adapter sends an
/// `objectWriteTraceId` per input, so HubSpot answers 207 instead of failing the batch.
#[tokio::test]
async fn a_bad_record_does_not_sink_99_good_ones() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    fake.reject(&registration_id(42));
    let sync = sync(&fake, Arc::clone(&state));
    let mut source = ListSource(
        (0..100)
            .map(|n| registration(n, "deal_registration", "submitted"))
            .collect(),
    );
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(
        (report.written, report.dead_lettered),
        (99, 1),
        "{report:?}"
    );
    assert_eq!(fake.records("deals").len(), 99);
    let letters = state.dead_letters("hubspot").expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].external_id, registration_id(42));
    assert_eq!(letters[0].code, "VALIDATION_ERROR");
    let upserts: Vec<u16> = fake
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/deals/batch/upsert"))
        .map(|l| l.status)
        .collect();
    assert_eq!(upserts, vec![207], "one request, answered per record");
}

/// Item 11: values are strings, a missing value is "" (clears it; never null), and the
/// idProperty's value is among the properties.
#[tokio::test]
async fn values_are_strings_and_empty_values_clear() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let sync = sync(&fake, Arc::clone(&state));
    let mut source = ListSource(vec![registration(1, "deal_registration", "submitted")]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(
        (report.written, report.dead_lettered),
        (1, 0),
        "{report:?}: {:?}",
        state.dead_letters("hubspot")
    );
    let deals = fake.records("deals");
    let (_, deal) = &deals[&registration_id(1)];
    assert_eq!(deal["dealreg_registration_id"], json!(registration_id(1)));
    assert_eq!(deal["dealreg_next_step"], json!(""));
    assert_eq!(deal["dealreg_won_amount"], json!(""));
    assert!(deal.values().all(Value::is_string), "{deal:?}");
}

fn conflicts(account: &str) -> ViewChange {
    ViewChange {
        view: "conflicts".into(),
        table: "account".into(),
        key: format!("account/{account}"),
        position: "1".into(),
        partner: None,
        row: Some(json!({
            "0193b000-0000-7000-8000-000000000001": {
                "conflict_id": "0193b000-0000-7000-8000-000000000001",
                "kind": "duplicate_registration", "status": "open", "product_line": "analytics",
                "acknowledge_by": "2026-12-03T00:00:00Z", "resolution_plan_by": "2026-12-08T00:00:00Z",
                "acknowledged_at": null, "resolved_at": null, "breached": [], "reasons": ["two partners"]
            }
        })),
    }
}

fn balance(partner: &str) -> ViewChange {
    ViewChange {
        view: "ledger".into(),
        table: "balance".into(),
        key: format!("balance/{partner}"),
        position: "2".into(),
        partner: None,
        row: Some(
            json!({ "partner_id": partner, "by_currency": { "EUR": 1_250_050, "JPY": 1200 } }),
        ),
    }
}

/// Item 12: the default mapping writes nothing to objects a portal does not have: the
/// conflicts go on the customer's company, the balances on the partner's company; the
/// custom objects are opt-in.
#[tokio::test]
async fn conflicts_and_balances_land_on_companies_every_tier_has() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = self::state(&dir);
    let sync = sync(&fake, Arc::clone(&state));
    let partner = "0193a000-0000-7000-8000-aaaaaaaaaaaa";
    let mut source = ListSource(vec![
        registration(1, "deal_registration", "submitted"),
        conflicts("customer-1.com"),
        balance(partner),
    ]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(
        report.dead_lettered,
        0,
        "{:?}",
        state.dead_letters("hubspot")
    );
    assert!(fake.records("dealreg_conflicts").is_empty());
    let companies = fake.records("companies");
    let (_, customer) = &companies["customer-1.com"];
    assert_eq!(customer["dealreg_open_conflicts"], json!("1"));
    let text = customer["dealreg_conflicts"].as_str().expect("text");
    assert!(text.contains("duplicate_registration"), "{text}");
    let (_, partner_company) = &companies[partner];
    assert_eq!(
        partner_company["dealreg_commission_balances"],
        json!("EUR 12500.50; JPY 1200")
    );
    // Custom objects are written where the mapping opts in and the portal has them.
    let fake = FakeCrm::start(Kind::Hubspot).await;
    for (object, key) in [
        ("dealreg_conflicts", "dealreg_conflict_key"),
        ("dealreg_commission_balances", "dealreg_balance_key"),
    ] {
        fake.hubspot_define_property(object, key, "string", true);
    }
    for name in [
        "dealreg_account",
        "dealreg_kind",
        "dealreg_status",
        "dealreg_product_line",
        "dealreg_acknowledge_by",
        "dealreg_resolution_plan_by",
        "dealreg_acknowledged_at",
        "dealreg_resolved_at",
        "dealreg_breached",
        "dealreg_reasons",
    ] {
        fake.hubspot_define_property("dealreg_conflicts", name, "string", false);
    }
    for name in ["dealreg_partner_id", "dealreg_currency", "dealreg_balance"] {
        fake.hubspot_define_property("dealreg_commission_balances", name, "string", false);
    }
    let text = dealreg_crm::mapping::DEFAULT_MAPPING
        .replace("custom_objects = false", "custom_objects = true");
    let config = CrmConfig::parse(&text).expect("opt-in mapping");
    let dir = tempfile::tempdir().expect("temp dir");
    let sync = sync_with(&fake, self::state(&dir), config);
    let mut source = ListSource(vec![conflicts("customer-1.com"), balance(partner)]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(fake.records("dealreg_conflicts").len(), 1);
    assert_eq!(fake.records("dealreg_commission_balances").len(), 2);
}

/// Item 13: every deal is on the board: `pipeline` and the `dealstage` of its stage (or
/// of its ending status), following the registration.
#[tokio::test]
async fn every_deal_is_on_the_partner_registrations_board() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let sync = sync(&fake, Arc::clone(&state));
    let mut source = ListSource(vec![
        registration(1, "deal_registration", "pending"),
        registration(2, "qualification", "protected"),
    ]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(
        (report.written, report.dead_lettered),
        (2, 0),
        "{:?}",
        state.dead_letters("hubspot")
    );
    let deals = fake.records("deals");
    for (n, stage) in [
        (1, "dealreg_deal_registration"),
        (2, "dealreg_qualification"),
    ] {
        let (_, deal) = &deals[&registration_id(n)];
        assert_eq!(deal["pipeline"], json!("partner_registrations"));
        assert_eq!(deal["dealstage"], json!(stage));
    }
    // The deal follows its registration: a new stage, then the win.
    source.0.push(registration(1, "transact", "protected"));
    source.0.push(registration(2, "transact", "won"));
    sync.run_once(&mut source, 100).await.expect("sync");
    let deals = fake.records("deals");
    assert_eq!(
        deals[&registration_id(1)].1["dealstage"],
        json!("dealreg_transact")
    );
    assert_eq!(
        deals[&registration_id(2)].1["dealstage"],
        json!("dealreg_won")
    );
    // A stage the board does not have is not sent: the mapping names what is missing.
    source.0.push(registration(3, "no_such_stage", "pending"));
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 1);
    let letters = state.dead_letters("hubspot").expect("letters");
    assert!(
        letters[0].message.contains("[hubspot.stages]"),
        "{}",
        letters[0].message
    );
}

/// Item 14: a company the team already has (same domain, no dealreg_account) is the one
/// the deal is linked to, not a second one; the association batch's 207 is read item by
/// item (the refused link is reported, the others made).
#[tokio::test]
async fn no_duplicate_companies_and_links_checked_item_by_item() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let mut existing = serde_json::Map::new();
    existing.insert("name".into(), json!("Customer One, Inc."));
    existing.insert("domain".into(), json!("Customer-1.com"));
    let company_id = fake.create_company(existing);
    let sync = sync(&fake, Arc::clone(&state));
    let mut source = ListSource(
        (1..=3)
            .map(|n| registration(n, "deal_registration", "pending"))
            .collect(),
    );
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0);
    let companies = fake.records("companies");
    let same_domain: Vec<_> = companies
        .values()
        .filter(|(_, c)| {
            c.get("domain")
                .and_then(Value::as_str)
                .is_some_and(|d| d.eq_ignore_ascii_case("customer-1.com"))
        })
        .collect();
    assert_eq!(same_domain.len(), 1, "{companies:?}");
    let (id, company) = same_domain[0];
    assert_eq!(id, &company_id, "the team's company, found by its domain");
    assert_eq!(company["dealreg_account"], json!("customer-1.com"));
    assert_eq!(
        company["name"],
        json!("Customer One, Inc."),
        "its own name kept"
    );
    let deal_id = fake.records("deals")[&registration_id(1)].0.clone();
    assert!(fake.associations().contains(&(
        "deals".into(),
        deal_id,
        "companies".into(),
        company_id
    )));
    assert_eq!(fake.records("companies").len(), 3);
    // One link of the next batch refused: the others are made, the refused one reported.
    fake.fail_associations(1);
    source
        .0
        .extend((4..=6).map(|n| registration(n, "deal_registration", "pending")));
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!((report.written, report.dead_lettered), (3, 0));
    assert_eq!(fake.associations().len(), 5);
    let failures = sync.client.link_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, "customer-4.com");
}

/// Item 15: a spent daily allowance pauses the adapter until HubSpot resets it (one
/// request, then nothing; `crm status` says why and until when), not a retry every few
/// seconds.
#[tokio::test]
async fn the_daily_limit_pauses_until_reset() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    fake.hubspot_daily_limit(250_000, 0);
    let sync = sync(&fake, Arc::clone(&state));
    let mut source = ListSource(vec![registration(1, "deal_registration", "pending")]);
    let report = tokio::time::timeout(Duration::from_secs(20), sync.run_once(&mut source, 100))
        .await
        .expect("the run does not sit retrying")
        .expect("sync");
    let status = report.paused.expect("paused");
    assert!(
        status.contains("hubspot's daily API request limit"),
        "{status}"
    );
    assert!(status.contains("midnight"), "{status}");
    assert_eq!(fake.log().len(), 1, "one request, then the pause");
    let shown = dealreg_crm::sync::paused(&state, Target::Hubspot, chrono::Utc::now())
        .expect("state")
        .expect("the pause is in the state");
    assert_eq!(shown, status);
    // Run after run, nothing is sent before the reset.
    let again = sync.run_once(&mut source, 100).await.expect("sync");
    assert!(again.paused.is_some());
    assert_eq!(fake.log().len(), 1);
    assert_eq!(state.cursor("hubspot-test").expect("cursor"), None);
}

/// Item 15: the rolling window follows `X-HubSpot-RateLimit-*`: when an answer says
/// nothing remains, the next request waits for the window, so none is refused.
#[tokio::test]
async fn the_ten_second_window_follows_the_headers() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    fake.hubspot_window(4, Duration::from_millis(700));
    let sync = sync(&fake, state(&dir));
    let mut source = ListSource(
        (0..500)
            .map(|n| registration(n, "deal_registration", "pending"))
            .collect(),
    );
    let started = std::time::Instant::now();
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.written, 500);
    assert_eq!(
        fake.hubspot_window_refusals(),
        0,
        "no request past the window"
    );
    assert_eq!(report.throttled, 0);
    // 5 deal batches, and per batch a company search, upsert and link: 20 requests,
    // 4 per window.
    assert!(
        started.elapsed() >= Duration::from_millis(4 * 700),
        "{:?}",
        started.elapsed()
    );
}

/// Item 14, conflicts: the customer's company that carries its conflict flags is the one
/// the team already has with that domain, not a second one.
#[tokio::test]
async fn conflicts_land_on_the_company_the_team_already_has() {
    let fake = FakeCrm::start(Kind::Hubspot).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut existing = serde_json::Map::new();
    existing.insert("name".into(), json!("Customer Nine"));
    existing.insert("domain".into(), json!("customer-9.com"));
    let company_id = fake.create_company(existing);
    let sync = sync(&fake, state(&dir));
    let mut source = ListSource(vec![conflicts("customer-9.com")]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0);
    let companies = fake.records("companies");
    assert_eq!(companies.len(), 1, "{companies:?}");
    let (id, company) = &companies["customer-9.com"];
    assert_eq!(id, &company_id);
    assert_eq!(company["dealreg_open_conflicts"], json!("1"));
}
