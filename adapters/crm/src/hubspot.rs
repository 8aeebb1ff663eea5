//! HubSpot CRM v3: batch upsert by a unique property (`idProperty`), up to 100 records a
//! request, with a private-app token.
//!
//! A 207 answer is a partial success: the records in `results` were written, the others
//! failed with the `errors` (matched to records by the ids in their context when HubSpot
//! gives them). A 429 is waited out: nothing is sent before its `Retry-After` (or, when
//! HubSpot gives none, the `X-HubSpot-RateLimit-Interval-Milliseconds` window), and when
//! an answer says `X-HubSpot-RateLimit-Remaining: 0` the next request waits for the window
//! too, so the adapter does not spend the app's burst limit on refusals.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{retry_after, CompanyLink, CrmClient, CrmError, RecordOutcome, Upsert};

/// Records per batch request (HubSpot's limit).
pub const MAX_BATCH: usize = 100;

/// One HubSpot account through a private app's token.
pub struct HubspotClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    next_request_at: Mutex<Option<Instant>>,
    /// Company keys (idProperty values) this client has already matched by domain or
    /// upserted: not searched again.
    companies_seen: Mutex<std::collections::HashSet<String>>,
    /// Associations HubSpot refused, item by item: (from id, company key, its message).
    link_failures: Mutex<Vec<(String, String, String)>>,
    /// The daily allowance is spent until then: nothing is sent before it.
    daily_spent_until: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// The account's offset from UTC in minutes: its daily limit resets at its midnight.
    pub daily_reset_utc_offset_minutes: i32,
}

