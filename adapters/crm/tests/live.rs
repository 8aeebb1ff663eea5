//! Against a real CRM. Ignored by default (none of the machines the suite runs on has CRM
//! credentials, and a test that returned early would count as a pass): `scripts/test`
//! runs each one whose credentials are in the environment and reports the others as
//! skipped, by name. Run by hand with `cargo test -p dealreg-crm --test live -- --ignored`;
//! run without its credentials, a test fails, naming the variables it needs. Setup of the
//! fields: docs/CRM.md. **None of these has been run against a real org or portal yet.**
//!
//! - `salesforce_live_upsert_by_external_id`: upserts one Lead by external id twice
//!   (created, then updated, same id). Needs `DEALREG_SALESFORCE_CLIENT_ID`,
//!   `DEALREG_SALESFORCE_CLIENT_SECRET`, `DEALREG_SALESFORCE_TOKEN_URL`
//!   (`https://<my-domain>.my.salesforce.com/services/oauth2/token`), and the org set up
//!   (the `Dealreg_*__c` fields).
//! - `salesforce_live_setup_plan_and_check`: read-only. `crm check` (sObject describe of
//!   every mapped object) and the plan `crm setup` would take, printed; nothing is
//!   created. Needs the same three variables; passes whatever the org lacks (the findings
//!   are printed), fails if describe cannot be read.
//! - `hubspot_live_upsert_by_id_property`: upserts one deal by `dealreg_registration_id`
//!   twice. Needs `DEALREG_HUBSPOT_TOKEN` (and `DEALREG_HUBSPOT_BASE_URL` for another host)
//!   and the portal set up.
//! - `hubspot_live_setup_check_and_lifecycle`: `crm setup`'s plan for the portal, printed;
//!   with `DEALREG_HUBSPOT_APPLY=1` the plan is taken (creates the `dealreg` property
//!   group, the properties and the board "Partner registrations": on a portal you can
//!   change, a sandbox or a developer test account) and the board's ids are used; without
//!   it nothing is created and `DEALREG_HUBSPOT_CONFIG` may name the team's crm.toml (its
//!   `[hubspot] pipeline` and `[hubspot.stages]`). Then `crm check` must pass, and one
//!   registration (a new id each run) is synced through its lifecycle, submitted to won,
//!   each step read back from HubSpot (`dealstage`, `dealreg_status`). Needs
//!   `DEALREG_HUBSPOT_TOKEN` with the deal and company scopes, the schema scopes for check
//!   (and write for `--apply`): docs/CRM.md, "Setting up HubSpot". The deal and its
//!   company stay in the portal (dealreg never deletes).

use std::sync::Arc;
use std::time::Duration;

use dealreg_clock::SystemClock;
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::sync::{ChangeSource, Outbound, SyncError};
use dealreg_crm::{setup_hubspot, setup_salesforce};
use dealreg_crm::{CrmClient, CrmConfig, RecordOutcome, SyncState, Target, Upsert, ViewChange};
use serde_json::{json, Map, Value};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

async fn twice<C: CrmClient>(client: &C, object: &str, field: &str, record: Upsert) {
    let first = client
        .upsert(object, field, std::slice::from_ref(&record))
        .await;
    let second = client
        .upsert(object, field, std::slice::from_ref(&record))
        .await;
    match (first, second) {
        (Ok(first), Ok(second)) => match (&first[..], &second[..]) {
            (
                [RecordOutcome::Upserted { crm_id: a, .. }],
                [RecordOutcome::Upserted {
                    crm_id: b,
                    created: false,
                }],
            ) => assert_eq!(a, b, "the second upsert updates the same record"),
            other => panic!("unexpected outcomes: {other:?}"),
        },
        (a, b) => panic!("the CRM refused: {a:?} / {b:?}"),
    }
}

