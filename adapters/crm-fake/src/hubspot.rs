//! The fake HubSpot: the REST behaviour dealreg's HubSpot adapter relies on (see the
//! crate's documentation for what is faithful and where it comes from).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use std::collections::{BTreeMap, BTreeSet};

use crate::{reply, throttled, World, HUBSPOT_TOKEN};

/// An input that passed the checks: its id, its idProperty, its properties.
type Checked = (String, String, Map<String, Value>);

/// One property of a HubSpot object, as the Properties API describes it: its `type` and
/// whether it has unique values (only those may be an `idProperty`). Source:
/// https://developers.hubspot.com/docs/api/crm/properties (type: bool, enumeration, date,
/// dateTime, string, number; `hasUniqueValue`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Property {
    pub(crate) kind: String,
    pub(crate) unique: bool,
    /// For enumerations: the allowed internal values (empty: any).
    pub(crate) options: Vec<String>,
    /// How HubSpot shows it (`text`, `textarea`, `number`, `select`, `date`...).
    pub(crate) field_type: String,
    /// Its group (`groupName`).
    pub(crate) group: String,
    /// `modificationMetadata.readOnlyValue`: no integration may write its value.
    pub(crate) read_only: bool,
}

impl Property {
    pub(crate) fn new(kind: &str, unique: bool) -> Property {
        let field_type = match kind {
            "number" => "number",
            "enumeration" => "select",
            "date" | "datetime" => "date",
            "bool" => "booleancheckbox",
            _ => "text",
        };
        Property {
            kind: kind.to_string(),
            unique,
            options: Vec::new(),
            field_type: field_type.to_string(),
            group: String::new(),
            read_only: false,
        }
    }
}

/// The property groups a portal has by object: HubSpot's own information group, and
/// `dealreg` where setup (or docs/CRM.md's steps) made it.
pub(crate) fn default_groups(with_dealreg: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups = BTreeMap::new();
    for (object, own) in [
        ("deals", "dealinformation"),
        ("companies", "companyinformation"),
    ] {
        let mut set = BTreeSet::new();
        set.insert(own.to_string());
        if with_dealreg {
            set.insert("dealreg".to_string());
        }
        groups.insert(object.to_string(), set);
    }
    groups
}

/// A portal before dealreg: HubSpot's standard deal and company properties only, the
/// default pipeline only (what `crm setup --target hubspot` starts from).
pub(crate) fn empty_portal() -> BTreeMap<String, BTreeMap<String, Property>> {
    let mut portal = default_portal();
    for properties in portal.values_mut() {
        properties.retain(|name, _| !name.starts_with("dealreg_"));
    }
    portal
}

/// A stage's or pipeline's label from its id (the fake's boards carry no labels of their
/// own): `dealreg_deal_registration` is "deal registration".
pub(crate) fn label_of(id: &str) -> String {
    id.trim_start_matches("dealreg_").replace('_', " ")
}

/// The portal a channel team has after docs/CRM.md's "Setting up HubSpot": HubSpot's
/// standard deal and company properties the adapter writes, and the `dealreg_*`
/// properties the setup creates. No custom objects (they exist only where an Enterprise
/// portal created them: https://knowledge.hubspot.com/crm-setup/create-custom-objects).
pub(crate) fn default_portal() -> BTreeMap<String, BTreeMap<String, Property>> {
    let mut deals = BTreeMap::new();
    for (name, kind) in [
        ("dealname", "string"),
        ("amount", "number"),
        ("dealstage", "enumeration"),
        ("pipeline", "enumeration"),
        ("closedate", "datetime"),
        ("deal_currency_code", "enumeration"),
        ("hubspot_owner_id", "enumeration"),
    ] {
        deals.insert(name.to_string(), Property::new(kind, false));
    }
    deals.insert(
        "dealreg_registration_id".into(),
        Property::new("string", true),
    );
    for name in [
        "dealreg_account",
        "dealreg_product_line",
        "dealreg_partner",
        "dealreg_partner_id",
        "dealreg_motion",
        "dealreg_status",
        "dealreg_stage",
        "dealreg_protection",
        "dealreg_protection_expires_at",
        "dealreg_won_amount",
        "dealreg_sourcing_partner",
        "dealreg_influencers",
        "dealreg_attribution",
        "dealreg_next_step",
        "dealreg_notes",
    ] {
        deals.insert(name.to_string(), Property::new("string", false));
    }
    let mut companies = BTreeMap::new();
    for (name, kind) in [("name", "string"), ("domain", "string")] {
        companies.insert(name.to_string(), Property::new(kind, false));
    }
    companies.insert("dealreg_account".into(), Property::new("string", true));
    // Conflicts and commission balances on companies, which every tier has (issue 31
    // item 12): the customer's company carries its conflict flags, the partner's company
    // (by its unique dealreg_partner_id) its balances.
    companies.insert("dealreg_partner_id".into(), Property::new("string", true));
    for name in [
        "dealreg_conflicts",
        "dealreg_open_conflicts",
        "dealreg_commission_balances",
    ] {
        companies.insert(name.to_string(), Property::new("string", false));
    }
    let mut portal = BTreeMap::new();
    portal.insert("deals".to_string(), deals);
    portal.insert("companies".to_string(), companies);
    portal
}

