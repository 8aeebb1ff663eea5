//! Salesforce REST: sObject Collections upsert by external id, with an OAuth 2.0
//! client-credentials token fetched on first use and again when Salesforce answers 401.
//!
//! Why Collections: up to 200 records a request, each with its own result
//! (`allOrNone: false`), so one bad record does not hold back the other 199. The
//! `Sforce-Limit-Info: api-usage=USED/LIMIT` header of every answer is read: above
//! `limit_share` of the org's daily API requests the client sends at most one request per
//! `limit_pause`, so the adapter never exhausts the requests the org's other integrations
//! need.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::client::{retry_after, CrmClient, CrmError, RecordOutcome, Upsert};
use crate::mapping::{
    SalesforceSettings, MY_DOMAIN_HINT, PARTNER_ACCOUNT_RELATIONSHIP,
    PARTNER_ACCOUNT_STANDARD_RELATIONSHIP,
};

/// Records per Collections request (Salesforce's limit).
pub const MAX_BATCH: usize = 200;

/// Per-record error codes Salesforce documents as worth retrying.
const RETRYABLE: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "REQUEST_RUNNING_TOO_LONG",
];

#[derive(Debug, Clone)]
struct Token {
    access_token: String,
    instance_url: String,
    /// The integration user's id: the last segment of the token answer's `id` URL
    /// (`https://login.salesforce.com/id/<org id>/<user id>`).
    user_id: Option<String>,
}

/// A Salesforce org, as one connected app sees it.
pub struct SalesforceClient {
    http: reqwest::Client,
    settings: SalesforceSettings,
    /// `<my_domain>/services/oauth2/token` (or `token_url`), checked when the client is made.
    token_endpoint: String,
    client_id: String,
    client_secret: String,
    token: Mutex<Option<Token>>,
    /// Share of the daily API limit above which requests are spaced out.
    pub limit_share: f64,
    pub limit_pause: Duration,
    /// How long the adapter pauses once the org's daily API allocation is spent (403
    /// `REQUEST_LIMIT_EXCEEDED` "TotalRequests", or `api-usage` at its limit). Salesforce's
    /// window is a rolling 24 hours with no reset time: the requests of a day ago free up
    /// gradually, so after this pause one request shows whether there is room again.
    pub daily_pause: Duration,
    /// No request before this instant: the daily allocation is spent.
    paused_until: Mutex<Option<Instant>>,
    next_request_at: Mutex<Option<Instant>>,
    last_usage: Mutex<Option<(u64, u64)>>,
    /// Converted Leads followed to their Opportunity: the Lead's external id -> the
    /// Opportunity's id (learned from `CANNOT_UPDATE_CONVERTED_LEAD` and the Lead's
    /// `ConvertedOpportunityId`).
    moved: Mutex<HashMap<String, String>>,
}

/// The error Salesforce answers for a write to a converted Lead.
pub const CONVERTED_LEAD: &str = "CANNOT_UPDATE_CONVERTED_LEAD";

impl SalesforceClient {
    pub fn new(
        settings: SalesforceSettings,
        client_id: String,
        client_secret: String,
    ) -> Result<SalesforceClient, CrmError> {
        // The generic login hosts are refused here, before any request: Salesforce would
        // refuse the client-credentials flow there.
        let token_endpoint = settings.token_endpoint().map_err(CrmError::Auth)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        Ok(SalesforceClient {
            http,
            settings,
            token_endpoint,
            client_id,
            client_secret,
            token: Mutex::new(None),
            limit_share: 0.9,
            limit_pause: Duration::from_secs(60),
            daily_pause: Duration::from_secs(3600),
            paused_until: Mutex::new(None),
            next_request_at: Mutex::new(None),
            last_usage: Mutex::new(None),
            moved: Mutex::new(HashMap::new()),
        })
    }

