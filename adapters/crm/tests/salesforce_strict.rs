//! The strict fake Salesforce (adapters/crm-fake/src/salesforce.rs) refuses what Salesforce
//! documents it refuses, and the adapter passes against it: conversion followed, the poll
//! reading only fields setup creates, the My Domain token host, types as the org expects,
//! polling that misses nothing, the daily API limit.

use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};

/// A token from the fake's My Domain endpoint.
async fn token(fake: &FakeCrm) -> String {
    let answer: Value = reqwest::Client::new()
        .post(fake.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    answer["access_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

async fn patch(fake: &FakeCrm, path: &str, body: Value) -> (u16, Value) {
    let token = token(fake).await;
    let answer = reqwest::Client::new()
        .patch(format!("{}{path}", fake.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("patch");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn get(fake: &FakeCrm, path: &str) -> (u16, Value) {
    let token = token(fake).await;
    let answer = reqwest::Client::new()
        .get(format!("{}{path}", fake.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

const LEADS: &str = "/services/data/v62.0/composite/sobjects/Lead/Dealreg_Registration_Id__c";
const OPPORTUNITIES: &str =
    "/services/data/v62.0/composite/sobjects/Opportunity/Dealreg_Registration_Id__c";

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