/// The portal's deal pipelines: HubSpot's "default" with its standard stages, and the board
/// "Partner registrations" docs/CRM.md has the team (or `crm setup`) create, with the
/// stage ids dealreg's default mapping names (dealreg_<stage>, one per stage of the five
/// motions, and dealreg_closed, _won, _lost, _declined, _withdrawn, _expired, _released).
pub(crate) fn default_pipelines() -> BTreeMap<String, Vec<String>> {
    let mut pipelines = BTreeMap::new();
    pipelines.insert(
        "default".to_string(),
        [
            "appointmentscheduled",
            "qualifiedtobuy",
            "presentationscheduled",
            "decisionmakerboughtin",
            "contractsent",
            "closedwon",
            "closedlost",
        ]
        .map(String::from)
        .to_vec(),
    );
    let stages = [
        "intro_logged",
        "validate",
        "prove_value",
        "commercials",
        "closed_and_credit",
        "deal_registration",
        "qualification",
        "configure_and_quote",
        "transact",
        "launch_and_enable",
        "listing_ready",
        "private_offer",
        "procurement",
        "close_and_disburse",
        "adopt_and_expand",
        "solution_design",
        "proof_workshop",
        "delivery",
        "handoff",
        "integration_fit",
        "field_readiness",
        "pipeline_activation",
        "validation",
        "commercials_and_close",
        "closed",
        "won",
        "lost",
        "declined",
        "withdrawn",
        "expired",
        "released",
    ];
    pipelines.insert(
        "partner_registrations".to_string(),
        stages.iter().map(|s| format!("dealreg_{s}")).collect(),
    );
    pipelines
}

