//! What the CRM adapter tests share (each test file uses a part of it).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dealreg_crm::sync::{ChangeSource, SyncError};
use dealreg_crm::webhook::CommandSink;
use dealreg_crm::{SyncState, ViewChange};
use dealreg_crm_fake::{FakeCrm, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};

/// Changes from a list; the cursor is the index of the next one.
pub struct ListSource(pub Vec<ViewChange>);

impl ChangeSource for ListSource {
    async fn changes_after(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<(Vec<ViewChange>, String)>, SyncError> {
        let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        if start >= self.0.len() {
            return Ok(None);
        }
        let end = (start + limit).min(self.0.len());
        Ok(Some((self.0[start..end].to_vec(), end.to_string())))
    }
}

/// The n-th registration's id (UUIDs in order of n).
pub fn registration_id(n: usize) -> String {
    format!("0193a000-0000-7000-8000-{n:012}")
}

/// The n-th registration's row change as the pipeline's `registration` table publishes
/// it (Contoso's, at the qualification stage, protected), with `fields` laid over it.
pub fn registration_change(n: usize, status: &str, fields: Value) -> ViewChange {
    let id = registration_id(n);
    let mut row = json!({
        "registration_id": id,
        "partner_id": "0193a000-0000-7000-8000-aaaaaaaaaaaa",
        "partner": "Contoso Resellers",
        "account": format!("customer-{n}.com"),
        "company": format!("Customer {n}"),
        "product_line": "analytics",
        "motion": "reseller",
        "stage": "qualification",
        "status": status,
        "protection": "protected",
        "protection_expires_at": "2027-03-01T00:00:00Z",
        "next_step": null,
        "estimated_amount": { "amount_minor": 1_250_050, "currency": "EUR" },
        "won_amount": null,
        "attribution": { "sourcing": null, "influencers": {} },
        "submitted_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z"
    });
    if let (Some(row), Value::Object(fields)) = (row.as_object_mut(), fields) {
        row.extend(fields);
    }
    ViewChange {
        view: "pipeline".into(),
        table: "registration".into(),
        key: format!("registration/{id}"),
        position: n.to_string(),
        partner: None,
        row: Some(row),
    }
}

/// The adapter's state file in `dir`.
pub fn state(dir: &tempfile::TempDir) -> Arc<SyncState> {
    Arc::new(SyncState::open(&dir.path().join("crm.db")).expect("state"))
}

/// Records every command envelope; answers ok.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Value>>>);

impl Recorded {
    pub fn commands(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CommandSink for Recorded {
    async fn execute(&self, envelope: Vec<u8>) -> Value {
        let envelope: Value = serde_json::from_slice(&envelope).unwrap_or(Value::Null);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(envelope);
        json!({ "ok": true, "events": [], "replayed": false })
    }
}

/// The fake Salesforce's answer to the client-credentials flow, whole.
pub async fn token_answer(fake: &FakeCrm) -> Value {
    reqwest::Client::new()
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
        .expect("token json")
}

/// A token from the fake Salesforce, by the client-credentials flow.
pub async fn token(fake: &FakeCrm) -> String {
    token_answer(fake).await["access_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// A raw PATCH to the fake Salesforce, with a fresh token: its status and body.
pub async fn patch(fake: &FakeCrm, path: &str, body: Value) -> (u16, Value) {
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

/// A raw GET from the fake Salesforce, with a fresh token: its status and body.
pub async fn get(fake: &FakeCrm, path: &str) -> (u16, Value) {
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

pub const LEADS: &str = "/services/data/v62.0/composite/sobjects/Lead/Dealreg_Registration_Id__c";
pub const OPPORTUNITIES: &str =
    "/services/data/v62.0/composite/sobjects/Opportunity/Dealreg_Registration_Id__c";
