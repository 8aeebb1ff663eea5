//! Contract examples (issue 31 item 18, Salesforce): requests and answers as Salesforce's
//! documentation shows them, sent to the fake Salesforce, whose answers must have the
//! documented shape (the same keys, the same JSON types, nested). Each example names its
//! page. The JSON was transcribed from those pages as this project's documentation search
//! showed them (ids and names as printed there; where the page's example was cut off in
//! that view, the rest follows the page's own field table, as marked). Nothing here was
//! checked against a real org.

mod common;
use common::token_answer;
use dealreg_crm_fake::{FakeCrm, FieldType, Kind};
use serde_json::{json, Map, Value};

/// The shape of a JSON value: objects by their keys' shapes, arrays by their first item's,
/// anything else by its type.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => match items.first() {
            Some(first) => json!([shape(first)]),
            None => json!([]),
        },
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("boolean"),
        Value::Null => json!("null"),
    }
}

/// `answer` has the documented shape (an empty array matches any array).
fn assert_shape(documented: &Value, answer: &Value, page: &str) {
    fn same(d: &Value, a: &Value) -> bool {
        match (d, a) {
            (Value::Array(d), Value::Array(a)) => {
                d.is_empty() || a.is_empty() || same(&d[0], &a[0])
            }
            (Value::Object(d), Value::Object(a)) => {
                d.len() == a.len() && d.iter().all(|(k, v)| a.get(k).is_some_and(|w| same(v, w)))
            }
            _ => d == a,
        }
    }
    let (d, a) = (shape(documented), shape(answer));
    assert!(same(&d, &a), "{page}\ndocumented: {d}\nthe fake:   {a}");
}

async fn call(
    fake: &FakeCrm,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let token = token_answer(fake).await["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.url()))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.expect("answer");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration"
/// (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm&type=5):
/// the token answer.
#[tokio::test]
async fn the_token_answer() {
    let documented = json!({
        "access_token": "00DB0000000TfcR!AQQAQFhoK8vTMg_rKA.esrJ2bCs.OOIjJgl.9Cx6O7KqjZmHMLOyVb.U61BU9tm4xRusf7d3fD1P9oefzqS6i9sJMPWj48IK",
        "signature": "d/SxeYBxH0GSVko0HMgcUxuZy0PA2cDDz1u7g7JtDHw=",
        "scope": "web openid api id",
        "instance_url": "https://MyDomainName.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00DB0000000TfcRMAS/005B0000005Bk90IAC",
        "token_type": "Bearer",
        "issued_at": "1558553873237"
    });
    let fake = FakeCrm::start(Kind::Salesforce).await;
    assert_shape(
        &documented,
        &token_answer(&fake).await,
        "client-credentials token answer",
    );
}

/// "Upsert Records Using sObject Collections"
/// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):
/// the example request (Accounts by `MyExtId__c`) and its UpsertResults.
#[tokio::test]
async fn collections_upsert_success() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    // The example's org: Account with Name and the external id MyExtId__c.
    fake.salesforce_define_field("Account", "Name", FieldType::Text, false);
    fake.salesforce_define_field("Account", "MyExtId__c", FieldType::Text, true);
    let request = json!({
        "allOrNone": false,
        "records": [
            { "attributes": { "type": "Account" }, "Name": "Company One", "MyExtId__c": "AAA" },
            { "attributes": { "type": "Account" }, "Name": "Company Two", "MyExtId__c": "BBB" }
        ]
    });
    let documented = json!([
        { "id": "001H000000Hd9kaIAB", "success": true, "errors": [], "created": true },
        { "id": "001H000000Hd9kbIAB", "success": true, "errors": [], "created": true }
    ]);
    let path = "/services/data/v62.0/composite/sobjects/Account/MyExtId__c";
    let (status, answer) = call(&fake, reqwest::Method::PATCH, path, Some(request.clone())).await;
    assert_eq!(status, 200);
    assert_shape(&documented, &answer, "Collections upsert");
    assert_eq!(answer.as_array().map(Vec::len), Some(2));
    assert!(answer
        .as_array()
        .expect("results")
        .iter()
        .all(|r| r["created"] == json!(true)));
    // The same records again: updated, not created.
    let (_, again) = call(&fake, reqwest::Method::PATCH, path, Some(request)).await;
    assert!(again
        .as_array()
        .expect("results")
        .iter()
        .all(|r| r["created"] == json!(false)));
}

/// A partial failure with `allOrNone: false`: the good record written, the bad one a result
/// with `success: false` and its errors (`statusCode`, `message`, `fields`), as "Create
/// Records Using sObject Collections"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_create.htm)
/// shows a failed record.
#[tokio::test]
async fn collections_upsert_partial_failure() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let documented = json!([
        { "id": "001RM000003oLrHYAU", "success": true, "errors": [], "created": true },
        { "success": false, "errors": [
            { "statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": [] } ] }
    ]);
    let request = json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r1", "LastName": "One", "Company": "One" },
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r2", "LastName": "Two" }
    ] });
    let (status, answer) = call(
        &fake,
        reqwest::Method::PATCH,
        "/services/data/v62.0/composite/sobjects/Lead/Dealreg_Registration_Id__c",
        Some(request),
    )
    .await;
    assert_eq!(status, 200);
    assert_shape(
        &documented[0],
        &answer[0],
        "Collections: the written record",
    );
    assert_shape(
        &documented[1],
        &answer[1],
        "Collections: the refused record",
    );
    assert_eq!(
        answer[1]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(fake.records("Lead").len(), 1);
}