#[tokio::test]
#[ignore = "live Salesforce: needs DEALREG_SALESFORCE_CLIENT_ID, _CLIENT_SECRET, _TOKEN_URL"]
async fn salesforce_live_upsert_by_external_id() {
    let (Some(id), Some(secret), Some(token_url)) = (
        env("DEALREG_SALESFORCE_CLIENT_ID"),
        env("DEALREG_SALESFORCE_CLIENT_SECRET"),
        env("DEALREG_SALESFORCE_TOKEN_URL"),
    ) else {
        panic!("not run: DEALREG_SALESFORCE_CLIENT_ID, DEALREG_SALESFORCE_CLIENT_SECRET and DEALREG_SALESFORCE_TOKEN_URL must be set");
    };
    let settings = SalesforceSettings {
        token_url,
        ..SalesforceSettings::default()
    };
    let client = SalesforceClient::new(settings, id, secret).expect("client");
    let record = Upsert {
        external_id: format!("dealreg-live-{}", chrono::Utc::now().timestamp_millis()),
        fields: fields(
            json!({ "LastName": "dealreg live test", "Company": "dealreg live test", "LeadSource": "Partner" }),
        ),
    };
    twice(&client, "Lead", "Dealreg_Registration_Id__c", record).await;
    assert!(client.api_usage().is_some(), "Sforce-Limit-Info was read");
}

#[tokio::test]
#[ignore = "live HubSpot: needs DEALREG_HUBSPOT_TOKEN"]
async fn hubspot_live_upsert_by_id_property() {
    let Some(token) = env("DEALREG_HUBSPOT_TOKEN") else {
        panic!("not run: DEALREG_HUBSPOT_TOKEN must be set");
    };
    let base = env("DEALREG_HUBSPOT_BASE_URL").unwrap_or_else(|| "https://api.hubapi.com".into());
    let client = HubspotClient::new(&base, token).expect("client");
    let record = Upsert {
        external_id: format!("dealreg-live-{}", chrono::Utc::now().timestamp_millis()),
        fields: fields(json!({ "dealname": "dealreg live test", "dealreg_status": "submitted" })),
    };
    twice(&client, "deals", "dealreg_registration_id", record.clone()).await;
}

#[tokio::test]
#[ignore = "live Salesforce (read-only): needs DEALREG_SALESFORCE_CLIENT_ID, _CLIENT_SECRET, _TOKEN_URL"]
async fn salesforce_live_setup_plan_and_check() {
    let (Some(id), Some(secret), Some(token_url)) = (
        env("DEALREG_SALESFORCE_CLIENT_ID"),
        env("DEALREG_SALESFORCE_CLIENT_SECRET"),
        env("DEALREG_SALESFORCE_TOKEN_URL"),
    ) else {
        panic!("not run: DEALREG_SALESFORCE_CLIENT_ID, DEALREG_SALESFORCE_CLIENT_SECRET and DEALREG_SALESFORCE_TOKEN_URL must be set");
    };
    let config = CrmConfig::default_mapping().expect("mapping");
    let settings = SalesforceSettings {
        token_url,
        ..config.salesforce.clone()
    };
    let client = SalesforceClient::new(settings, id, secret).expect("client");
    let requirements = setup_salesforce::requirements(&config);
    let findings = setup_salesforce::check(&client, &requirements)
        .await
        .expect("describe answers");
    println!("check: {} findings", findings.len());
    for finding in &findings {
        println!("  {finding}");
    }
    let steps = setup_salesforce::plan(&config, &requirements, &findings);
    println!("setup would take {} steps (none taken):", steps.len());
    for (step, _) in &steps {
        println!("  {step}");
    }
}

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