/// What HubSpot refuses of a deal beyond its property types: a new deal needs `dealname`
/// and `dealstage`, and a `dealstage` must be an internal stage id of the deal's pipeline
/// (the `pipeline` given, else the deal's, else "default"). Source: the deals guide,
/// https://developers.hubspot.com/docs/api/crm/deals ("When creating a new deal, you
/// should include ... dealname, dealstage and if you have multiple pipelines, pipeline. If
/// a pipeline isn't specified, the default pipeline will be used"; "you must use the
/// internal ID of a deal stage or pipeline"). The refusal's wording is the fake's.
fn check_deal(
    pipelines: &BTreeMap<String, Vec<String>>,
    properties: &Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Vec<Value> {
    let mut problems = Vec::new();
    let given = |name: &str| {
        properties
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .or_else(|| existing.and_then(|e| e.get(name)).and_then(Value::as_str))
            .filter(|v| !v.is_empty())
    };
    if existing.is_none() {
        for required in ["dealname", "dealstage"] {
            if given(required).is_none() {
                problems.push(invalid(
                    required,
                    "REQUIRED_PROPERTY",
                    &format!("{required} is required to create a deal"),
                ));
            }
        }
    }
    let pipeline = given("pipeline").unwrap_or("default");
    match pipelines.get(pipeline) {
        None => problems.push(invalid(
            "pipeline",
            "INVALID_OPTION",
            &format!("{pipeline} is not a pipeline of this portal"),
        )),
        Some(stages) => {
            if let Some(stage) = properties.get("dealstage").and_then(Value::as_str) {
                if !stage.is_empty() && !stages.iter().any(|s| s == stage) {
                    problems.push(invalid(
                        "dealstage",
                        "INVALID_OPTION",
                        &format!("{stage} is not a stage of pipeline {pipeline}"),
                    ));
                }
            }
        }
    }
    problems
}

/// One entry of HubSpot's "Property values were not valid" list (`isValid`, `message`,
/// `error`, `name`), as the documented example shows it:
/// https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations
fn invalid(name: &str, error: &str, message: &str) -> Value {
    json!({ "isValid": false, "message": message, "error": error, "name": name })
}

/// What HubSpot refuses in one input's properties.
fn check_properties(
    schema: &BTreeMap<String, Property>,
    id_property: &str,
    external_id: &str,
    properties: &Map<String, Value>,
    exists: bool,
) -> Vec<Value> {
    let mut problems = Vec::new();
    // `idProperty` must name a property with unique values (the batch upsert reference:
    // "idProperty ... refers to a property whose values are unique for the object").
    match schema.get(id_property) {
        Some(p) if p.unique => {}
        Some(_) => problems.push(invalid(
            id_property,
            "NOT_UNIQUE",
            &format!("{id_property} does not have unique values and cannot be an idProperty"),
        )),
        None => problems.push(invalid(
            id_property,
            "PROPERTY_DOESNT_EXIST",
            &format!("Property \"{id_property}\" does not exist"),
        )),
    }
    // The documented request carries the idProperty's value among the properties; a
    // record created without it would lack its own key (the fake's reading of the
    // reference's examples; not verified against a real portal).
    match properties.get(id_property) {
        Some(Value::String(v)) if v == external_id => {}
        Some(other) => problems.push(invalid(
            id_property,
            "INVALID_ID_PROPERTY_VALUE",
            &format!("{id_property} is {other}, but the input's id is {external_id}"),
        )),
        None if !exists => problems.push(invalid(
            id_property,
            "MISSING_ID_PROPERTY_VALUE",
            &format!("the properties of a new record must carry {id_property}"),
        )),
        None => {}
    }
    for (name, value) in properties {
        let Some(property) = schema.get(name) else {
            // PROPERTY_DOESNT_EXIST: HubSpot's error for a property the object does not
            // have (https://developers.hubspot.com/docs/api/crm/properties).
            problems.push(invalid(
                name,
                "PROPERTY_DOESNT_EXIST",
                &format!("Property \"{name}\" does not exist"),
            ));
            continue;
        };
        // A read-only value (`modificationMetadata.readOnlyValue`, the properties API) is
        // HubSpot's to set; the refusal's wording is the fake's.
        if property.read_only {
            problems.push(invalid(
                name,
                "READ_ONLY_VALUE",
                &format!("{name} is a read only property; its value cannot be set"),
            ));
            continue;
        }
        // Property values are strings: `properties` is `{[key: string]: string}` in the
        // batch upsert reference; "" clears a value. A null is not a string.
        let Some(text) = value.as_str() else {
            problems.push(invalid(
                name,
                "INVALID_STRING",
                &format!("{value} is not a string; send \"\" to clear a value"),
            ));
            continue;
        };
        if text.is_empty() {
            continue;
        }
        // Types (https://developers.hubspot.com/docs/api/crm/properties): a number is a
        // decimal; a date or dateTime an ISO 8601 string or epoch milliseconds; an
        // enumeration one of its options.
        let valid = match property.kind.as_str() {
            "number" => text.parse::<f64>().is_ok_and(f64::is_finite),
            "date" | "datetime" => {
                text.bytes().all(|b| b.is_ascii_digit())
                    || (text.len() >= 10
                        && text.as_bytes()[4] == b'-'
                        && text.as_bytes()[7] == b'-')
            }
            "bool" => text == "true" || text == "false",
            "enumeration" => {
                property.options.is_empty() || property.options.iter().any(|o| o == text)
            }
            _ => true,
        };
        if !valid {
            problems.push(invalid(
                name,
                "INVALID_OPTION",
                &format!("{text} is not a valid {} value", property.kind),
            ));
        }
    }
    problems
}

/// The limits around every authenticated request: the daily allowance (429 `DAILY` once
/// spent) and the rolling window (429 `SECONDLY` past its maximum), and their headers on
/// every answer (`X-HubSpot-RateLimit-Daily`, `-Daily-Remaining`, `-Max`, `-Remaining`,
/// `-Interval-Milliseconds`). Source: the usage guidelines,
/// https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines (the
/// headers; "message and policyName will indicate which limit you hit (either daily or
/// secondly)"; the daily limit resets at midnight in the account's time zone). Whether
/// a 429 carries `Retry-After` is not documented there: the fake sends none for these.
pub(crate) fn hubspot(
    w: &mut World,
    method: &str,
    path: &str,
    query: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (Response<Full<Bytes>>, usize) {
    if bearer != Some(HUBSPOT_TOKEN) || (w.hubspot_daily.is_none() && w.hubspot_window.is_none()) {
        return hubspot_request(w, method, path, query, bearer, body);
    }
    let now = std::time::Instant::now();
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some((limit, remaining)) = w.hubspot_daily {
        headers.push(("X-HubSpot-RateLimit-Daily", limit.to_string()));
        if remaining == 0 {
            headers.push(("X-HubSpot-RateLimit-Daily-Remaining", "0".into()));
            return (
                reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "status": "error", "message": "You have reached your daily limit.",
                            "errorType": "RATE_LIMIT", "correlationId": "00000000-0000-4000-8000-000000000000",
                            "policyName": "DAILY" }),
                    &headers,
                ),
                0,
            );
        }
        w.hubspot_daily = Some((limit, remaining - 1));
        headers.push((
            "X-HubSpot-RateLimit-Daily-Remaining",
            (remaining - 1).to_string(),
        ));
    }
    if let Some((max, interval, start, count)) = w.hubspot_window {
        let (start, count) = if now.duration_since(start) >= interval {
            (now, 0)
        } else {
            (start, count)
        };
        headers.push(("X-HubSpot-RateLimit-Max", max.to_string()));
        headers.push((
            "X-HubSpot-RateLimit-Interval-Milliseconds",
            interval.as_millis().to_string(),
        ));
        if count >= max {
            w.hubspot_window = Some((max, interval, start, count));
            w.hubspot_window_refusals += 1;
            headers.push(("X-HubSpot-RateLimit-Remaining", "0".into()));
            return (
                reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "status": "error", "message": "You have reached your secondly limit.",
                            "errorType": "RATE_LIMIT", "correlationId": "00000000-0000-4000-8000-000000000000",
                            "policyName": "SECONDLY" }),
                    &headers,
                ),
                0,
            );
        }
        w.hubspot_window = Some((max, interval, start, count + 1));
        headers.push((
            "X-HubSpot-RateLimit-Remaining",
            (max - count - 1).to_string(),
        ));
    }
    let (mut response, records) = hubspot_request(w, method, path, query, bearer, body);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    (response, records)
}