    /// The last `api-usage` Salesforce reported: (used, limit).
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        *self.last_usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn token(&self, fresh: bool) -> Result<Token, CrmError> {
        if !fresh {
            if let Some(token) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return Ok(token);
            }
        }
        let answer = self
            .http
            .post(&self.token_endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| CrmError::Transient(format!("token request: {e}")))?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body
                .get("error_description")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            if reason.contains("not supported on this domain") {
                // What Salesforce answers the client-credentials flow on a generic login
                // host (or a host that is not the org's My Domain).
                return Err(CrmError::Auth(format!(
                    "{} answered {status}: {reason}; {MY_DOMAIN_HINT}",
                    self.token_endpoint
                )));
            }
            return Err(if status.is_server_error() {
                CrmError::Transient(format!("token endpoint answered {status}: {reason}"))
            } else {
                CrmError::Auth(format!("token endpoint answered {status}: {reason}"))
            });
        }
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| CrmError::Auth("the token answer has no access_token".into()))?;
        let instance_url = body
            .get("instance_url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.settings.instance_url.clone())
            .or_else(|| self.settings.my_domain.clone())
            .ok_or_else(|| {
                CrmError::Auth("no instance_url: set salesforce.instance_url in crm.toml".into())
            })?;
        let user_id = body
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        let token = Token {
            access_token: access_token.to_string(),
            instance_url: instance_url.trim_end_matches('/').to_string(),
            user_id,
        };
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    fn note_usage(&self, headers: &reqwest::header::HeaderMap) {
        let Some(usage) = headers
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_api_usage)
        else {
            return;
        };
        *self.last_usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
        let (used, limit) = usage;
        let mut next = self
            .next_request_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if limit > 0 && used >= limit {
            drop(next);
            self.pause_for_the_day();
            return;
        }
        if limit > 0 && used as f64 >= limit as f64 * self.limit_share {
            tracing::warn!(
                used,
                limit,
                "Salesforce API usage is high: spacing requests out"
            );
            *next = Some(Instant::now() + self.limit_pause);
        } else {
            *next = None;
        }
    }

    /// Waits while requests are spaced out; while the daily allocation is spent, sends
    /// nothing and answers how long is left (the sync pauses instead of retrying).
    async fn wait_for_limit(&self) -> Result<(), CrmError> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(CrmError::Throttled(left));
            }
        }
        let at = *self
            .next_request_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = at {
            tokio::time::sleep_until(at.into()).await;
        }
        Ok(())
    }

    /// The daily allocation is spent: nothing is sent for `daily_pause`.
    fn pause_for_the_day(&self) -> Duration {
        tracing::warn!(pause = ?self.daily_pause, "Salesforce's daily API request limit is spent: pausing");
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + self.daily_pause);
        self.daily_pause
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` to its last page; every record, in
    /// the query's order. A 401 fetches a new token once, as upserts do.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, CrmError> {
        let mut token = self.token(false).await?;
        let mut next = format!(
            "/services/data/{}/query?q={}",
            self.settings.api_version,
            encode_query(soql)
        );
        let mut records = Vec::new();
        loop {
            self.wait_for_limit().await?;
            let mut answer = self.get(&token, &next).await?;
            if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
                token = self.token(true).await?;
                answer = self.get(&token, &next).await?;
            }
            let body = self.body_of(answer).await?;
            if let Some(page) = body.get("records").and_then(Value::as_array) {
                records.extend(page.iter().cloned());
            }
            match body.get("nextRecordsUrl").and_then(Value::as_str) {
                Some(url) if body.get("done").and_then(Value::as_bool) != Some(true) => {
                    next = url.to_string();
                }
                _ => return Ok(records),
            }
        }
    }

    /// The body of a successful answer; any other answer as the error it means (and the
    /// API usage it reports noted either way).
    async fn body_of(&self, answer: reqwest::Response) -> Result<Value, CrmError> {
        self.note_usage(answer.headers());
        let status = answer.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            return Err(CrmError::Throttled(
                retry_after(answer.headers()).unwrap_or(self.limit_pause),
            ));
        }
        let body: Value = answer
            .json()
            .await
            .map_err(|e| CrmError::Transient(format!("an answer that is not JSON: {e}")))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(CrmError::Auth(error_text(&body)));
        }
        if status == reqwest::StatusCode::FORBIDDEN
            && error_codes(&body)
                .iter()
                .any(|c| c == "REQUEST_LIMIT_EXCEEDED")
        {
            // "TotalRequests Limit exceeded.": the org's daily allocation ("API Request
            // Limits and Allocations"); otherwise the concurrent long-request limit, which
            // frees up within seconds.
            if error_text(&body).contains("TotalRequests") {
                return Err(CrmError::Throttled(self.pause_for_the_day()));
            }
            return Err(CrmError::Throttled(self.limit_pause));
        }
        if status.is_server_error() {
            return Err(CrmError::Transient(format!(
                "{status}: {}",
                error_text(&body)
            )));
        }
        if !status.is_success() {
            return Err(CrmError::Refused(format!(
                "{status}: {}",
                error_text(&body)
            )));
        }
        Ok(body)
    }

    /// The integration user's id, from the token answer (a token is fetched if need be).
    pub async fn user_id(&self) -> Result<Option<String>, CrmError> {
        Ok(self.token(false).await?.user_id)
    }

    /// One JSON request to `/services/data/<version><path>` (a new token once on 401):
    /// the status and the body of the answer, whatever the status (the API usage it
    /// reports is noted; a throttled answer or the daily limit is an error as elsewhere).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), CrmError> {
        self.wait_for_limit().await?;
        let url_path = format!("/services/data/{}{path}", self.settings.api_version);
        let send = |token: Token| {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{url_path}", token.instance_url))
                .bearer_auth(token.access_token);
            if let Some(body) = body {
                request = request.json(body);
            }
            request.send()
        };
        let mut answer = send(self.token(false).await?)
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            answer = send(self.token(true).await?)
                .await
                .map_err(|e| CrmError::Transient(e.to_string()))?;
        }
        let status = answer.status();
        if status.is_client_error()
            && status != reqwest::StatusCode::UNAUTHORIZED
            && status != reqwest::StatusCode::FORBIDDEN
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            // A refusal the caller reads (404 for an object the org lacks, 400 with
            // Salesforce's error list).
            self.note_usage(answer.headers());
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            return Ok((status, body));
        }
        let body = self.body_of(answer).await?;
        Ok((status, body))
    }

    /// `GET /sobjects/{object}/describe`: the object's fields; `None` when the org has no
    /// such object (404).
    pub async fn describe(&self, object: &str) -> Result<Option<Value>, CrmError> {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/sobjects/{object}/describe"),
                None,
            )
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(CrmError::Refused(format!(
                "describe {object}: {status}: {}",
                error_text(&body)
            )));
        }
        Ok(Some(body))
    }

    async fn get(&self, token: &Token, path: &str) -> Result<reqwest::Response, CrmError> {
        self.http
            .get(format!("{}{path}", token.instance_url))
            .bearer_auth(&token.access_token)
            .send()
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))
    }

    /// One Collections upsert of `records`, a new token once on 401.
    async fn upsert_collection(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[Upsert],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        self.wait_for_limit().await?;
        let mut token = self.token(false).await?;
        let mut answer = self
            .send_collection(&token, object, external_id_field, records)
            .await?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            // INVALID_SESSION_ID: the token expired or was revoked; one fresh token.
            tracing::info!("Salesforce answered 401: fetching a new token");
            token = self.token(true).await?;
            answer = self
                .send_collection(&token, object, external_id_field, records)
                .await?;
        }
        let body = self.body_of(answer).await?;
        let Value::Array(results) = body else {
            return Err(CrmError::Transient(
                "the answer is not a list of results".into(),
            ));
        };
        if results.len() != records.len() {
            return Err(CrmError::Transient(format!(
                "{} results for {} records",
                results.len(),
                records.len()
            )));
        }
        Ok(results.iter().map(outcome).collect())
    }

    /// The Opportunity each converted Lead became: (external id, ConvertedOpportunityId)
    /// of those converted with one.
    async fn converted_leads(
        &self,
        external_id_field: &str,
        external_ids: &[&str],
    ) -> Result<Vec<(String, String)>, CrmError> {
        let mut found = Vec::new();
        for chunk in external_ids.chunks(100) {
            let list: Vec<String> = chunk.iter().map(|e| soql_string(e)).collect();
            let soql = format!(
                "SELECT Id, {external_id_field}, IsConverted, ConvertedOpportunityId FROM Lead WHERE {external_id_field} IN ({})",
                list.join(", ")
            );
            for lead in self.query(&soql).await? {
                let converted = lead.get("IsConverted").and_then(Value::as_bool) == Some(true);
                let external_id = lead.get(external_id_field).and_then(Value::as_str);
                let opportunity = lead.get("ConvertedOpportunityId").and_then(Value::as_str);
                if let (true, Some(e), Some(o)) = (converted, external_id, opportunity) {
                    found.push((e.to_string(), o.to_string()));
                }
            }
        }
        Ok(found)
    }

    /// sObject Collections update (`PATCH /services/data/vXX.X/composite/sobjects`) of
    /// records of `object` by their Salesforce id; one outcome per record, in order.
    pub async fn update_by_id(
        &self,
        object: &str,
        updates: &[(String, Map<String, Value>)],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        let records: Vec<Value> = updates
            .iter()
            .map(|(id, fields)| {
                let mut record = fields.clone();
                record.insert("attributes".into(), json!({ "type": object }));
                record.insert("id".into(), Value::String(id.clone()));
                Value::Object(record)
            })
            .collect();
        let body = json!({ "allOrNone": false, "records": records });
        self.wait_for_limit().await?;
        let mut token = self.token(false).await?;
        let path = format!(
            "/services/data/{}/composite/sobjects",
            self.settings.api_version
        );
        let send = |token: Token| {
            self.http
                .patch(format!("{}{path}", token.instance_url))
                .bearer_auth(token.access_token)
                .json(&body)
                .send()
        };
        let mut answer = send(token.clone())
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            token = self.token(true).await?;
            answer = send(token)
                .await
                .map_err(|e| CrmError::Transient(e.to_string()))?;
        }
        let Value::Array(results) = self.body_of(answer).await? else {
            return Err(CrmError::Transient(
                "the answer is not a list of results".into(),
            ));
        };
        if results.len() != updates.len() {
            return Err(CrmError::Transient(format!(
                "{} results for {} records",
                results.len(),
                updates.len()
            )));
        }
        Ok(results
            .iter()
            .zip(updates)
            .map(|(result, (id, _))| match outcome(result) {
                RecordOutcome::Upserted { .. } => RecordOutcome::Upserted {
                    crm_id: id.clone(),
                    created: false,
                },
                failed => failed,
            })
            .collect())
    }

    async fn send_collection(
        &self,
        token: &Token,
        object: &str,
        external_id_field: &str,
        records: &[Upsert],
    ) -> Result<reqwest::Response, CrmError> {
        let url = format!(
            "{}/services/data/{}/composite/sobjects/{}/{}",
            token.instance_url, self.settings.api_version, object, external_id_field
        );
        let records: Vec<Value> = records
            .iter()
            .map(|r| {
                let mut fields = Map::new();
                fields.insert("attributes".into(), json!({ "type": object }));
                fields.insert(
                    external_id_field.to_string(),
                    Value::String(r.external_id.clone()),
                );
                for (k, v) in &r.fields {
                    fields.insert(k.clone(), v.clone());
                }
                Value::Object(fields)
            })
            .collect();
        self.http
            .patch(url)
            .bearer_auth(&token.access_token)
            .json(&json!({ "allOrNone": false, "records": records }))
            .send()
            .await
            .map_err(|e| CrmError::Transient(e.to_string()))
    }
}

impl CrmClient for SalesforceClient {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn upsert(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[Upsert],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        if object != "Lead" {
            return self
                .upsert_collection(object, external_id_field, records)
                .await;
        }
        // Leads already known to be converted go to their Opportunity at once; the others
        // are upserted, and those Salesforce answers CANNOT_UPDATE_CONVERTED_LEAD for are
        // looked up (IsConverted, ConvertedOpportunityId) and written to the Opportunity.
        let known: HashMap<String, String> =
            self.moved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        let fresh: Vec<usize> = (0..records.len())
            .filter(|i| !known.contains_key(&records[*i].external_id))
            .collect();
        if !fresh.is_empty() {
            let batch: Vec<Upsert> = fresh.iter().map(|i| records[*i].clone()).collect();
            let answered = self
                .upsert_collection(object, external_id_field, &batch)
                .await?;
            for (i, outcome) in fresh.iter().zip(answered) {
                outcomes[*i] = Some(outcome);
            }
        }
        let converted: Vec<&str> = outcomes
            .iter()
            .zip(records)
            .filter(|(o, _)| matches!(o, Some(RecordOutcome::Failed { code, .. }) if code == CONVERTED_LEAD))
            .map(|(_, r)| r.external_id.as_str())
            .collect();
        if !converted.is_empty() {
            let found = self.converted_leads(external_id_field, &converted).await?;
            let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
            for (external_id, opportunity) in found {
                moved.insert(external_id, opportunity);
            }
        }
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let to_opportunity: Vec<usize> = (0..records.len())
            .filter(|i| match &outcomes[*i] {
                None => true,
                Some(RecordOutcome::Failed { code, .. }) => {
                    code == CONVERTED_LEAD && moved.contains_key(&records[*i].external_id)
                }
                Some(_) => false,
            })
            .collect();
        if !to_opportunity.is_empty() {
            let updates: Vec<(String, Map<String, Value>)> = to_opportunity
                .iter()
                .map(|i| {
                    let record = &records[*i];
                    (
                        moved[&record.external_id].clone(),
                        opportunity_fields(
                            external_id_field,
                            record,
                            self.settings.partner_accounts,
                        ),
                    )
                })
                .collect();
            let answered = self.update_by_id("Opportunity", &updates).await?;
            for (i, outcome) in to_opportunity.iter().zip(answered) {
                outcomes[*i] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(RecordOutcome::Failed {
                    code: "UNKNOWN".into(),
                    message: "no answer for this record".into(),
                    retryable: true,
                })
            })
            .collect())
    }
}

/// What a converted Lead's record writes on its Opportunity: the external id, the custom
/// fields (the `Dealreg_*__c` fields setup creates on both objects and maps on conversion)
/// and the custom relationships (`Dealreg_Partner_Account__r`, the partner's Account by
/// its external id); with partner accounts, the partner's Account in the Opportunity's
/// standard `PartnerAccountId` too (`PartnerAccount`). The Lead's standard fields
/// (`Company`, `LastName`, `LeadSource`) stay on the Lead.
fn opportunity_fields(
    external_id_field: &str,
    record: &Upsert,
    partner_accounts: bool,
) -> Map<String, Value> {
    let mut fields: Map<String, Value> = record
        .fields
        .iter()
        .filter(|(k, _)| k.ends_with("__c") || k.ends_with("__r"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if partner_accounts {
        if let Some(partner) = fields.get(PARTNER_ACCOUNT_RELATIONSHIP).cloned() {
            fields.insert(PARTNER_ACCOUNT_STANDARD_RELATIONSHIP.into(), partner);
        }
    }
    fields.insert(
        external_id_field.to_string(),
        Value::String(record.external_id.clone()),
    );
    fields
}

/// A SOQL string literal.
fn soql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn outcome(result: &Value) -> RecordOutcome {
    if result.get("success").and_then(Value::as_bool) == Some(true) {
        return RecordOutcome::Upserted {
            crm_id: result
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            created: result
                .get("created")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
    }
    let first = result
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .cloned()
        .unwrap_or(Value::Null);
    let code = first
        .get("statusCode")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_string();
    let mut message = first
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_string();
    if let Some(fields) = first.get("fields").and_then(Value::as_array) {
        if !fields.is_empty() {
            let names: Vec<String> = fields
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            message.push_str(&format!(" (fields: {})", names.join(", ")));
        }
    }
    RecordOutcome::Failed {
        retryable: RETRYABLE.contains(&code.as_str()),
        code,
        message,
    }
}

fn error_codes(body: &Value) -> Vec<String> {
    body.as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("errorCode").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Salesforce's error list as one line: `CODE: message` of the first error.
pub fn error_text(body: &Value) -> String {
    match body.as_array().and_then(|e| e.first()) {
        Some(first) => format!(
            "{}: {}",
            first
                .get("errorCode")
                .and_then(Value::as_str)
                .unwrap_or("ERROR"),
            first
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        ),
        None => body.to_string().chars().take(300).collect(),
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters stay as they are).
fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `api-usage=USED/LIMIT` (other entries of the header, such as `per-app-api-usage`, are
/// skipped).
pub fn parse_api_usage(header: &str) -> Option<(u64, u64)> {
    header.split(',').find_map(|part| {
        let value = part.trim().strip_prefix("api-usage=")?;
        let (used, limit) = value.split_once('/')?;
        Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_usage_is_read_from_the_header() {
        assert_eq!(parse_api_usage("api-usage=25/15000"), Some((25, 15000)));
        assert_eq!(
            parse_api_usage("per-app-api-usage=2/250(appName=x), api-usage=9/100"),
            Some((9, 100))
        );
        assert_eq!(parse_api_usage("nonsense"), None);
    }
}
