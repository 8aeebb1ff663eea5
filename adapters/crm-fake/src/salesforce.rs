//! The fake Salesforce: the REST behaviour dealreg's Salesforce adapter relies on (see the
//! crate's documentation for what is faithful and where it comes from).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::{percent_decode, reply, throttled, World, CLIENT_ID, CLIENT_SECRET};

pub(crate) fn salesforce(
    w: &mut World,
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (Response<Full<Bytes>>, usize) {
    if path == "/services/oauth2/token" && method == "POST" {
        let form = String::from_utf8_lossy(body).to_string();
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_string()
        };
        if field("grant_type") != "client_credentials"
            || field("client_id") != CLIENT_ID
            || field("client_secret") != CLIENT_SECRET
        {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "invalid_client", "error_description": "invalid client credentials" }),
                    &[],
                ),
                0,
            );
        }
        w.tokens_issued += 1;
        let token = format!("00Dfake!token-{}", w.tokens_issued);
        w.valid_token = Some(token.clone());
        return (
            reply(
                StatusCode::OK,
                json!({ "access_token": token, "instance_url": base, "token_type": "Bearer",
                        "issued_at": "1700000000000", "signature": "fake" }),
                &[],
            ),
            0,
        );
    }
    if bearer.is_none() || bearer != w.valid_token.as_deref() {
        return (
            reply(
                StatusCode::UNAUTHORIZED,
                json!([{ "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID" }]),
                &[],
            ),
            0,
        );
    }
    w.usage.0 += 1;
    let usage = vec![(
        "Sforce-Limit-Info",
        format!("api-usage={}/{}", w.usage.0, w.usage.1),
    )];
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // services/data/vXX.X/query?q=SOQL and services/data/vXX.X/query/<locator>
    if method == "GET" && segments.len() >= 4 && segments[0] == "services" && segments[3] == "query"
    {
        let page = if segments.len() == 5 {
            let Some(rest) = w.query_pages.remove(segments[4]) else {
                return (
                    reply(
                        StatusCode::NOT_FOUND,
                        json!([{ "message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR" }]),
                        &usage,
                    ),
                    0,
                );
            };
            rest
        } else {
            let soql = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("q="))
                .map(percent_decode)
                .unwrap_or_default();
            // The one query shape the adapter sends: SELECT ... FROM Opportunity WHERE
            // SystemModstamp >= <literal> ORDER BY SystemModstamp ASC.
            let Some(since) = soql
                .split("SystemModstamp >= ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
            else {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        json!([{ "message": "unexpected query", "errorCode": "MALFORMED_QUERY" }]),
                        &usage,
                    ),
                    0,
                );
            };
            let stamp = |v: &Value| v.as_str().unwrap_or_default().replace("+0000", "Z");
            let mut found: Vec<Value> = w
                .records
                .get("Opportunity")
                .map(|t| {
                    t.values()
                        .filter(|(_, f)| {
                            f.get("SystemModstamp").map(stamp).unwrap_or_default() >= since
                        })
                        .map(|(id, f)| {
                            let mut f = f.clone();
                            f.insert("Id".into(), Value::String(id.clone()));
                            f.insert("attributes".into(), json!({ "type": "Opportunity" }));
                            Value::Object(f)
                        })
                        .collect()
                })
                .unwrap_or_default();
            found.sort_by_key(|r| r.get("SystemModstamp").map(stamp).unwrap_or_default());
            found
        };
        // Two records a page, so every test crosses pages.
        let total = page.len();
        let (now, rest) = page.split_at(total.min(2));
        let mut body = json!({ "totalSize": total, "done": rest.is_empty(), "records": now });
        if !rest.is_empty() {
            w.next_id += 1;
            let locator = format!("01gFAKE{}-2", w.next_id);
            body["nextRecordsUrl"] = Value::String(format!("/services/data/v62.0/query/{locator}"));
            w.query_pages.insert(locator, rest.to_vec());
        }
        return (reply(StatusCode::OK, body, &usage), 0);
    }
    // services/data/vXX.X/composite/sobjects/{object}/{field}
    let is_collection = segments.len() == 7
        && segments[0] == "services"
        && segments[1] == "data"
        && segments[3] == "composite"
        && segments[4] == "sobjects";
    if !is_collection || method != "PATCH" {
        return (
            reply(
                StatusCode::NOT_FOUND,
                json!([{ "message": "The requested resource does not exist", "errorCode": "NOT_FOUND" }]),
                &usage,
            ),
            0,
        );
    }
    let (object, field) = (segments[5].to_string(), segments[6].to_string());
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return (
            reply(
                StatusCode::BAD_REQUEST,
                json!([{ "message": "Unexpected character", "errorCode": "JSON_PARSER_ERROR" }]),
                &usage,
            ),
            0,
        );
    };
    let records = parsed
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if records.len() > 200 {
        return (
            reply(
                StatusCode::BAD_REQUEST,
                json!([{ "message": "Number of records exceeds the limit of 200", "errorCode": "EXCEEDED_ID_LIMIT" }]),
                &usage,
            ),
            records.len(),
        );
    }
    if let Some(seconds) = throttled(w) {
        let _ = seconds;
        return (
            reply(
                StatusCode::FORBIDDEN,
                json!([{ "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED" }]),
                &usage,
            ),
            records.len(),
        );
    }
    let mut results = Vec::new();
    for record in &records {
        let Some(fields) = record.as_object() else {
            results.push(json!({ "success": false, "errors": [{ "statusCode": "INVALID_TYPE", "message": "a record must be an object", "fields": [] }] }));
            continue;
        };
        if fields.pointer_type() != Some(object.as_str()) {
            results.push(json!({ "success": false, "errors": [{ "statusCode": "INVALID_TYPE", "message": "attributes.type does not match the URL", "fields": [] }] }));
            continue;
        }
        let Some(external_id) = fields
            .get(&field)
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            results.push(json!({ "success": false, "errors": [{ "statusCode": "REQUIRED_FIELD_MISSING", "message": format!("Required fields are missing: [{field}]"), "fields": [field] }] }));
            continue;
        };
        if w.reject.contains(&external_id) {
            results.push(json!({ "success": false, "errors": [{ "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Rejected by a validation rule", "fields": [] }] }));
            continue;
        }
        let mut written = fields.clone();
        written.remove("attributes");
        w.next_id += 1;
        let fresh_id = format!("00Q{:015}", w.next_id);
        let table = w.records.entry(object.clone()).or_default();
        let (id, created) = match table.get_mut(&external_id) {
            Some((id, existing)) => {
                for (k, v) in written {
                    existing.insert(k, v);
                }
                (id.clone(), false)
            }
            None => {
                table.insert(external_id.clone(), (fresh_id.clone(), written));
                w.creations += 1;
                w.crm_ids.insert((object.clone(), fresh_id.clone()));
                (fresh_id, true)
            }
        };
        results.push(json!({ "id": id, "success": true, "errors": [], "created": created }));
    }
    (
        reply(StatusCode::OK, Value::Array(results), &usage),
        records.len(),
    )
}

trait AttributesType {
    fn pointer_type(&self) -> Option<&str>;
}

impl AttributesType for Map<String, Value> {
    fn pointer_type(&self) -> Option<&str> {
        self.get("attributes")?.get("type")?.as_str()
    }
}