fn hubspot_request(
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
        // An object the portal does not have: HubSpot cannot resolve the object type and
        // refuses the request as a whole. Custom objects exist only where an Enterprise
        // portal defined them (https://knowledge.hubspot.com/crm-setup/create-custom-objects;
        // the schema API: https://hubspot-guidebook-pages.pages.dev/en/dev/DEV_ch04.html);
        // the wording is the fake's, the 400 as a VALIDATION_ERROR the documented error
        // form (not verified against a real portal).
        if !w.hubspot_schema.contains_key(&object) {
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "error",
                            "message": format!("Unable to infer object type from: {object}"),
                            "correlationId": "00000000-0000-4000-8000-000000000000",
                            "category": "VALIDATION_ERROR" }),
                    &limits(100),
                ),
                0,
            );
        }
        let inputs = match batch_inputs(body, &limits(100)) {
            Ok(inputs) => inputs,
            Err(refused) => return *refused,
        };
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
        // Every input is checked before anything is written: HubSpot fails the whole batch
        // (400, nothing written) when one input is invalid, unless every input carries an
        // `objectWriteTraceId`; then it answers 207 with a result per written record and an
        // error per refused one, each carrying its trace id. Source: the batch upsert
        // reference (`inputs[].objectWriteTraceId`, `results[].objectWriteTraceId`,
        // `errors[]`, `numErrors`), https://developers.hubspot.com/docs/api-reference/latest/crm/objects/custom-objects/batch/upsert-custom-objects
        // The whole-batch 400 without trace ids is issue 31's account of HubSpot's
        // behaviour; that page does not state it (not verified against a real portal).
        let traced = !inputs.is_empty()
            && inputs.iter().all(|i| {
                i.get("objectWriteTraceId")
                    .and_then(Value::as_str)
                    .is_some()
            });
        let schema = w.hubspot_schema.get(&object).cloned().unwrap_or_default();
        let mut checked: Vec<Result<Checked, Value>> = Vec::new();
        for input in &inputs {
            let trace = input
                .get("objectWriteTraceId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let refuse = |message: String, errors: Value, ids: Vec<String>| {
                let mut context = Map::new();
                context.insert("ids".into(), json!(ids));
                if let Some(trace) = &trace {
                    context.insert("objectWriteTraceId".into(), json!([trace]));
                }
                json!({ "status": "error", "category": "VALIDATION_ERROR", "message": message,
                        "errors": errors, "context": context })
            };
            let id_property = input
                .get("idProperty")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(external_id) = input.get("id").and_then(Value::as_str).map(str::to_string)
            else {
                checked.push(Err(refuse("an input has no id".into(), json!([]), vec![])));
                continue;
            };
            if w.reject.contains(&external_id) {
                checked.push(Err(refuse(
                    format!("Property values were not valid for {external_id}"),
                    json!([]),
                    vec![external_id],
                )));
                continue;
            }
            let properties = input
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let exists = w
                .records
                .get(&object)
                .is_some_and(|t| t.contains_key(&external_id));
            let existing = w
                .records
                .get(&object)
                .and_then(|t| t.get(&external_id))
                .map(|(_, p)| p);
            let mut problems =
                check_properties(&schema, &id_property, &external_id, &properties, exists);
            if object == "deals" {
                problems.extend(check_deal(&w.hubspot_pipelines, &properties, existing));
            }
            if !problems.is_empty() {
                checked.push(Err(refuse(
                    format!(
                        "Property values were not valid: {}",
                        Value::Array(problems.clone())
                    ),
                    Value::Array(problems),
                    vec![external_id],
                )));
                continue;
            }
            checked.push(Ok((external_id, id_property, properties)));
        }
        let count = inputs.len();
        let failed: Vec<Value> = checked
            .iter()
            .filter_map(|c| c.as_ref().err().cloned())
            .collect();
        if !failed.is_empty() && !traced {
            // The documented error body: status, message, correlationId, category
            // (https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations).
            let message = failed
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ");
            return (
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "error", "message": message,
                            "correlationId": "00000000-0000-4000-8000-000000000000",
                            "category": "VALIDATION_ERROR" }),
                    &limits(100),
                ),
                count,
            );
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (input, outcome) in inputs.iter().zip(checked) {
            let (external_id, id_property, mut properties) = match outcome {
                Ok(ok) => ok,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
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
            let mut result = json!({ "id": id, "properties": all, "new": created,
                                 "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "archived": false });
            if let Some(trace) = input.get("objectWriteTraceId") {
                result["objectWriteTraceId"] = trace.clone();
            }
            results.push(result);
        }
        if errors.is_empty() {
            return (
                reply(
                    StatusCode::OK,
                    json!({ "status": "COMPLETE", "results": results,
                            "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:00Z" }),
                    &limits(100),
                ),
                count,
            );
        }
        return (
            reply(
                StatusCode::MULTI_STATUS,
                json!({ "status": "COMPLETE", "results": results, "numErrors": errors.len(), "errors": errors,
                        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:00Z" }),
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
        let inputs = match batch_inputs(body, &limits(100)) {
            Ok(inputs) => inputs,
            Err(refused) => return *refused,
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
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
            // Each input is answered on its own: the documented answer of the batch
            // (results with from, to and associationSpec; errors; numErrors; 207 when some
            // failed): https://developers.hubspot.com/docs/api-reference/latest/crm/associations/associate-records/batch/create-associations
            let exists =
                |object: &str, id: &str| w.crm_ids.contains(&(object.to_string(), id.to_string()));
            let refused = w.association_failures > 0;
            if refused || !exists(&from, &from_id) || !exists(&to, &to_id) {
                w.association_failures = w.association_failures.saturating_sub(1);
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR",
                    "message": format!("{from} {from_id} cannot be associated with {to} {to_id}: an object does not exist or cannot be associated"),
                    "context": { "fromObjectId": [from_id], "toObjectId": [to_id] } }));
                continue;
            }
            w.associations
                .insert((from.clone(), from_id.clone(), to.clone(), to_id.clone()));
            results.push(json!({ "from": { "id": from_id }, "to": { "id": to_id },
                "associationSpec": { "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5 } }));
        }
        let (status, body) = if errors.is_empty() {
            (
                StatusCode::OK,
                json!({ "status": "COMPLETE", "results": results }),
            )
        } else {
            (
                StatusCode::MULTI_STATUS,
                json!({ "status": "COMPLETE", "results": results,
                "numErrors": errors.len(), "errors": errors }),
            )
        };
        return (reply(status, body, &limits(100)), 0);
    }
    // crm/v3/objects/{object}/search: filters EQ or IN on one property (what the adapter
    // asks: companies by domain). Answer: total, results with id and properties. Source:
    // https://developers.hubspot.com/docs/api/crm/search (filterGroups, filters with
    // propertyName, operator, value or values; properties; limit up to 100).
    if method == "POST"
        && segments.len() == 5
        && segments[..3] == ["crm", "v3", "objects"]
        && segments[4] == "search"
    {
        let object = segments[3];
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let wanted: Vec<String> = parsed
            .get("properties")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut groups: Vec<Vec<(String, Vec<String>)>> = Vec::new();
        for group in parsed
            .get("filterGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut filters = Vec::new();
            for filter in group
                .get("filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = filter
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let values: Vec<String> = match filter.get("operator").and_then(Value::as_str) {
                    Some("EQ") => filter
                        .get("value")
                        .and_then(Value::as_str)
                        .map(|v| vec![v.to_lowercase()])
                        .unwrap_or_default(),
                    Some("IN") => filter
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|v| {
                            v.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_lowercase)
                                .collect()
                        })
                        .unwrap_or_default(),
                    other => {
                        return (
                            reply(
                                StatusCode::BAD_REQUEST,
                                json!({ "status": "error", "message": format!("the fake supports EQ and IN, not {other:?}"), "category": "VALIDATION_ERROR" }),
                                &limits(100),
                            ),
                            0,
                        );
                    }
                };
                filters.push((name.to_string(), values));
            }
            groups.push(filters);
        }
        let results: Vec<Value> = w
            .records
            .get(object)
            .into_iter()
            .flat_map(|t| t.values())
            .filter(|(_, p)| {
                groups.iter().any(|g| {
                    g.iter().all(|(name, values)| {
                        p.get(name)
                            .and_then(Value::as_str)
                            .is_some_and(|v| values.contains(&v.to_lowercase()))
                    })
                })
            })
            .take(100)
            .map(|(id, p)| {
                let properties: Map<String, Value> = p
                    .iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                json!({ "id": id, "properties": properties, "archived": false })
            })
            .collect();
        return (
            reply(
                StatusCode::OK,
                json!({ "total": results.len(), "results": results }),
                &limits(100),
            ),
            0,
        );
    }
    // crm/v3/objects/{object}/batch/update: by internal id (what the adapter uses to give a
    // company it found by domain its dealreg_account). The same property rules as upsert;
    // https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/custom-objects/batch/update-custom-objects
    if method == "POST"
        && segments.len() == 6
        && segments[..3] == ["crm", "v3", "objects"]
        && segments[4..] == ["batch", "update"]
    {
        let object = segments[3].to_string();
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let inputs = parsed
            .get("inputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let schema = w.hubspot_schema.get(&object).cloned().unwrap_or_default();
        let mut results = Vec::new();
        for input in &inputs {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            let properties = input
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let bad: Vec<&String> = properties
                .iter()
                .filter(|(k, v)| !schema.contains_key(*k) || !v.is_string())
                .map(|(k, _)| k)
                .collect();
            if !bad.is_empty() {
                return (
                    reply(
                        StatusCode::BAD_REQUEST,
                        json!({ "status": "error", "message": format!("Property values were not valid: {bad:?}"), "category": "VALIDATION_ERROR" }),
                        &limits(100),
                    ),
                    inputs.len(),
                );
            }
            let Some(table) = w.records.get_mut(&object) else {
                continue;
            };
            let Some(key) = table
                .iter()
                .find(|(_, (crm_id, _))| crm_id == id)
                .map(|(k, _)| k.clone())
            else {
                continue;
            };
            let Some((crm_id, mut fields)) = table.remove(&key) else {
                continue;
            };
            // A unique property set on a record the fake keyed by its internal id: the
            // record is found by that value from now on (as an upsert by it would).
            let mut new_key = key.clone();
            for (k, v) in properties {
                if schema.get(&k).is_some_and(|p| p.unique) && key.starts_with("hs-direct-") {
                    if let Some(v) = v.as_str() {
                        new_key = v.to_string();
                    }
                }
                fields.insert(k, v);
            }
            results.push(json!({ "id": crm_id, "properties": fields.clone() }));
            table.insert(new_key, (crm_id, fields));
        }
        return (
            reply(
                StatusCode::OK,
                json!({ "status": "COMPLETE", "results": results }),
                &limits(100),
            ),
            inputs.len(),
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
    if let Some(answered) = setup_request(w, method, &segments, body) {
        return (answered, 0);
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

fn error(status: StatusCode, category: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({ "status": "error", "message": message,
                "correlationId": "00000000-0000-4000-8000-000000000000", "category": category }),
        &[],
    )
}

/// A property as the properties API answers it.
fn property_json(name: &str, property: &Property, object: &str) -> Value {
    let group = if !property.group.is_empty() {
        property.group.clone()
    } else if name.starts_with("dealreg_") {
        "dealreg".to_string()
    } else {
        format!("{}information", object.trim_end_matches('s'))
    };
    json!({ "name": name, "label": label_of(name), "type": property.kind,
            "fieldType": property.field_type, "groupName": group,
            "hasUniqueValue": property.unique, "hidden": false, "formField": false,
            "options": property.options.iter().map(|o| json!({ "label": o, "value": o, "hidden": false })).collect::<Vec<_>>(),
            "modificationMetadata": { "archivable": !property.read_only, "readOnlyDefinition": !name.starts_with("dealreg_"),
                                      "readOnlyValue": property.read_only } })
}

fn pipeline_json(w: &World, id: &str, stages: &[String]) -> Value {
    let label = |id: &str| {
        w.hubspot_labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| label_of(id))
    };
    json!({ "id": id, "label": label(id), "displayOrder": 0, "archived": false,
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
            "stages": stages.iter().enumerate().map(|(i, s)| json!({ "id": s, "label": label(s),
                "displayOrder": i, "archived": false, "metadata": { "probability": "0.5" },
                "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z" })).collect::<Vec<_>>() })
}

/// What `crm setup --target hubspot` and `crm check` call: the properties API (read an
/// object's properties, create a property, create a property group) and the pipelines API
/// for deals (read the boards, create one). Sources:
/// - properties: https://developers.hubspot.com/docs/api/crm/properties (`GET` and `POST
///   /crm/v3/properties/{objectType}`; a property needs `name`, `label`, `type`,
///   `fieldType` and `groupName`; `hasUniqueValue`; groups through `POST
///   /crm/v3/properties/{objectType}/groups` with `name` and `label`;
///   `modificationMetadata.readOnlyValue`);
/// - pipelines: https://developers.hubspot.com/docs/api/crm/pipelines (`POST
///   /crm/v3/pipelines/{objectType}` with `label`, `displayOrder` and `stages`, each stage
///   with `label`, `displayOrder` and, for deals, `metadata.probability` between 0.0 and
///   1.0; stage labels unique; HubSpot gives the pipeline and its stages their ids).
///
/// A property or group that exists already is answered 409 (the API's conflict; the
/// wording is the fake's). Nothing here is verified against a real portal.
fn setup_request(
    w: &mut World,
    method: &str,
    segments: &[&str],
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| {
        parsed
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let unknown = |object: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        )
    };
    match (method, segments) {
        ("GET", ["crm", "v3", "properties", object]) => {
            let Some(properties) = w.hubspot_schema.get(*object) else {
                return Some(unknown(object));
            };
            let results: Vec<Value> = properties
                .iter()
                .map(|(name, p)| property_json(name, p, object))
                .collect();
            Some(reply(StatusCode::OK, json!({ "results": results }), &[]))
        }
        ("POST", ["crm", "v3", "properties", object]) => {
            if !w.hubspot_schema.contains_key(*object) {
                return Some(unknown(object));
            }
            let (Some(name), Some(_label), Some(kind), Some(field_type), Some(group)) = (
                text("name"),
                text("label"),
                text("type"),
                text("fieldType"),
                text("groupName"),
            ) else {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "a property needs name, label, type, fieldType and groupName",
                ));
            };
            if !w
                .hubspot_groups
                .get(*object)
                .is_some_and(|g| g.contains(&group))
            {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    &format!("{group} is not a property group of {object}"),
                ));
            }
            if w.hubspot_schema[*object].contains_key(&name) {
                return Some(error(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    &format!("A property named '{name}' already exists."),
                ));
            }
            let mut property = Property::new(
                &kind,
                parsed.get("hasUniqueValue").and_then(Value::as_bool) == Some(true),
            );
            property.field_type = field_type;
            property.group = group;
            let answer = property_json(&name, &property, object);
            w.hubspot_schema
                .get_mut(*object)
                .expect("checked")
                .insert(name.clone(), property);
            w.hubspot_setup_created.push(format!("{object}.{name}"));
            Some(reply(StatusCode::CREATED, answer, &[]))
        }
        ("POST", ["crm", "v3", "properties", object, "groups"]) => {
            if !w.hubspot_schema.contains_key(*object) {
                return Some(unknown(object));
            }
            let (Some(name), Some(label)) = (text("name"), text("label")) else {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "a property group needs name and label",
                ));
            };
            let groups = w.hubspot_groups.entry(object.to_string()).or_default();
            if !groups.insert(name.clone()) {
                return Some(error(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    &format!("A property group named '{name}' already exists."),
                ));
            }
            w.hubspot_setup_created
                .push(format!("{object} group {name}"));
            Some(reply(
                StatusCode::CREATED,
                json!({ "name": name, "label": label, "displayOrder": -1, "archived": false }),
                &[],
            ))
        }
        ("GET", ["crm", "v3", "pipelines", "deals"]) => {
            let results: Vec<Value> = w
                .hubspot_pipelines
                .iter()
                .map(|(id, stages)| pipeline_json(w, id, stages))
                .collect();
            Some(reply(StatusCode::OK, json!({ "results": results }), &[]))
        }
        ("POST", ["crm", "v3", "pipelines", "deals"]) => {
            let Some(label) = text("label") else {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "a pipeline needs a label",
                ));
            };
            let stages = parsed
                .get("stages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut labels = BTreeSet::new();
            for stage in &stages {
                let stage_label = stage.get("label").and_then(Value::as_str).unwrap_or("");
                let probability = stage
                    .pointer("/metadata/probability")
                    .and_then(|p| match p {
                        Value::String(s) => s.parse::<f64>().ok(),
                        other => other.as_f64(),
                    });
                if stage_label.is_empty()
                    || stage.get("displayOrder").is_none()
                    || !probability.is_some_and(|p| (0.0..=1.0).contains(&p))
                {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "VALIDATION_ERROR",
                        "each deal stage needs a label, a displayOrder and metadata.probability between 0.0 and 1.0",
                    ));
                }
                if !labels.insert(stage_label.to_string()) {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        "VALIDATION_ERROR",
                        &format!("stage labels must be unique: {stage_label} appears twice"),
                    ));
                }
            }
            if stages.is_empty() {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "a pipeline needs stages",
                ));
            }
            let taken = w.hubspot_pipelines.keys().any(|id| {
                w.hubspot_labels
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| label_of(id))
                    == label
            });
            if taken {
                return Some(error(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    &format!("A pipeline labelled '{label}' already exists."),
                ));
            }
            // HubSpot gives the ids (numbers, as text).
            w.next_id += 1;
            let id = format!("{}", 70_000_000 + w.next_id);
            w.hubspot_labels.insert(id.clone(), label.clone());
            let mut ids = Vec::new();
            for stage in &stages {
                w.next_id += 1;
                let stage_id = format!("{}", 80_000_000 + w.next_id);
                let stage_label = stage.get("label").and_then(Value::as_str).unwrap_or("");
                w.hubspot_labels
                    .insert(stage_id.clone(), stage_label.to_string());
                ids.push(stage_id);
            }
            w.hubspot_pipelines.insert(id.clone(), ids.clone());
            w.hubspot_setup_created.push(format!("pipeline {label}"));
            Some(reply(StatusCode::CREATED, pipeline_json(w, &id, &ids), &[]))
        }
        _ => None,
    }
}

/// An answer and the number of records the request carried.
type Answer = (Response<Full<Bytes>>, usize);

/// The `inputs` of a batch request body (absent: none), or HubSpot's refusal of a body that
/// is not JSON (a `VALIDATION_ERROR`, the whole request).
fn batch_inputs(body: &[u8], headers: &[(&str, String)]) -> Result<Vec<Value>, Box<Answer>> {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new((
            reply(
                StatusCode::BAD_REQUEST,
                json!({ "status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR" }),
                headers,
            ),
            0,
        )));
    };
    Ok(parsed
        .get("inputs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}