impl HubspotClient {
    pub fn new(base_url: &str, token: String) -> Result<HubspotClient, CrmError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        Ok(HubspotClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            next_request_at: Mutex::new(None),
            companies_seen: Mutex::new(std::collections::HashSet::new()),
            link_failures: Mutex::new(Vec::new()),
            daily_spent_until: Mutex::new(None),
            daily_reset_utc_offset_minutes: 0,
        })
    }

    fn window(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
        headers
            .get("X-HubSpot-RateLimit-Interval-Milliseconds")?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
    }

    /// When HubSpot resets the daily limit after `now`: the account's next midnight
    /// (https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines:
    /// "The daily limit resets at midnight based on your time zone setting"), a minute
    /// after it to be safe.
    pub fn daily_reset_after(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        let offset = chrono::FixedOffset::east_opt(self.daily_reset_utc_offset_minutes * 60)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("UTC"));
        let local = now.with_timezone(&offset);
        let midnight = local
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 1, 0))
            .and_then(|t| t.and_local_timezone(offset).single())
            .map(|t| t.with_timezone(&chrono::Utc));
        midnight.unwrap_or(now + chrono::Duration::hours(24))
    }

    fn spend_daily(&self) -> Duration {
        let now = chrono::Utc::now();
        let until = self.daily_reset_after(now);
        *self
            .daily_spent_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(until);
        (until - now).to_std().unwrap_or(Duration::from_secs(3600))
    }

    /// Nothing is sent while the daily allowance is spent: the sync pauses (and says so
    /// in `crm status`) for what is left of it.
    fn daily_gate(&self) -> Result<(), CrmError> {
        let until = *self
            .daily_spent_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match until {
            Some(until) if until > chrono::Utc::now() => Err(CrmError::Throttled(
                (until - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_secs(60)),
            )),
            _ => Ok(()),
        }
    }

    /// A 429: the daily limit (`policyName: DAILY`) pauses until HubSpot resets it; the
    /// rolling window is waited out (Retry-After, or the window the headers give).
    async fn throttled(&self, answer: reqwest::Response) -> CrmError {
        let wait = throttle_wait(answer.headers());
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if body.get("policyName").and_then(Value::as_str) == Some("DAILY") {
            return CrmError::Throttled(self.spend_daily());
        }
        CrmError::Throttled(wait)
    }

    fn note_limits(&self, headers: &reqwest::header::HeaderMap) {
        let daily_left = headers
            .get("X-HubSpot-RateLimit-Daily-Remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if daily_left == Some(0) {
            // The last request of the day: the next would be refused.
            self.spend_daily();
        }
        let remaining = headers
            .get("X-HubSpot-RateLimit-Remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut next = self
            .next_request_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *next = match (remaining, Self::window(headers)) {
            (Some(0), Some(window)) => Some(Instant::now() + window),
            _ => None,
        };
    }

    async fn wait_for_window(&self) {
        let at = *self
            .next_request_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = at {
            tokio::time::sleep_until(at.into()).await;
        }
    }

    /// The associations HubSpot refused (each item of a 207 on its own): (the record's
    /// id, its company's key, HubSpot's message). Each is logged as it comes.
    pub fn link_failures(&self) -> Vec<(String, String, String)> {
        self.link_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// GETs `path` and gives the status and the answer (`crm check` and `crm setup`: the
    /// properties and pipelines APIs); throttling, credentials and server errors become the
    /// request's error.
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Value), CrmError> {
        self.answer_of(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// POSTs `body` and gives the status and the answer; throttling, credentials and
    /// server errors become the request's error.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), CrmError> {
        self.answer_of(
            self.http
                .post(format!("{}{path}", self.base_url))
                .json(body),
        )
        .await
    }

    /// Sends `request` within the limits (the daily gate, the 10-second window) with the
    /// token, notes the limits it answers with, and gives its status and body; a 429,
    /// 401/403 and 5xx become the request's error.
    async fn answer_of(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), CrmError> {
        self.daily_gate()?;
        self.wait_for_window().await;
        let answer = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        self.note_limits(answer.headers());
        let status = answer.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(self.throttled(answer).await);
        }
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            401 | 403 => Err(CrmError::Auth(message(&body))),
            s if s >= 500 => Err(CrmError::Transient(format!("{status}: {}", message(&body)))),
            s => Ok((s, body)),
        }
    }

    /// HubSpot does not deduplicate companies created through the API by their domain
    /// (only imports do), so before a company is upserted by its own unique property,
    /// one the team already has with the same domain is found (search, domain IN ...) and
    /// given that property's value, so the upsert updates it instead of creating a second
    /// one. Gives the keys of the companies so matched.
    async fn match_by_domain(
        &self,
        companies: &[&crate::client::Company],
    ) -> Result<std::collections::HashSet<String>, CrmError> {
        let mut matched = std::collections::HashSet::new();
        let unseen: Vec<&&crate::client::Company> = {
            let seen = self
                .companies_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            companies
                .iter()
                .filter(|c| c.domain.is_some() && !seen.contains(&c.key))
                .collect()
        };
        for chunk in unseen.chunks(MAX_BATCH) {
            let Some(id_property) = chunk.first().map(|c| c.id_property.clone()) else {
                continue;
            };
            let domains: Vec<String> = chunk
                .iter()
                .filter_map(|c| c.domain.as_deref().map(str::to_lowercase))
                .collect();
            let (status, body) = self
                .post(
                    "/crm/v3/objects/companies/search",
                    &json!({
                        "filterGroups": [{ "filters": [{ "propertyName": "domain", "operator": "IN", "values": domains }] }],
                        "properties": ["domain", id_property],
                        "limit": 100
                    }),
                )
                .await?;
            if status != 200 {
                return Err(CrmError::Refused(format!(
                    "searching companies by domain: {status}: {}",
                    message(&body)
                )));
            }
            {
                let mut seen = self
                    .companies_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for company in chunk {
                    seen.insert(company.key.clone());
                }
            }
            let mut updates = Vec::new();
            for found in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = |name: &str| {
                    found
                        .pointer(&format!("/properties/{name}"))
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                };
                let (Some(id), Some(domain)) =
                    (found.get("id").and_then(Value::as_str), text("domain"))
                else {
                    continue;
                };
                if text(&id_property).is_some() {
                    // Already dealreg's (or another account's): the upsert finds it.
                    continue;
                }
                let Some(company) = chunk.iter().find(|c| {
                    c.domain
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case(domain))
                }) else {
                    continue;
                };
                if matched.insert(company.key.clone()) {
                    updates.push(
                        json!({ "id": id, "properties": { id_property.clone(): company.key } }),
                    );
                }
            }
            if !updates.is_empty() {
                let (status, body) = self
                    .post(
                        "/crm/v3/objects/companies/batch/update",
                        &json!({ "inputs": updates }),
                    )
                    .await?;
                if !(200..300).contains(&status) {
                    return Err(CrmError::Refused(format!(
                        "giving companies found by domain their {id_property}: {status}: {}",
                        message(&body)
                    )));
                }
            }
        }
        Ok(matched)
    }

    /// GET one object with the named properties: the inbound side reads a deal a webhook
    /// names. `Ok(None)` when HubSpot has no such object.
    pub async fn get_object(
        &self,
        object: &str,
        id: &str,
        properties: &[&str],
    ) -> Result<Option<Value>, CrmError> {
        let request = self
            .http
            .get(format!("{}/crm/v3/objects/{object}/{id}", self.base_url))
            .query(&[("properties", properties.join(","))]);
        let (status, body) = self.answer_of(request).await?;
        match reqwest::StatusCode::from_u16(status) {
            Ok(reqwest::StatusCode::NOT_FOUND) => Ok(None),
            Ok(s) if s.is_success() => Ok(Some(body)),
            Ok(s) => Err(CrmError::Refused(format!("{s}: {}", message(&body)))),
            Err(_) => Err(CrmError::Refused(format!("{status}: {}", message(&body)))),
        }
    }
}

