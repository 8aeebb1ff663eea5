//! The strict fake Salesforce (adapters/crm-fake/src/salesforce.rs) refuses what Salesforce
//! documents it refuses, and the adapter passes against it: conversion followed, the poll
//! reading only fields setup creates, the My Domain token host, types as the org expects,
//! polling that misses nothing, the daily API limit.

mod common;
use common::{
    get, patch, registration_change, registration_id, state, ListSource, LEADS, OPPORTUNITIES,
};

use std::sync::Arc;
use std::time::Duration;

use dealreg_clock::SystemClock;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::sync::Outbound;
use dealreg_crm::{CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};

fn registration(n: usize, status: &str, row: Value) -> ViewChange {
    let mut fields = json!({ "stage": "qualified" });
    if let (Some(fields), Value::Object(row)) = (fields.as_object_mut(), row) {
        fields.extend(row);
    }
    registration_change(n, status, fields)
}

fn settings(fake: &FakeCrm) -> SalesforceSettings {
    SalesforceSettings {
        token_url: fake.token_url(),
        ..SalesforceSettings::default()
    }
}

fn client(settings: SalesforceSettings) -> SalesforceClient {
    SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into()).expect("a client")
}

fn outbound(
    config: CrmConfig,
    client: SalesforceClient,
    state: Arc<SyncState>,
) -> Outbound<SalesforceClient> {
    Outbound {
        config,
        target: Target::Salesforce,
        client,
        state,
        clock: Arc::new(SystemClock),
        adapter: "salesforce-test".into(),
        backoff: Duration::from_millis(20),
    }
}

