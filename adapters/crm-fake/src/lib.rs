//! Local fakes of the CRM REST behaviour dealreg's adapters rely on, served on
//! 127.0.0.1 for tests (no CRM can be reached from the machines the suite runs on).
//!
//! What is faithful, from the CRMs' published documentation:
//! - Salesforce: the OAuth 2.0 token endpoint (client credentials; `instance_url` in the
//!   answer), sObject Collections upsert by external id (`PATCH
//!   /services/data/vXX.X/composite/sobjects/{object}/{field}`, at most 200 records,
//!   `allOrNone`, one result per record with `id`, `success`, `created`, `errors`), 401
//!   `INVALID_SESSION_ID` once a token expired, `Sforce-Limit-Info: api-usage=N/M` on every
//!   answer, 403 `REQUEST_LIMIT_EXCEEDED`.
//! - HubSpot: `POST /crm/v3/objects/{object}/batch/upsert` by `idProperty` (at most 100
//!   inputs; 200 `COMPLETE`, or 207 with `results`, `errors` naming the ids in their
//!   context, `numErrors`), `GET /crm/v3/objects/{object}/{id}?properties=`, 401 for a
//!   wrong token, 429 with `Retry-After` and `X-HubSpot-RateLimit-*` headers.
//!
//! What a test controls: records that fail validation, tokens that expire, throttling, a
//! stall (to kill an adapter mid-batch), and the log of every request with its time.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// Which CRM the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Salesforce,
    Hubspot,
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Records in an upsert.
    pub records: usize,
    pub status: u16,
}

/// A CRM record: its CRM id and its fields.
pub type Stored = (String, Map<String, Value>);

#[derive(Default)]
struct World {
    /// object -> external id -> (CRM id, fields)
    records: BTreeMap<String, BTreeMap<String, Stored>>,
    next_id: u64,
    /// Records created (not updated), over the fake's life.
    creations: u64,
    valid_token: Option<String>,
    tokens_issued: u64,
    /// External ids whose upsert fails validation.
    reject: HashSet<String>,
    /// The next `n` upserts are throttled, each with this Retry-After (seconds).
    throttle: Option<(u32, u64)>,
    /// When the last throttled answer said the client may send again.
    not_before: Option<Instant>,
    /// Requests that arrived before a throttled answer's Retry-After had passed.
    early: u32,
    /// Salesforce API usage reported: (used, limit).
    usage: (u64, u64),
    /// (object, CRM id) of every record, to find one by its CRM id at once.
    crm_ids: HashSet<(String, String)>,
    /// Associations: (from object, from id, to object, to id).
    associations: std::collections::BTreeSet<(String, String, String, String)>,
    /// Pages of query results not yet fetched, by locator.
    query_pages: std::collections::HashMap<String, Vec<Value>>,
    /// Upserts wait this long before answering (after writing).
    stall: Duration,
    log: Vec<Logged>,
}

/// A running fake CRM.
pub struct FakeCrm {
    pub kind: Kind,
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

pub const CLIENT_ID: &str = "fake-client-id";
pub const CLIENT_SECRET: &str = "fake-client-secret";
pub const HUBSPOT_TOKEN: &str = "pat-fake-token";

impl FakeCrm {
    /// Starts the fake on 127.0.0.1, on a port the system picks.
    pub async fn start(kind: Kind) -> FakeCrm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let world = Arc::new(Mutex::new(World {
            usage: (100, 15_000),
            valid_token: (kind == Kind::Hubspot).then(|| HUBSPOT_TOKEN.to_string()),
            ..World::default()
        }));
        let served = Arc::clone(&world);
        let base = format!("http://{addr}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let world = Arc::clone(&served);
                let base = base.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let world = Arc::clone(&world);
                        let base = base.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                answer(kind, &world, &base, request).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeCrm {
            kind,
            addr,
            world,
            task,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Salesforce token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.url())
    }

    /// Every record of `object`: external id -> (CRM id, fields).
    pub fn records(&self, object: &str) -> BTreeMap<String, Stored> {
        self.world()
            .records
            .get(object)
            .cloned()
            .unwrap_or_default()
    }

