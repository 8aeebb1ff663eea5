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
use serde_json::{Map, Value};

mod hubspot;
mod salesforce;

pub use salesforce::{FieldType, INTEGRATION_USER};

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
pub(crate) struct World {
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
    /// HubSpot: the portal's objects and their properties (`hubspot::default_portal`).
    pub(crate) hubspot_schema: BTreeMap<String, BTreeMap<String, hubspot::Property>>,
    /// HubSpot: deal pipelines (boards) by internal id, with their stages' internal ids.
    pub(crate) hubspot_pipelines: BTreeMap<String, Vec<String>>,
    /// HubSpot: property groups by object.
    pub(crate) hubspot_groups: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// HubSpot: the labels of pipelines and stages by id (else made from the id).
    pub(crate) hubspot_labels: BTreeMap<String, String>,
    /// HubSpot: what the properties and pipelines APIs created, in order.
    pub(crate) hubspot_setup_created: Vec<String>,
    /// HubSpot: the next `n` association inputs are refused (each on its own, in a 207).
    pub(crate) association_failures: u32,
    /// HubSpot: the daily allowance (limit, remaining); `None`: not counted.
    pub(crate) hubspot_daily: Option<(u64, u64)>,
    /// HubSpot: the rolling window (max, interval, its start, requests in it); `None`:
    /// not counted.
    pub(crate) hubspot_window: Option<(u64, Duration, Instant, u64)>,
    /// HubSpot: requests refused for exceeding the window.
    pub(crate) hubspot_window_refusals: u64,
    /// Salesforce: the org's objects and fields, its currencies.
    pub(crate) salesforce: salesforce::SalesforceWorld,
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
            hubspot_schema: if kind == Kind::Hubspot {
                hubspot::default_portal()
            } else {
                BTreeMap::new()
            },
            hubspot_pipelines: if kind == Kind::Hubspot {
                hubspot::default_pipelines()
            } else {
                BTreeMap::new()
            },
            hubspot_groups: hubspot::default_groups(true),
            hubspot_labels: [
                ("default", "Sales Pipeline"),
                ("partner_registrations", "Partner registrations"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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

    /// HubSpot: defines (or redefines) a property of `object` (creating the object, as an
    /// Enterprise portal's custom-object schema would): `kind` is HubSpot's property type
    /// (`string`, `number`, `date`, `datetime`, `enumeration`, `bool`).
    pub fn hubspot_define_property(&self, object: &str, name: &str, kind: &str, unique: bool) {
        self.world()
            .hubspot_schema
            .entry(object.to_string())
            .or_default()
            .insert(name.to_string(), hubspot::Property::new(kind, unique));
    }

    /// HubSpot: the portal loses a property (a test of what a portal without it answers).
    pub fn hubspot_remove_property(&self, object: &str, name: &str) {
        if let Some(properties) = self.world().hubspot_schema.get_mut(object) {
            properties.remove(name);
        }
    }

    /// HubSpot: a portal before dealreg, started as such: HubSpot's standard deal and
    /// company properties, no `dealreg` group or property, the default pipeline only.
    pub async fn start_hubspot_empty_portal() -> FakeCrm {
        let fake = FakeCrm::start(Kind::Hubspot).await;
        {
            let mut world = fake.world();
            world.hubspot_schema = hubspot::empty_portal();
            world.hubspot_groups = hubspot::default_groups(false);
            world.hubspot_pipelines.retain(|id, _| id == "default");
        }
        fake
    }

    /// HubSpot: what the properties and pipelines APIs created (`deals.dealreg_status`,
    /// `deals group dealreg`, `pipeline Partner registrations`), in order.
    pub fn hubspot_setup_created(&self) -> Vec<String> {
        self.world().hubspot_setup_created.clone()
    }

    /// HubSpot: a property's value becomes read-only (`modificationMetadata.readOnlyValue`).
    pub fn hubspot_read_only(&self, object: &str, name: &str) {
        if let Some(property) = self
            .world()
            .hubspot_schema
            .get_mut(object)
            .and_then(|p| p.get_mut(name))
        {
            property.read_only = true;
        }
    }

    /// HubSpot: the deal pipelines: id -> stage ids.
    pub fn hubspot_pipelines(&self) -> BTreeMap<String, Vec<String>> {
        self.world().hubspot_pipelines.clone()
    }

    /// HubSpot: the portal loses a deal pipeline stage (a board edited by hand).
    pub fn hubspot_remove_stage(&self, pipeline: &str, stage: &str) {
        if let Some(stages) = self.world().hubspot_pipelines.get_mut(pipeline) {
            stages.retain(|s| s != stage);
        }
    }

    /// HubSpot: a company the team created before dealreg (no dealreg_account): its id.
    pub fn create_company(&self, properties: Map<String, Value>) -> String {
        let mut world = self.world();
        world.next_id += 1;
        let id = format!("{}", 8_000_000 + world.next_id);
        world
            .records
            .entry("companies".into())
            .or_default()
            .insert(format!("hs-direct-{id}"), (id.clone(), properties));
        world.crm_ids.insert(("companies".into(), id.clone()));
        id
    }

    /// HubSpot: the next `count` association inputs are refused, each on its own.
    pub fn fail_associations(&self, count: u32) {
        self.world().association_failures = count;
    }

    /// HubSpot: counts the daily allowance: `remaining` requests are left of `limit` (0:
    /// spent, every request is answered 429 `DAILY` until it is set again).
    pub fn hubspot_daily_limit(&self, limit: u64, remaining: u64) {
        self.world().hubspot_daily = Some((limit, remaining));
    }

    /// HubSpot: counts the rolling window: at most `max` requests per `interval`, then 429
    /// `SECONDLY` until the window ends.
    pub fn hubspot_window(&self, max: u64, interval: Duration) {
        self.world().hubspot_window = Some((max, interval, Instant::now(), 0));
    }

    /// HubSpot: requests refused because the window's maximum was reached.
    pub fn hubspot_window_refusals(&self) -> u64 {
        self.world().hubspot_window_refusals
    }

    /// HubSpot: the objects the portal has.
    pub fn hubspot_objects(&self) -> Vec<String> {
        self.world().hubspot_schema.keys().cloned().collect()
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

pub(crate) fn reply(
    status: StatusCode,
    body: Value,
    headers: &[(&str, String)],
) -> Response<Full<Bytes>> {
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
            Kind::Salesforce => salesforce::salesforce(
                &mut w,
                base,
                &method,
                &path,
                &query,
                bearer.as_deref(),
                &body,
            ),
            Kind::Hubspot => {
                hubspot::hubspot(&mut w, &method, &path, &query, bearer.as_deref(), &body)
            }
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
pub(crate) fn throttled(w: &mut World) -> Option<u64> {
    let (count, seconds) = w.throttle?;
    w.throttle = if count > 1 {
        Some((count - 1, seconds))
    } else {
        None
    };
    w.not_before = Some(Instant::now() + Duration::from_secs(seconds));
    Some(seconds)
}

/// Decodes `%XX` and `+` in a query parameter.
pub(crate) fn percent_decode(text: &str) -> String {
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