#[tokio::test]
#[ignore = "live HubSpot: needs DEALREG_HUBSPOT_TOKEN (DEALREG_HUBSPOT_APPLY=1 creates what setup plans)"]
async fn hubspot_live_setup_check_and_lifecycle() {
    let Some(token) = env("DEALREG_HUBSPOT_TOKEN") else {
        panic!("not run: DEALREG_HUBSPOT_TOKEN must be set");
    };
    let base = env("DEALREG_HUBSPOT_BASE_URL").unwrap_or_else(|| "https://api.hubapi.com".into());
    let mut config = match env("DEALREG_HUBSPOT_CONFIG") {
        Some(path) => {
            CrmConfig::parse(&std::fs::read_to_string(&path).expect("DEALREG_HUBSPOT_CONFIG"))
                .expect("crm.toml")
        }
        None => CrmConfig::default_mapping().expect("mapping"),
    };
    let client = || HubspotClient::new(&base, token.clone()).expect("client");
    let hubspot = client();

    // Setup: the plan, and with DEALREG_HUBSPOT_APPLY the plan taken.
    let requirements = setup_hubspot::requirements(&config);
    let findings = setup_hubspot::check(&hubspot, &config, &requirements)
        .await
        .expect("the properties and pipelines APIs answer");
    let steps = setup_hubspot::plan(&findings);
    println!("setup would take {} steps:", steps.len());
    for (step, _) in &steps {
        println!("  {step}");
    }
    if env("DEALREG_HUBSPOT_APPLY").is_some() {
        let applied = setup_hubspot::apply(&hubspot, &steps)
            .await
            .expect("setup --apply");
        for line in &applied.done {
            println!("  done: {line}");
        }
        if let Some(board) = &applied.board {
            println!("{}", setup_hubspot::board_toml(board));
            config.hubspot.pipeline = board.id.clone();
            config.hubspot.stages = setup_hubspot::board_stages(board);
        }
    }

    // Check: the portal has what the mapping needs.
    let findings = setup_hubspot::check(&hubspot, &config, &requirements)
        .await
        .expect("check answers");
    assert!(
        findings.is_empty(),
        "the portal lacks what the mapping needs (set DEALREG_HUBSPOT_APPLY=1, or DEALREG_HUBSPOT_CONFIG to the crm.toml with the board's ids): {}",
        findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    );

    // A registration's lifecycle, submitted to won, each step read back.
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(SyncState::open(&dir.path().join("crm.db")).expect("state"));
    let sync = Outbound {
        config: config.clone(),
        target: Target::Hubspot,
        client: client(),
        state: Arc::clone(&state),
        clock: Arc::new(SystemClock),
        adapter: "hubspot-live".into(),
        backoff: Duration::from_millis(500),
    };
    let millis = chrono::Utc::now().timestamp_millis();
    let registration = format!(
        "0193a000-0000-7000-8000-{:012x}",
        millis % 0x1_0000_0000_0000
    );
    let amount = json!({ "amount_minor": 4_200_000, "currency": "USD" });
    let mut deal_id = String::new();
    for (status, stage) in [
        ("submitted", "deal_registration"),
        ("approved", "qualification"),
        ("approved", "configure_and_quote"),
        ("approved", "transact"),
        ("won", "transact"),
    ] {
        let mut row = json!({
            "registration_id": registration, "account": "dealreg-live-test.example", "company": "dealreg live test",
            "partner": "dealreg live partner", "partner_id": "0193a000-0000-7000-8000-aaaaaaaaaaaa",
            "product_line": "analytics", "motion": "reseller", "stage": stage,
            "status": status, "protection": "protected", "estimated_amount": amount,
            "attribution": { "sourcing": null, "influencers": {} }
        });
        if status == "won" {
            row["won_amount"] = amount.clone();
        }
        let change = ViewChange {
            view: "pipeline".into(),
            table: "registration".into(),
            key: format!("registration/{registration}"),
            position: millis.to_string(),
            partner: None,
            row: Some(row),
        };
        let report = sync
            .run_once(&mut One(Some(change)), 10)
            .await
            .expect("sync");
        assert_eq!(
            report.dead_lettered,
            0,
            "{status}/{stage}: {:?}",
            state.dead_letters("hubspot")
        );
        let known = state
            .record("hubspot", "deals", &registration)
            .expect("state")
            .expect("the deal was written");
        deal_id = known.crm_id.clone();
        let deal = hubspot
            .get_object(
                "deals",
                &deal_id,
                &["dealstage", "pipeline", "dealreg_status"],
            )
            .await
            .expect("read the deal")
            .expect("the deal exists");
        let expected = config
            .hubspot
            .stages
            .get(status)
            .or_else(|| config.hubspot.stages.get(stage))
            .expect("a stage id");
        assert_eq!(
            deal.pointer("/properties/dealstage"),
            Some(&json!(expected)),
            "{status}/{stage}: {deal}"
        );
        assert_eq!(
            deal.pointer("/properties/dealreg_status"),
            Some(&json!(status)),
            "{deal}"
        );
        assert_eq!(
            deal.pointer("/properties/pipeline"),
            Some(&json!(config.hubspot.pipeline)),
            "{deal}"
        );
    }
    println!("deal {deal_id}: registration {registration} won");
}