    /// Upserts of these external ids fail validation (until [`FakeCrm::accept_all`]).
    pub fn reject(&self, external_id: &str) {
        self.world().reject.insert(external_id.to_string());
    }

    pub fn accept_all(&self) {
        self.world().reject.clear();
    }

    /// The current token stops working: the next request is answered 401.
    pub fn expire_token(&self) {
        if self.kind == Kind::Salesforce {
            self.world().valid_token = None;
        }
    }

    /// Records created by upserts (an upsert that updates does not count): more than the
    /// records held means one was created twice.
    pub fn creations(&self) -> u64 {
        self.world().creations
    }

    pub fn tokens_issued(&self) -> u64 {
        self.world().tokens_issued
    }

    /// The next `count` upserts are throttled with `Retry-After: seconds`.
    pub fn throttle(&self, count: u32, seconds: u64) {
        self.world().throttle = Some((count, seconds));
    }

    /// Requests that came before a throttled answer's Retry-After had passed.
    pub fn early_requests(&self) -> u32 {
        self.world().early
    }

    /// The API usage reported in `Sforce-Limit-Info`.
    pub fn set_usage(&self, used: u64, limit: u64) {
        self.world().usage = (used, limit);
    }

    /// Every upsert answers only after `delay` (its records are written at once).
    pub fn stall(&self, delay: Duration) {
        self.world().stall = delay;
    }

    pub fn log(&self) -> Vec<Logged> {
        self.world().log.clone()
    }

    /// Every association made: (from object, from id, to object, to id).
    pub fn associations(&self) -> Vec<(String, String, String, String)> {
        self.world().associations.iter().cloned().collect()
    }

    /// Puts (or replaces) a Salesforce Opportunity, as its users would edit it: `fields`
    /// should carry `SystemModstamp` (`2026-12-01T10:00:00.000+0000`).
    pub fn put_opportunity(&self, id: &str, fields: Map<String, Value>) {
        let mut world = self.world();
        world
            .records
            .entry("Opportunity".into())
            .or_default()
            .insert(id.to_string(), (id.to_string(), fields));
        world.crm_ids.insert(("Opportunity".into(), id.to_string()));
    }

    /// A deal created in HubSpot by direct sales (not by dealreg): its id.
    pub fn create_deal(&self, properties: Map<String, Value>) -> String {
        let mut world = self.world();
        world.next_id += 1;
        let id = format!("{}", 9_000_000 + world.next_id);
        world
            .records
            .entry("deals".into())
            .or_default()
            .insert(format!("hs-direct-{id}"), (id.clone(), properties));
        world.crm_ids.insert(("deals".into(), id.clone()));
        id
    }
}

impl Drop for FakeCrm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: Value, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn answer(
    kind: Kind,
    world: &Arc<Mutex<World>>,
    base: &str,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let bearer = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let (response, records, stall) = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(not_before) = w.not_before {
            if now < not_before && !path.contains("oauth2/token") {
                w.early += 1;
            }
        }
        let (response, records) = match kind {
            Kind::Salesforce => salesforce(
                &mut w,
                base,
                &method,
                &path,
                &query,
                bearer.as_deref(),
                &body,
            ),
            Kind::Hubspot => hubspot(&mut w, &method, &path, &query, bearer.as_deref(), &body),
        };
        w.log.push(Logged {
            at: now,
            method,
            path,
            records,
            status: response.status().as_u16(),
        });
        let stall = if records > 0 { w.stall } else { Duration::ZERO };
        (response, records, stall)
    };
    let _ = records;
    if !stall.is_zero() {
        tokio::time::sleep(stall).await;
    }
    response
}

/// A throttled answer when one is due.
fn throttled(w: &mut World) -> Option<u64> {
    let (count, seconds) = w.throttle?;
    w.throttle = if count > 1 {
        Some((count - 1, seconds))
    } else {
        None
    };
    w.not_before = Some(Instant::now() + Duration::from_secs(seconds));
    Some(seconds)
}

fn salesforce(
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

fn hubspot(
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

/// Decodes `%XX` and `+` in a query parameter.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