/// "Query" (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.html):
/// a first page with `nextRecordsUrl` (the example's records cut off in the view we had:
/// `Name` completed), then the last page without it.
#[tokio::test]
async fn a_query_across_pages() {
    let documented = json!({
        "totalSize": 3222,
        "done": false,
        "nextRecordsUrl": "/services/data/v65.0/query/01gRO0000016PIAYA2-500",
        "records": [ {
            "attributes": { "type": "Contact", "url": "/services/data/v56.0/sobjects/Contact/003RO0000035WQgYAM" },
            "Id": "003RO0000035WQgYAM",
            "Name": "John Smith"
        } ]
    });
    let fake = FakeCrm::start(Kind::Salesforce).await;
    for (id, name) in [("006A", "One"), ("006B", "Two"), ("006C", "Three")] {
        fake.put_opportunity(
            id,
            json!({ "Name": name, "SystemModstamp": "2026-12-01T10:00:00.000+0000" })
                .as_object()
                .cloned()
                .expect("an object"),
        );
    }
    let (status, first) = call(
        &fake,
        reqwest::Method::GET,
        "/services/data/v62.0/query?q=SELECT+Id%2C+Name+FROM+Opportunity",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_shape(&documented, &first, "Query, first page");
    let next = first["nextRecordsUrl"]
        .as_str()
        .expect("nextRecordsUrl")
        .to_string();
    let (_, last) = call(&fake, reqwest::Method::GET, &next, None).await;
    assert_eq!(last["done"], json!(true));
    assert!(last.get("nextRecordsUrl").is_none());
    assert_eq!(last["totalSize"], json!(1));
}

/// "Status Codes and Error Responses"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm):
/// an error body is a list of `{fields, message, errorCode}`.
#[tokio::test]
async fn an_error_body() {
    let documented = json!([ {
        "fields": ["Id"],
        "message": "Account ID: id value of incorrect type: 001900K0001pPuOAAU",
        "errorCode": "MALFORMED_ID"
    } ]);
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let (status, answer) = call(
        &fake,
        reqwest::Method::GET,
        "/services/data/v62.0/query?q=SELECT+Id%2C+Nope__c+FROM+Opportunity",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_shape(&documented, &answer, "error body");
    assert_eq!(answer[0]["errorCode"], json!("INVALID_FIELD"));
}