/// A property value as HubSpot takes it: a string; "" for no value (clears it).
fn property_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn throttle_wait(headers: &reqwest::header::HeaderMap) -> Duration {
    retry_after(headers)
        .or_else(|| HubspotClient::window(headers))
        .unwrap_or(Duration::from_secs(10))
}

pub(crate) fn message(body: &Value) -> String {
    let text = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    text.chars().take(500).collect()
}

impl CrmClient for HubspotClient {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn upsert(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[Upsert],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        self.daily_gate()?;
        self.wait_for_window().await;
        // Companies written by their own unique property (conflicts on the customer's
        // company) are matched by domain first, as the deals' companies are.
        if object == "companies" {
            let companies: Vec<crate::client::Company> = records
                .iter()
                .filter_map(|r| {
                    let domain = r.fields.get("domain").and_then(Value::as_str)?;
                    Some(crate::client::Company {
                        id_property: external_id_field.to_string(),
                        key: r.external_id.clone(),
                        name: None,
                        domain: Some(domain.to_string()),
                    })
                })
                .collect();
            if !companies.is_empty() {
                let refs: Vec<&crate::client::Company> = companies.iter().collect();
                self.match_by_domain(&refs).await?;
            }
        }
        // What the batch upsert reference shows: each input with its `idProperty`, its `id`
        // (the idProperty's value, also among its `properties`), string values ("" clears
        // a value; HubSpot has no null), and an `objectWriteTraceId` (its position here),
        // without which one invalid input fails the whole batch.
        let inputs: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut properties: serde_json::Map<String, Value> = r
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(property_text(v))))
                    .collect();
                properties.insert(
                    external_id_field.to_string(),
                    Value::String(r.external_id.clone()),
                );
                json!({ "idProperty": external_id_field, "id": r.external_id,
                        "properties": properties, "objectWriteTraceId": i.to_string() })
            })
            .collect();
        let answer = self
            .http
            .post(format!(
                "{}/crm/v3/objects/{object}/batch/upsert",
                self.base_url
            ))
            .bearer_auth(&self.token)
            .json(&json!({ "inputs": inputs }))
            .send()
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        self.note_limits(answer.headers());
        let status = answer.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(self.throttled(answer).await);
        }
        let body: Value = answer
            .json()
            .await
            .map_err(|e| CrmError::Transient(format!("an answer that is not JSON: {e}")))?;
        match status.as_u16() {
            200 | 201 | 207 => {}
            401 | 403 => return Err(CrmError::Auth(message(&body))),
            s if s >= 500 => {
                return Err(CrmError::Transient(format!("{status}: {}", message(&body))))
            }
            _ => return Err(CrmError::Refused(format!("{status}: {}", message(&body)))),
        }
        // Written records, by their trace id (and, where an answer carries none, by the
        // value of their idProperty).
        let position_of = |value: &Value| -> Option<usize> {
            if let Some(trace) = value.get("objectWriteTraceId").and_then(Value::as_str) {
                return trace.parse::<usize>().ok().filter(|i| *i < records.len());
            }
            let key = value
                .get("properties")
                .and_then(|p| p.get(external_id_field))
                .and_then(Value::as_str)?;
            records.iter().position(|r| r.external_id == key)
        };
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        for result in body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(at), Some(id)) = (
                position_of(result),
                result.get("id").and_then(Value::as_str),
            ) else {
                continue;
            };
            let created = result.get("new").and_then(Value::as_bool).unwrap_or(false);
            outcomes[at] = Some(RecordOutcome::Upserted {
                crm_id: id.to_string(),
                created,
            });
        }
        let errors: Vec<&Value> = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| e.iter().collect())
            .unwrap_or_default();
        // An error names its input by trace id in its context (or, failing that, by the
        // idProperty value among the context's ids).
        let error_position = |e: &Value| -> Option<usize> {
            let named = |key: &str| {
                e.pointer(&format!("/context/{key}"))
                    .and_then(Value::as_array)
                    .and_then(|v| v.first())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            if let Some(trace) = named("objectWriteTraceId") {
                return trace.parse::<usize>().ok().filter(|i| *i < records.len());
            }
            let id = named("ids")?;
            records.iter().position(|r| r.external_id == id)
        };
        let mut unnamed: Vec<&Value> = Vec::new();
        for error in &errors {
            let outcome = RecordOutcome::Failed {
                code: error
                    .get("category")
                    .and_then(Value::as_str)
                    .unwrap_or("ERROR")
                    .to_string(),
                message: message(error),
                retryable: false,
            };
            match error_position(error) {
                Some(at) if outcomes[at].is_none() => outcomes[at] = Some(outcome),
                _ => unnamed.push(error),
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Some(o) => o,
                // An error that names no input: HubSpot's; the record is tried again.
                None => match unnamed.first() {
                    Some(e) => RecordOutcome::Failed {
                        code: e
                            .get("category")
                            .and_then(Value::as_str)
                            .unwrap_or("ERROR")
                            .to_string(),
                        message: message(e),
                        retryable: false,
                    },
                    None => RecordOutcome::Failed {
                        code: "MISSING_RESULT".into(),
                        message: "HubSpot returned no result and no error for this record".into(),
                        retryable: true,
                    },
                },
            })
            .collect())
    }

    /// Upserts the companies by their unique property, then associates each record with
    /// its company (v4 default association, in batches). A company HubSpot refuses is
    /// logged and its records stay unlinked; the rest are linked.
    async fn link_companies(&self, object: &str, links: &[CompanyLink]) -> Result<(), CrmError> {
        let mut companies: Vec<&crate::client::Company> = Vec::new();
        for link in links {
            if !companies.iter().any(|c| c.key == link.company.key) {
                companies.push(&link.company);
            }
        }
        let matched = self.match_by_domain(&companies).await?;
        let mut ids: HashMap<String, String> = HashMap::new();
        for chunk in companies.chunks(MAX_BATCH) {
            let Some(id_property) = chunk.first().map(|c| c.id_property.clone()) else {
                continue;
            };
            let upserts: Vec<Upsert> = chunk
                .iter()
                .map(|c| {
                    let mut fields = serde_json::Map::new();
                    // A company the team already had keeps its own name.
                    if let Some(name) = c.name.as_ref().filter(|_| !matched.contains(&c.key)) {
                        fields.insert("name".into(), Value::String(name.clone()));
                    }
                    if let Some(domain) = &c.domain {
                        fields.insert("domain".into(), Value::String(domain.clone()));
                    }
                    Upsert {
                        external_id: c.key.clone(),
                        fields,
                    }
                })
                .collect();
            let outcomes = self.upsert("companies", &id_property, &upserts).await?;
            for (company, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    RecordOutcome::Upserted { crm_id, .. } => {
                        self.companies_seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(company.key.clone());
                        ids.insert(company.key.clone(), crm_id);
                    }
                    RecordOutcome::Failed { code, message, .. } => {
                        tracing::warn!(company = %company.key, %code, %message, "a company could not be upserted; its records stay unlinked");
                    }
                }
            }
        }
        let pairs: Vec<(&CompanyLink, &String)> = links
            .iter()
            .filter_map(|l| ids.get(&l.company.key).map(|to| (l, to)))
            .collect();
        for chunk in pairs.chunks(MAX_BATCH) {
            let inputs: Vec<Value> = chunk
                .iter()
                .map(|(l, to)| json!({ "from": { "id": l.from_id }, "to": { "id": to } }))
                .collect();
            let (status, body) = self
                .post(
                    &format!("/crm/v4/associations/{object}/companies/batch/associate/default"),
                    &json!({ "inputs": inputs }),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(CrmError::Refused(format!("{status}: {}", message(&body))));
            }
            // A 207 is read item by item: the links in `results` were made, each error
            // names the pair it refused (its context's from and to ids, where given).
            for error in body
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let named = |key: &str| {
                    error
                        .pointer(&format!("/context/{key}"))
                        .and_then(Value::as_array)
                        .and_then(|v| v.first())
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let from = named("fromObjectId").unwrap_or_default();
                let to = named("toObjectId").unwrap_or_default();
                let company = chunk
                    .iter()
                    .find(|(l, t)| l.from_id == from && **t == to)
                    .map(|(l, _)| l.company.key.clone())
                    .unwrap_or_default();
                let text = message(error);
                tracing::warn!(record = %from, %company, message = %text, "HubSpot refused to link a record to its company; the record is written, unlinked");
                self.link_failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((from, company, text));
            }
        }
        Ok(())
    }
}
