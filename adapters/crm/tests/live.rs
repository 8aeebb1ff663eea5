//! Against a real CRM. Ignored by default (none of the machines the suite runs on has CRM
//! credentials, and a test that returned early would count as a pass): `scripts/test`
//! runs each one whose credentials are in the environment and reports the others as
//! skipped, by name. Run by hand with `cargo test -p dealreg-crm --test live -- --ignored`;
//! run without its credentials, a test fails, naming the variables it needs. Each upserts
//! one record by external id twice and reads what the CRM says: created, then updated,
//! same id. Setup of the fields: docs/CRM.md.
//!
//! - Salesforce: `DEALREG_SALESFORCE_CLIENT_ID`, `DEALREG_SALESFORCE_CLIENT_SECRET`,
//!   `DEALREG_SALESFORCE_TOKEN_URL` (`https://<my-domain>.my.salesforce.com/services/oauth2/token`).
//! - HubSpot: `DEALREG_HUBSPOT_TOKEN` (and `DEALREG_HUBSPOT_BASE_URL` for a sandbox).

use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::{CrmClient, RecordOutcome, Upsert};
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
