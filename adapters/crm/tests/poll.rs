//! Salesforce inbound: Opportunities polled by SystemModstamp, across pages, as commands.

mod common;

use std::sync::Arc;

use common::Recorded;
use dealreg_clock::SystemClock;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::poll::{SalesforcePoll, WATERMARK};
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::{CrmConfig, SyncState};
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};

fn opportunity(fields: Value) -> serde_json::Map<String, Value> {
    fields.as_object().cloned().unwrap_or_default()
}

#[tokio::test]
async fn opportunities_become_commands_across_pages_and_the_watermark_moves() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = Arc::new(SyncState::open(&dir.path().join("crm.db")).expect("state"));
    let settings = SalesforceSettings {
        token_url: fake.token_url(),
        ..SalesforceSettings::default()
    };
    let poll = SalesforcePoll {
        config: CrmConfig::default_mapping().expect("mapping"),
        client: SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into())
            .expect("client"),
        state: Arc::clone(&state),
        clock: Arc::new(SystemClock),
        commands: Recorded::default(),
    };
    let registration = "0193a000-0000-7000-8000-000000000001";
    fake.put_opportunity("006A", opportunity(json!({ "IsClosed": true, "IsWon": true, "Amount": 4200.5,
        "SystemModstamp": "2026-12-01T10:00:00.000+0000", "OwnerId": "005X",
        "Dealreg_Registration_Id__c": registration, "Dealreg_Account__c": "acme.com", "Dealreg_Product_Line__c": "analytics" })));
    fake.put_opportunity("006B", opportunity(json!({ "IsClosed": true, "IsWon": false, "Amount": 100,
        "SystemModstamp": "2026-12-01T11:00:00.000+0000", "OwnerId": "005X",
        "Dealreg_Registration_Id__c": "0193a000-0000-7000-8000-000000000002", "Dealreg_Account__c": "globex.com", "Dealreg_Product_Line__c": "analytics" })));
    fake.put_opportunity("006C", opportunity(json!({ "IsClosed": false, "IsWon": false, "Amount": 100,
        "SystemModstamp": "2026-12-01T12:00:00.000+0000", "OwnerId": "005X",
        "Dealreg_Registration_Id__c": "0193a000-0000-7000-8000-000000000003", "Dealreg_Account__c": "initech.com", "Dealreg_Product_Line__c": "analytics" })));
    fake.put_opportunity(
        "006D",
        opportunity(json!({ "IsClosed": false, "IsWon": false, "Amount": 99000,
        "SystemModstamp": "2026-12-01T13:00:00.000+0000", "OwnerId": "005Y",
        "Dealreg_Account__c": "umbrella.com", "Dealreg_Product_Line__c": "platform" })),
    );
    fake.put_opportunity(
        "006E",
        opportunity(json!({ "IsClosed": false, "IsWon": false,
        "SystemModstamp": "2026-12-01T14:00:00.000+0000", "OwnerId": "005Y",
        "Dealreg_Account__c": "hooli.com", "Dealreg_Product_Line__c": "platform" })),
    );
    let report = poll.poll_once().await.expect("poll");
    assert_eq!(
        (report.records, report.commands, report.errors),
        (5, 3, 1),
        "{report:?}"
    );
    assert!(
        fake.log()
            .iter()
            .filter(|l| l.path.contains("/query"))
            .count()
            >= 3,
        "five records in pages of two"
    );
    let commands = poll.commands.commands();
    assert_eq!(
        commands[0]["command"],
        json!({ "type": "mark_won", "account": "acme.com", "registration_id": registration,
                "amount": { "amount_minor": 420_050, "currency": "USD" },
                "order_reference": "salesforce:opportunity:006A" })
    );
    assert_eq!(
        commands[0]["idempotency_key"],
        json!("salesforce:opportunity:006A:2026-12-01T10:00:00.000+0000")
    );
    assert_eq!(commands[1]["command"]["type"], json!("mark_lost"));
    assert_eq!(
        commands[2]["command"],
        json!({ "type": "record_direct_opportunity", "account": "umbrella.com", "opportunity_id": "salesforce-006D",
                "owner": "salesforce-owner-005Y", "product_line": "platform",
                "amount": { "amount_minor": 9_900_000, "currency": "USD" } })
    );
    let errors = state.inbound_errors(5).expect("errors");
    assert_eq!(errors[0].code, "no_amount");
    assert_eq!(
        state.cursor(WATERMARK).expect("cursor").as_deref(),
        Some("2026-12-01T14:00:00.000Z")
    );
    // Polled again: only what changed at or after the watermark; nothing new executes.
    let again = poll.poll_once().await.expect("poll");
    assert_eq!(again.records, 1);
    assert_eq!(poll.commands.commands().len(), 3);
    // The open one closes won later: a new change, a new key.
    fake.put_opportunity("006C", opportunity(json!({ "IsClosed": true, "IsWon": true, "Amount": 100,
        "SystemModstamp": "2026-12-02T09:00:00.000+0000", "OwnerId": "005X",
        "Dealreg_Registration_Id__c": "0193a000-0000-7000-8000-000000000003", "Dealreg_Account__c": "initech.com", "Dealreg_Product_Line__c": "analytics" })));
    let later = poll.poll_once().await.expect("poll");
    assert_eq!(later.commands, 1);
    let last = poll.commands.commands().pop().expect("a command");
    assert_eq!(last["command"]["type"], json!("mark_won"));
    assert_eq!(
        last["idempotency_key"],
        json!("salesforce:opportunity:006C:2026-12-02T09:00:00.000+0000")
    );
}
