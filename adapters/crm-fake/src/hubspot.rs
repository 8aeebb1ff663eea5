//! The fake HubSpot: the REST behaviour dealreg's HubSpot adapter relies on (see the
//! crate's documentation for what is faithful and where it comes from).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::{reply, throttled, World, HUBSPOT_TOKEN};

pub(crate) fn hubspot(
    w: &mut World,
    method: &str,
    path: &str,
    query: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (Response<Full<Bytes>>, usize) {
    let limits = |remaining: u64| {
        vec![
            ("X-HubSpot-RateLimit-Max", "190".to_string()),
            ("X-HubSpot-RateLimit-Remaining", remaining.to_string()),
            (
                "X-HubSpot-RateLimit-Interval-Milliseconds",
                "10000".to_string(),
            ),
        ]
    };
    if bearer != Some(HUBSPOT_TOKEN) {
        return (
            reply(
                StatusCode::UNAUTHORIZED,
                json!({ "status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION" }),
                &[],
            ),
            0,
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // crm/v3/objects/{object}/batch/upsert
    if method == "POST"
        && segments.len() == 6
        && segments[..3] == ["crm", "v3", "objects"]
        && segments[4..] == ["batch", "upsert"]
    {
        let object = segments[3].to_string();
        let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR" }),
                    &limits(100),
                ),
                0,
            );
        };
        let inputs = parsed
            .get("inputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if inputs.len() > 100 {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "error", "message": "Batch size is limited to 100", "category": "VALIDATION_ERROR" }),
                    &limits(100),
                ),
                inputs.len(),
            );
        }
        if let Some(seconds) = throttled(w) {
            // The window the limit counts in ends when the client may send again.
            let mut headers = limits(0);
            headers.retain(|(name, _)| *name != "X-HubSpot-RateLimit-Interval-Milliseconds");
            headers.push((
                "X-HubSpot-RateLimit-Interval-Milliseconds",
                (seconds * 1000).to_string(),
            ));
            headers.push(("Retry-After", seconds.to_string()));
            return (
                reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "policyName": "SECONDLY" }),
                    &headers,
                ),
                inputs.len(),
            );
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in &inputs {
            let id_property = input
                .get("idProperty")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(external_id) = input.get("id").and_then(Value::as_str).map(str::to_string)
            else {
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR", "message": "an input has no id", "context": { "ids": [] } }));
                continue;
            };
            if w.reject.contains(&external_id) {
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR", "message": format!("Property values were not valid for {external_id}"), "context": { "ids": [external_id] } }));
                continue;
            }
            let mut properties = input
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if properties.values().any(|v| !(v.is_string() || v.is_null())) {
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR", "message": "Property values must be strings", "context": { "ids": [external_id] } }));
                continue;
            }
            properties.insert(id_property.clone(), Value::String(external_id.clone()));
            w.next_id += 1;
            let fresh_id = format!("{}", 1_000_000 + w.next_id);
            let table = w.records.entry(object.clone()).or_default();
            let (id, created, all) = match table.get_mut(&external_id) {
                Some((id, existing)) => {
                    for (k, v) in properties {
                        existing.insert(k, v);
                    }
                    (id.clone(), false, existing.clone())
                }
                None => {
                    table.insert(external_id.clone(), (fresh_id.clone(), properties.clone()));
                    w.creations += 1;
                    w.crm_ids.insert((object.clone(), fresh_id.clone()));
                    (fresh_id, true, properties)
                }
            };
            results.push(json!({ "id": id, "properties": all, "new": created,
                                 "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "archived": false }));
        }
        let count = inputs.len();
        if errors.is_empty() {
            return (
                reply(
                    StatusCode::OK,
                    json!({ "status": "COMPLETE", "results": results }),
                    &limits(100),
                ),
                count,
            );
        }
        return (
            reply(
                StatusCode::MULTI_STATUS,
                json!({ "status": "COMPLETE", "results": results, "numErrors": errors.len(), "errors": errors }),
                &limits(100),
            ),
            count,
        );
    }
    // crm/v4/associations/{from}/{to}/batch/associate/default
    if method == "POST"
        && segments.len() == 8
        && segments[..3] == ["crm", "v4", "associations"]
        && segments[5..] == ["batch", "associate", "default"]
    {
        let (from, to) = (segments[3].to_string(), segments[4].to_string());
        let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR" }),
                    &limits(100),
                ),
                0,
            );
        };
        let inputs = parsed
            .get("inputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut results = Vec::new();
        for input in &inputs {
            let from_id = input
                .pointer("/from/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let to_id = input
                .pointer("/to/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let exists =
                |object: &str, id: &str| w.crm_ids.contains(&(object.to_string(), id.to_string()));
            if !exists(&from, &from_id) || !exists(&to, &to_id) {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        json!({ "status": "error", "message": "an object of the association does not exist", "category": "VALIDATION_ERROR" }),
                        &limits(100),
                    ),
                    0,
                );
            }
            w.associations
                .insert((from.clone(), from_id.clone(), to.clone(), to_id.clone()));
            results.push(json!({ "from": { "id": from_id }, "to": [{ "toObjectId": to_id, "associationTypes": [{ "category": "HUBSPOT_DEFINED", "typeId": 5 }] }] }));
        }
        return (
            reply(
                StatusCode::OK,
                json!({ "status": "COMPLETE", "results": results }),
                &limits(100),
            ),
            0,
        );
    }
    // crm/v3/objects/{object}/{id}
    if method == "GET" && segments.len() == 5 && segments[..3] == ["crm", "v3", "objects"] {
        let (object, id) = (segments[3], segments[4]);
        let wanted: Vec<String> = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("properties="))
            .map(|p| {
                p.replace("%2C", ",")
                    .split(',')
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let found = w
            .records
            .get(object)
            .and_then(|t| t.values().find(|(crm_id, _)| crm_id == id))
            .cloned();
        return match found {
            Some((crm_id, properties)) => {
                let properties: Map<String, Value> = properties
                    .into_iter()
                    .filter(|(k, _)| wanted.is_empty() || wanted.contains(k))
                    .collect();
                (
                    reply(
                        StatusCode::OK,
                        json!({ "id": crm_id, "properties": properties, "archived": false }),
                        &limits(100),
                    ),
                    0,
                )
            }
            None => (
                reply(
                    StatusCode::NOT_FOUND,
                    json!({ "status": "error", "message": "Object not found", "category": "OBJECT_NOT_FOUND" }),
                    &limits(100),
                ),
                0,
            ),
        };
    }
    (
        reply(
            StatusCode::NOT_FOUND,
            json!({ "status": "error", "message": "Not found", "category": "NOT_FOUND" }),
            &[],
        ),
        0,
    )
}