/// A token from the fake's My Domain endpoint.
#[tokio::test]
async fn the_fake_refuses_what_salesforce_refuses() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    // A field the object does not have: the whole request, INVALID_FIELD.
    let (status, body) = patch(&fake, LEADS, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r1", "LastName": "A", "Company": "A", "Nope__c": "x" } ] })).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_FIELD")),
        "{body}"
    );
    // An object the org does not have: 404 NOT_FOUND.
    let (status, body) = patch(
        &fake,
        "/services/data/v62.0/composite/sobjects/Nope__c/Key__c",
        json!({ "allOrNone": false, "records": [] }),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (404, json!("NOT_FOUND")),
        "{body}"
    );
    // A Date given a date-time: the body cannot be read, JSON_PARSER_ERROR.
    let (status, body) = patch(
        &fake,
        OPPORTUNITIES,
        json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Opportunity" }, "Dealreg_Registration_Id__c": "r1", "Name": "A",
          "StageName": "Prospecting", "CloseDate": "2027-03-01T00:00:00Z" } ] }),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("JSON_PARSER_ERROR")),
        "{body}"
    );
    // A date-time with more than milliseconds.
    let (status, body) = patch(&fake, LEADS, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r1", "LastName": "A", "Company": "A",
          "Dealreg_Protection_Expires__c": "2027-03-01T00:00:00.123456Z" } ] })).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("JSON_PARSER_ERROR")),
        "{body}"
    );
    // Required fields missing on create (or null): that record, REQUIRED_FIELD_MISSING.
    let (status, body) = patch(&fake, OPPORTUNITIES, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Opportunity" }, "Dealreg_Registration_Id__c": "r1", "Name": "A", "CloseDate": null } ] })).await;
    assert_eq!(status, 200);
    assert_eq!(
        body[0]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING"),
        "{body}"
    );
    assert_eq!(
        body[0]["errors"][0]["fields"],
        json!(["CloseDate", "StageName"])
    );
    // A converted Lead: CANNOT_UPDATE_CONVERTED_LEAD.
    let lead = json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r2", "LastName": "B", "Company": "B" } ] });
    let (status, body) = patch(&fake, LEADS, lead.clone()).await;
    assert_eq!(
        (status, body[0]["success"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let opportunity = fake.convert_lead("r2").expect("converted");
    let (_, body) = patch(&fake, LEADS, lead).await;
    assert_eq!(
        body[0]["errors"][0]["statusCode"],
        json!("CANNOT_UPDATE_CONVERTED_LEAD"),
        "{body}"
    );
    let (_, read) = get(&fake, "/services/data/v62.0/query?q=SELECT+Id%2C+IsConverted%2C+ConvertedOpportunityId+FROM+Lead+WHERE+Dealreg_Registration_Id__c+IN+%28%27r2%27%29").await;
    assert_eq!(read["records"][0]["IsConverted"], json!(true), "{read}");
    assert_eq!(
        read["records"][0]["ConvertedOpportunityId"],
        json!(opportunity)
    );
    // A system field written: INVALID_FIELD_FOR_INSERT_UPDATE.
    let (_, body) = patch(&fake, LEADS, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r3", "LastName": "C", "Company": "C", "IsConverted": true } ] })).await;
    assert_eq!(
        body[0]["errors"][0]["statusCode"],
        json!("INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{body}"
    );
    // CurrencyIsoCode exists only in a multi-currency org.
    let with_currency = json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r4", "LastName": "D", "Company": "D", "CurrencyIsoCode": "JPY" } ] });
    let (status, _) = patch(&fake, LEADS, with_currency.clone()).await;
    assert_eq!(status, 400);
    fake.salesforce_multi_currency(&["USD", "EUR"]);
    let (_, body) = patch(&fake, LEADS, with_currency).await;
    assert_eq!(
        body[0]["errors"][0]["statusCode"],
        json!("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{body}"
    );
    // A query naming a field the object does not have fails as a whole.
    let (status, body) = get(
        &fake,
        "/services/data/v62.0/query?q=SELECT+Id%2C+Nope__c+FROM+Opportunity",
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_FIELD")),
        "{body}"
    );
    // The client-credentials flow asked of the generic login host.
    let answer = reqwest::Client::new()
        .post(fake.generic_token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"], json!("invalid_grant"));
    // The daily limit spent: 403 REQUEST_LIMIT_EXCEEDED for every call.
    fake.set_usage(15_000, 15_000);
    let (status, body) = get(
        &fake,
        "/services/data/v62.0/query?q=SELECT+Id+FROM+Opportunity",
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (403, json!("REQUEST_LIMIT_EXCEEDED")),
        "{body}"
    );
}

/// Item 1: a Lead converted in Salesforce is followed to its Opportunity; the registration's
/// state is written there from then on, and nothing goes to the dead-letter list.
#[tokio::test]
async fn a_converted_lead_is_followed_to_its_opportunity() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let config = CrmConfig::default_mapping().expect("mapping");
    let sync = outbound(config, client(settings(&fake)), Arc::clone(&state));
    let mut source = ListSource(
        (0..3)
            .map(|n| registration(n, "submitted", json!({})))
            .collect(),
    );
    let first = sync.run_once(&mut source, 100).await.expect("sync");
    // Three Leads and their partner's Account (issue 31 item 6).
    assert_eq!(first.written, 4);
    // A channel manager approves and converts the Lead in Salesforce.
    let opportunity = fake.convert_lead(&registration_id(1)).expect("converted");
    source
        .0
        .push(registration(1, "approved", json!({ "stage": "proposal" })));
    source.0.push(registration(2, "approved", json!({})));
    let second = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!((second.written, second.dead_lettered), (2, 0), "{second:?}");
    assert!(state
        .dead_letters("salesforce")
        .expect("letters")
        .is_empty());
    let opportunities = fake.records("Opportunity");
    let (id, fields) = &opportunities[&registration_id(1)];
    assert_eq!(id, &opportunity);
    assert_eq!(fields["Dealreg_Status__c"], json!("approved"));
    assert_eq!(fields["Dealreg_Stage__c"], json!("proposal"));
    // The Lead kept what it had at conversion; the unconverted one is updated in place.
    assert_eq!(
        fake.records("Lead")[&registration_id(1)].1["Dealreg_Status__c"],
        json!("submitted")
    );
    assert_eq!(
        fake.records("Lead")[&registration_id(2)].1["Dealreg_Status__c"],
        json!("approved")
    );
    let known = state
        .record("salesforce", "Lead", &registration_id(1))
        .expect("state")
        .expect("known");
    assert_eq!(
        known.crm_id, opportunity,
        "the record now names its Opportunity"
    );
    // Later changes go straight to the Opportunity, still nothing dead.
    source.0.push(registration(
        1,
        "won",
        json!({ "won_amount": { "amount_minor": 1_300_000, "currency": "EUR" } }),
    ));
    let third = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!((third.written, third.dead_lettered), (1, 0), "{third:?}");
    assert_eq!(
        fake.records("Opportunity")[&registration_id(1)].1["Dealreg_Won_Amount__c"],
        json!(13000.0)
    );
    assert_eq!(
        fake.records("Opportunity").len(),
        1,
        "no Opportunity created twice"
    );
}

fn poll_of(
    fake: &FakeCrm,
    state: Arc<SyncState>,
) -> dealreg_crm::poll::SalesforcePoll<common::Recorded> {
    dealreg_crm::poll::SalesforcePoll {
        config: CrmConfig::default_mapping().expect("mapping"),
        client: client(settings(fake)),
        state,
        clock: Arc::new(SystemClock),
        commands: common::Recorded::default(),
    }
}

/// Item 2: `crm poll` selects only fields docs/CRM.md's setup creates on Opportunity, and an
/// org without one is told which field to create where.
#[tokio::test]
async fn the_poll_selects_only_fields_setup_creates_on_opportunity() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CRM.md"))
        .expect("docs/CRM.md");
    let setup = docs
        .split("## Setting up Salesforce")
        .nth(1)
        .and_then(|s| s.split("## ").next())
        .expect("the setup section");
    let on_opportunity = setup
        .split("\n2. ")
        .nth(1)
        .and_then(|s| s.split("\n3. ").next())
        .expect("setup step 2");
    assert!(
        on_opportunity.contains("**Opportunity**"),
        "setup step 2 creates the fields on Opportunity too: {on_opportunity}"
    );
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let poll = poll_of(&fake, state(&dir));
    let soql = poll.query("2026-12-01T00:00:00.000Z");
    let selected = soql
        .strip_prefix("SELECT ")
        .and_then(|s| s.split(" FROM ").next())
        .expect("a SELECT");
    for field in selected
        .split(',')
        .map(str::trim)
        .filter(|f| f.ends_with("__c"))
    {
        assert!(
            on_opportunity.contains(field),
            "{field} is selected but setup does not create it"
        );
    }
    poll.poll_once()
        .await
        .expect("the org docs/CRM.md sets up answers the poll");
    assert!(poll.commands.commands().is_empty());
    // An org set up as the docs said before (the fields on Lead only): the whole query is
    // refused, and the error says what to create.
    fake.salesforce_remove_field("Opportunity", "Dealreg_Account__c");
    let refused = poll.poll_once().await.expect_err("INVALID_FIELD");
    let text = refused.to_string();
    assert!(
        text.contains("INVALID_FIELD") && text.contains("Dealreg_Account__c"),
        "{text}"
    );
    assert!(text.contains("create it on Opportunity"), "{text}");
}

/// Item 4: the client-credentials token comes from the org's My Domain host; the generic
/// login hosts are refused when the configuration is read, and the server's refusal is
/// translated into what to set.
#[tokio::test]
async fn the_token_comes_from_the_my_domain_host() {
    // The default token URL (login.salesforce.com) and test.salesforce.com: refused before
    // any request, saying what to set.
    for url in [
        "https://login.salesforce.com/services/oauth2/token",
        "https://TEST.salesforce.com/services/oauth2/token",
    ] {
        let settings = SalesforceSettings {
            token_url: url.into(),
            ..SalesforceSettings::default()
        };
        let refused = SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("my_domain") && refused.contains(".my.salesforce.com"),
            "{url}: {refused:?}"
        );
    }
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A token endpoint that answers as the generic host does: the refusal says what to set.
    let generic = SalesforceSettings {
        token_url: fake.generic_token_url(),
        ..SalesforceSettings::default()
    };
    let sync = outbound(
        CrmConfig::default_mapping().expect("mapping"),
        client(generic),
        state(&dir),
    );
    let mut source = ListSource(vec![registration(1, "submitted", json!({}))]);
    let refused = sync.run_once(&mut source, 10).await.expect_err("refused");
    let text = refused.to_string();
    assert!(
        text.contains("my_domain") && text.contains("not supported on this domain"),
        "{text}"
    );
    // The My Domain set: the token comes from <my_domain>/services/oauth2/token.
    let my_domain = SalesforceSettings {
        my_domain: Some(fake.url()),
        ..SalesforceSettings::default()
    };
    let sync = outbound(
        CrmConfig::default_mapping().expect("mapping"),
        client(my_domain),
        state(&dir),
    );
    let report = sync.run_once(&mut source, 10).await.expect("sync");
    // The Lead and its partner's Account (issue 31 item 6).
    assert_eq!(report.written, 2);
    assert_eq!(fake.tokens_issued(), 1);
}

/// The default mapping with the registration as an Opportunity, as docs/CRM.md's
/// Opportunity-first variant says to map it.
fn opportunity_first(extra_salesforce: &str) -> CrmConfig {
    let text = dealreg_crm::mapping::DEFAULT_MAPPING
        .replace(
            "salesforce = { object = \"Lead\", external_id = \"Dealreg_Registration_Id__c\" }",
            "salesforce = { object = \"Opportunity\", external_id = \"Dealreg_Registration_Id__c\" }",
        )
        .replace("salesforce = \"LeadSource\"", "hubspot = \"dealreg_lead_source_unused\"")
        .replace("salesforce = \"LastName\"", "hubspot = \"dealreg_last_name_unused\"")
        .replace("salesforce = \"Company\"\n", "salesforce = \"Name\"\n")
        .replace(
            "[salesforce]\n",
            &format!("[salesforce]\n{extra_salesforce}\n"),
        )
        .replacen(
            "[[object.field]]\nfrom = \"/row/account\"",
            "[[object.field]]\nvalue = \"Prospecting\"\nsalesforce = \"StageName\"\ndirection = \"first_sync\"\n\n\
             [[object.field]]\nfrom = \"/row/protection_expires_at\"\nor_from = \"/row/submitted_at\"\ntransform = \"date\"\nsalesforce = \"CloseDate\"\ndirection = \"first_sync\"\n\n\
             [[object.field]]\nfrom = \"/row/account\"",
            1,
        );
    CrmConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Item 5: types as the org expects. CloseDate a Date (never null, never a date-time);
/// date-times with milliseconds; CurrencyIsoCode in a multi-currency org; a zero-decimal
/// currency read back exactly.
#[tokio::test]
async fn values_have_the_types_the_org_expects() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    fake.salesforce_multi_currency(&["USD", "EUR", "JPY"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let config = opportunity_first("multi_currency = true");
    let sync = outbound(config, client(settings(&fake)), Arc::clone(&state));
    let mut source = ListSource(vec![
        // Protected, with an expiry given to the microsecond.
        registration(
            1,
            "approved",
            json!({ "protection_expires_at": "2027-03-01T10:20:30.123456Z" }),
        ),
        // No protection window yet: the close date falls back to the submission.
        registration(
            2,
            "submitted",
            json!({ "protection": "none", "protection_expires_at": null,
            "estimated_amount": { "amount_minor": 1_250_000, "currency": "JPY" } }),
        ),
    ]);
    let report = sync.run_once(&mut source, 10).await.expect("sync");
    // Two Opportunities and their partner's Account (issue 31 item 6).
    assert_eq!(
        (report.written, report.dead_lettered),
        (3, 0),
        "{:?}",
        state.dead_letters("salesforce")
    );
    let opportunities = fake.records("Opportunity");
    let (_, first) = &opportunities[&registration_id(1)];
    assert_eq!(first["CloseDate"], json!("2027-03-01"));
    assert_eq!(
        first["Dealreg_Protection_Expires__c"],
        json!("2027-03-01T10:20:30.123Z")
    );
    assert_eq!(first["CurrencyIsoCode"], json!("EUR"));
    assert_eq!(first["Dealreg_Estimated_Amount__c"], json!(12500.50));
    let (_, second) = &opportunities[&registration_id(2)];
    assert_eq!(second["CloseDate"], json!("2026-12-01"));
    assert_eq!(second["CurrencyIsoCode"], json!("JPY"));
    assert_eq!(second["Dealreg_Estimated_Amount__c"], json!(1_250_000));
    // JPY read back exactly: Salesforce answers currency amounts as doubles (1250000.0).
    fake.put_opportunity(
        "006JPY",
        json!({ "IsClosed": false, "IsWon": false, "Amount": 1_250_000.0, "CurrencyIsoCode": "JPY",
                "SystemModstamp": "2026-12-01T10:00:00.000+0000", "OwnerId": "005X",
                "Dealreg_Account__c": "example.jp", "Dealreg_Product_Line__c": "analytics" })
        .as_object()
        .cloned()
        .expect("an object"),
    );
    let mut poll = poll_of(&fake, Arc::clone(&state));
    poll.config.inbound.salesforce_currency_field = "CurrencyIsoCode".into();
    let polled = poll.poll_once().await.expect("poll");
    assert_eq!(polled.errors, 0, "{:?}", state.inbound_errors(5));
    let direct = poll.commands.commands();
    let direct = direct
        .iter()
        .find(|c| c["command"]["type"] == json!("record_direct_opportunity"))
        .expect("the direct opportunity");
    assert_eq!(
        direct["command"]["amount"],
        json!({ "amount_minor": 1_250_000, "currency": "JPY" })
    );
}

fn closed(
    registration: &str,
    won: bool,
    amount: f64,
    stamp: &str,
) -> serde_json::Map<String, Value> {
    json!({ "IsClosed": true, "IsWon": won, "Amount": amount, "SystemModstamp": stamp, "OwnerId": "005X",
            "Dealreg_Registration_Id__c": registration, "Dealreg_Account__c": "acme.com",
            "Dealreg_Product_Line__c": "analytics" })
    .as_object()
    .cloned()
    .expect("an object")
}

/// Item 8: polling misses nothing and repeats nothing: an overlap window before the
/// watermark is read again (a change committed late, with an older SystemModstamp, is
/// found) and what was seen (same id and modstamp) is dropped; an edit of a closed
/// Opportunity that changes nothing the engine owns sends no command.
#[tokio::test]
async fn polling_misses_nothing_and_repeats_nothing() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let poll = poll_of(&fake, state(&dir));
    fake.put_opportunity(
        "006A",
        closed(
            &registration_id(1),
            true,
            4200.5,
            "2026-12-01T10:00:00.000+0000",
        ),
    );
    let first = poll.poll_once().await.expect("poll");
    assert_eq!(first.commands, 1);
    // A change committed after the poll but stamped before its watermark.
    fake.put_opportunity(
        "006B",
        closed(
            &registration_id(2),
            false,
            100.0,
            "2026-12-01T09:58:00.000+0000",
        ),
    );
    let second = poll.poll_once().await.expect("poll");
    assert_eq!(second.commands, 1, "the late change is found: {second:?}");
    assert_eq!(
        poll.commands.commands()[1]["command"]["type"],
        json!("mark_lost")
    );
    // 006A was read again in the overlap, and dropped: same id, same modstamp.
    assert_eq!(poll.commands.commands().len(), 2);
    // A user edits the won Opportunity (its description, say): nothing the engine owns
    // changed, no command.
    fake.put_opportunity(
        "006A",
        closed(
            &registration_id(1),
            true,
            4200.5,
            "2026-12-01T11:00:00.000+0000",
        ),
    );
    let third = poll.poll_once().await.expect("poll");
    // (006B, in the overlap, is read again and dropped as seen.)
    assert_eq!(
        (third.records, third.commands, third.skipped),
        (2, 0, 2),
        "{third:?}"
    );
    assert_eq!(poll.commands.commands().len(), 2);
    assert_eq!(
        poll.state
            .cursor(dealreg_crm::poll::WATERMARK)
            .expect("cursor")
            .as_deref(),
        Some("2026-12-01T11:00:00.000Z")
    );
}

/// Item 9: the org's daily API allocation spent (403 REQUEST_LIMIT_EXCEEDED, or
/// `Sforce-Limit-Info` at the limit): the adapter pauses (one hour, then one request to see
/// whether the rolling 24-hour window freed some), says so in the state `crm status`
/// reads, and sends nothing meanwhile: no retries a minute apart.
#[tokio::test]
async fn a_spent_daily_limit_pauses_the_adapter() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = state(&dir);
    let sync = outbound(
        CrmConfig::default_mapping().expect("mapping"),
        client(settings(&fake)),
        Arc::clone(&state),
    );
    fake.set_usage(15_000, 15_000);
    let mut source = ListSource(
        (0..3)
            .map(|n| registration(n, "submitted", json!({})))
            .collect(),
    );
    let report = tokio::time::timeout(Duration::from_secs(10), sync.run_once(&mut source, 1))
        .await
        .expect("a pause, not minute-by-minute retries")
        .expect("a paused run is not an error");
    let paused = report.paused.clone().expect("paused");
    assert!(paused.contains("daily API request limit"), "{paused}");
    let requests = fake.log().iter().filter(|l| l.method == "PATCH").count();
    assert_eq!(requests, 1, "one refused request, then nothing");
    assert_eq!(fake.records("Lead").len(), 0);
    // The pause outlives the process: a new run sends nothing before it ends.
    let status = dealreg_crm::sync::paused(&state, Target::Salesforce, chrono::Utc::now())
        .expect("state")
        .expect("a pause in the state");
    assert!(status.contains("daily API request limit"), "{status}");
    let again = outbound(
        CrmConfig::default_mapping().expect("mapping"),
        client(settings(&fake)),
        Arc::clone(&state),
    );
    let report = tokio::time::timeout(Duration::from_secs(10), again.run_once(&mut source, 1))
        .await
        .expect("no waiting")
        .expect("paused");
    assert!(report.paused.is_some());
    assert_eq!(fake.log().iter().filter(|l| l.method == "PATCH").count(), 1);
    assert_eq!(report.written, 0);
    // The poll pauses too, without a request.
    let polled = poll_of(&fake, Arc::clone(&state))
        .poll_once()
        .await
        .expect("paused");
    assert!(polled.paused.is_some());
    assert!(!fake.log().iter().any(|l| l.path.contains("/query")));
}
