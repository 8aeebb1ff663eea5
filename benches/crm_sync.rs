//! The CRM adapters' outbound sync against the local CRM fakes (adapters/crm-fake), next to
//! a floor in the same run: the same records, in the same batches, posted with plain
//! HTTP requests to the same fake (what the sync cannot avoid: serialising and sending
//! them, and the fake's own work), with, for HubSpot, the same company upserts and
//! deal-to-company associations per batch.
//!
//! Reports records/s pushed to each fake with batching, and the lag under a burst: N view
//! changes arrive at once and the sync drains them; how long until the last one is in the
//! CRM, and how many were in after each tenth of that time.
//!
//! `cargo bench --bench crm_sync`; knobs: DEALREG_BENCH_CRM_CHANGES (default 10000).

/// The allocator and its settings, as in the `dealreg` binary.
#[path = "../src/allocator.rs"]
mod allocator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::SystemClock;
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::sync::{ChangeSource, Outbound, SyncError};
use dealreg_crm::{CrmClient, CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET, HUBSPOT_TOKEN};
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Burst(Vec<ViewChange>);

impl ChangeSource for Burst {
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

fn change(n: usize) -> ViewChange {
    let id = format!("0193a000-0000-7000-8000-{n:012}");
    ViewChange {
        view: "pipeline".into(),
        table: "registration".into(),
        key: format!("registration/{id}"),
        position: n.to_string(),
        partner: None,
        row: Some(json!({
            "registration_id": id, "partner_id": "0193a000-0000-7000-8000-aaaaaaaaaaaa",
            "partner": "Contoso Resellers", "account": format!("customer-{n}.com"),
            "company": format!("Customer {n}"), "product_line": "analytics", "motion": "reseller",
            "stage": "qualification", "status": "protected", "protection": "protected",
            "protection_expires_at": "2027-03-01T00:00:00Z", "next_step": "Send the quote",
            "estimated_amount": { "amount_minor": 1_250_050 + n as i64, "currency": "EUR" },
            "won_amount": null, "attribution": { "sourcing": "0193a000-0000-7000-8000-bbbbbbbbbbbb", "influencers": {} },
            "submitted_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z"
        })),
    }
}

/// Drains `changes` into the fake through the sync; gives the time and, per tenth of it,
/// the records the CRM held.
async fn drain<C: CrmClient>(
    fake: &FakeCrm,
    object: &str,
    client: C,
    target: Target,
    changes: Vec<ViewChange>,
) -> (Duration, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let state =
        SyncState::open(&dir.path().join("crm.db")).unwrap_or_else(|e| panic!("state: {e}"));
    let sync = Outbound {
        config: CrmConfig::default_mapping().unwrap_or_else(|e| panic!("mapping: {e}")),
        target,
        client,
        state: Arc::new(state),
        clock: Arc::new(SystemClock),
        adapter: "bench".into(),
        backoff: Duration::from_millis(100),
    };
    let count = changes.len();
    let started = Instant::now();
    sync.run_once(&mut Burst(changes), 1000)
        .await
        .unwrap_or_else(|e| panic!("sync: {e}"));
    let took = started.elapsed();
    assert_eq!(
        fake.records(object).len(),
        count,
        "every change reached the CRM"
    );
    // Records in the CRM after each tenth of the drain, from the fake's request log.
    let writes: Vec<(Duration, usize)> = fake
        .log()
        .iter()
        .filter(|l| l.status == 200 && l.records > 0 && l.path.contains(&format!("/{object}/")))
        .map(|l| (l.at.saturating_duration_since(started), l.records))
        .collect();
    let tenths = (1..=10)
        .map(|t| {
            let until = took * t / 10;
            writes
                .iter()
                .filter(|(at, _)| *at <= until)
                .map(|(_, n)| n)
                .sum()
        })
        .collect();
    (took, tenths)
}

/// The floor: the records the sync sent, as the same JSON bodies in the same batch sizes,
/// posted with plain requests (no mapping, no state, no digests).
async fn floor(fake: &FakeCrm, kind: Kind, changes: &[ViewChange]) -> Duration {
    let http = reqwest::Client::new();
    let config = CrmConfig::default_mapping().unwrap_or_else(|e| panic!("mapping: {e}"));
    let target = if kind == Kind::Hubspot {
        Target::Hubspot
    } else {
        Target::Salesforce
    };
    let records: Vec<_> = changes
        .iter()
        .flat_map(|c| config.records(target, c).unwrap_or_default())
        .collect();
    let token = if kind == Kind::Salesforce {
        let answer: Value = http
            .post(fake.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("token: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("token: {e}"));
        answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        HUBSPOT_TOKEN.to_string()
    };
    // As the sync writes them: grouped by object (one object per request), the objects
    // other records reference first (the partner's Account before the Leads naming it).
    let mut groups: Vec<(String, Vec<_>)> = Vec::new();
    for record in records {
        match groups
            .iter_mut()
            .find(|(object, _)| *object == record.object)
        {
            Some((_, items)) => items.push(record),
            None => groups.push((record.object.clone(), vec![record])),
        }
    }
    let referenced: std::collections::BTreeSet<String> = groups
        .iter()
        .flat_map(|(_, items)| items.iter().flat_map(|r| r.references.clone()))
        .collect();
    groups.sort_by_key(|(object, _)| !referenced.contains(object));
    let started = Instant::now();
    let batch = if kind == Kind::Hubspot { 100 } else { 200 };
    let chunks: Vec<&[_]> = groups
        .iter()
        .flat_map(|(_, items)| items.chunks(batch))
        .collect();
    for chunk in chunks {
        let request = match kind {
            Kind::Hubspot => {
                // What HubSpot's documentation shows and the strict fake wants: string
                // values ("" for none), the idProperty's value among them, a trace id each.
                let inputs: Vec<Value> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let mut fields = r.fields.clone();
                        fields.extend(r.first_sync.clone());
                        let mut properties: serde_json::Map<String, Value> = fields
                            .into_iter()
                            .map(|(k, v)| match v {
                                Value::String(_) => (k, v),
                                Value::Null => (k, Value::String(String::new())),
                                other => (k, Value::String(other.to_string())),
                            })
                            .collect();
                        properties.insert(
                            r.external_id_field.clone(),
                            Value::String(r.external_id.clone()),
                        );
                        json!({ "idProperty": r.external_id_field, "id": r.external_id,
                                "properties": properties, "objectWriteTraceId": i.to_string() })
                    })
                    .collect();
                http.post(format!(
                    "{}/crm/v3/objects/{}/batch/upsert",
                    fake.url(),
                    chunk[0].object
                ))
                .json(&json!({ "inputs": inputs }))
            }
            Kind::Salesforce => {
                let list: Vec<Value> = chunk
                    .iter()
                    .map(|r| {
                        let mut fields = r.fields.clone();
                        fields.extend(r.first_sync.clone());
                        fields.insert("attributes".into(), json!({ "type": r.object }));
                        fields.insert(
                            r.external_id_field.clone(),
                            Value::String(r.external_id.clone()),
                        );
                        Value::Object(fields)
                    })
                    .collect();
                http.patch(format!(
                    "{}/services/data/v62.0/composite/sobjects/{}/{}",
                    fake.url(),
                    chunk[0].object,
                    chunk[0].external_id_field
                ))
                .json(&json!({ "allOrNone": false, "records": list }))
            }
        };
        let answer: Value = request
            .bearer_auth(&token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("floor request: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("floor answer: {e}"));
        if kind == Kind::Hubspot {
            // What the sync also does for new deals: upsert their companies and link
            // each deal to its company, one request each per batch.
            let deals: Vec<(String, String)> = answer["results"]
                .as_array()
                .map(|results| {
                    results
                        .iter()
                        .map(|r| {
                            let id = r["id"].as_str().unwrap_or_default().to_string();
                            let account = r["properties"]["dealreg_account"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string();
                            (id, account)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut accounts: Vec<&str> = deals.iter().map(|(_, a)| a.as_str()).collect();
            accounts.sort_unstable();
            accounts.dedup();
            // The sync first looks for companies the portal has by domain (one search).
            http.post(format!("{}/crm/v3/objects/companies/search", fake.url()))
                .bearer_auth(&token)
                .json(&json!({
                    "filterGroups": [{ "filters": [{ "propertyName": "domain", "operator": "IN", "values": accounts }] }],
                    "properties": ["domain", "dealreg_account"],
                    "limit": 100
                }))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .unwrap_or_else(|e| panic!("floor search: {e}"));
            let inputs: Vec<Value> = accounts
                .iter()
                .enumerate()
                .map(|(i, a)| json!({ "idProperty": "dealreg_account", "id": a,
                    "properties": { "domain": a, "dealreg_account": a }, "objectWriteTraceId": i.to_string() }))
                .collect();
            let companies: Value = http
                .post(format!(
                    "{}/crm/v3/objects/companies/batch/upsert",
                    fake.url()
                ))
                .bearer_auth(&token)
                .json(&json!({ "inputs": inputs }))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .unwrap_or_else(|e| panic!("floor companies: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("floor companies: {e}"));
            let company_of: std::collections::HashMap<String, String> = companies["results"]
                .as_array()
                .map(|results| {
                    results
                        .iter()
                        .map(|r| {
                            (
                                r["properties"]["dealreg_account"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                r["id"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let pairs: Vec<Value> = deals
                .iter()
                .map(|(deal, account)| json!({ "from": { "id": deal }, "to": { "id": company_of[account] } }))
                .collect();
            http.post(format!(
                "{}/crm/v4/associations/deals/companies/batch/associate/default",
                fake.url()
            ))
            .bearer_auth(&token)
            .json(&json!({ "inputs": pairs }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("floor associations: {e}"));
        }
    }
    started.elapsed()
}

fn main() {
    allocator::tune();
    let count = env_usize("DEALREG_BENCH_CRM_CHANGES", 10_000).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    runtime.block_on(async {
        println!("crm_sync: a burst of {count} registration changes drained into each fake (floor: the same batches as plain requests, same run)");
        println!("crm        |  records/s  floor/s  ratio | drain s | in the CRM after each tenth of the drain");
        for kind in [Kind::Hubspot, Kind::Salesforce] {
            let changes: Vec<ViewChange> = (0..count).map(change).collect();
            let floor_fake = FakeCrm::start(kind).await;
            let floor_took = floor(&floor_fake, kind, &changes).await;
            let fake = FakeCrm::start(kind).await;
            let (took, tenths) = match kind {
                Kind::Hubspot => {
                    let client = HubspotClient::new(&fake.url(), HUBSPOT_TOKEN.into())
                        .unwrap_or_else(|e| panic!("client: {e}"));
                    drain(&fake, "deals", client, Target::Hubspot, changes).await
                }
                Kind::Salesforce => {
                    let settings = SalesforceSettings {
                        token_url: fake.token_url(),
                        ..SalesforceSettings::default()
                    };
                    let client = SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into())
                        .unwrap_or_else(|e| panic!("client: {e}"));
                    drain(&fake, "Lead", client, Target::Salesforce, changes).await
                }
            };
            let rate = count as f64 / took.as_secs_f64();
            let floor_rate = count as f64 / floor_took.as_secs_f64();
            println!(
                "{:<10} | {rate:>10.0} {floor_rate:>8.0} {:>6.3} | {:>7.2} | {tenths:?}",
                if kind == Kind::Hubspot { "HubSpot" } else { "Salesforce" },
                rate / floor_rate,
                took.as_secs_f64()
            );
        }
    });
}
