//! Outbound sync: view changes, from where the adapter's cursor says, mapped to records
//! and upserted into one CRM.
//!
//! Order and repeats: changes are applied in the order the source gives them, and within
//! a batch only each record's latest state is sent (a CRM mirrors rows; the log keeps the
//! history). The cursor moves only after every record of a batch was written or put on
//! the dead-letter list, so a crash sends the batch again; the upsert is by external id,
//! so that creates nothing twice, and a record whose fields are unchanged since the adapter
//! last wrote it is not sent at all.
//!
//! Faults: a throttled request is waited out and sent again (never before the CRM's
//! `Retry-After`); a transient failure is retried with backoff, then the sync stops without
//! moving the cursor; a record the CRM refuses goes to the dead-letter list with the CRM's
//! error and the others keep flowing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dealreg_clock::Clock;
use serde_json::{Map, Value};

use crate::change::ViewChange;
use crate::client::{CompanyLink, CrmClient, CrmError, RecordOutcome, Upsert};
use crate::mapping::{CrmConfig, Record, Target};
use crate::state::{DeadLetter, StateError, SyncState, Written};

/// Attempts of a record the CRM says may succeed later, before it is dead-lettered.
const RECORD_ATTEMPTS: u32 = 3;
/// Attempts of a request that failed as a whole (network, 5xx) before the sync stops.
const REQUEST_ATTEMPTS: u32 = 5;
/// Throttled answers waited out for one request before the sync stops.
const THROTTLED_WAITS: u32 = 50;
/// A throttle at least this long (a daily API allocation spent) is not slept through: the
/// adapter notes a pause in its state (`crm status` shows it) and sends nothing before it
/// ends, run after run.
pub const LONG_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The state key of a target's pause.
fn pause_key(target: Target) -> String {
    format!("{}/paused-until", target.name())
}

/// Notes in the state that nothing is sent to `target` for `wait` from `now`.
pub fn note_pause(
    state: &SyncState,
    target: Target,
    now: chrono::DateTime<chrono::Utc>,
    wait: Duration,
) -> Result<(), StateError> {
    let until =
        now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::hours(1));
    state.set_cursor(
        &pause_key(target),
        &until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The pause in effect for `target` at `now`, as `crm status` says it; `None`: none.
pub fn paused(
    state: &SyncState,
    target: Target,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, StateError> {
    let Some(until) = state.cursor(&pause_key(target))? else {
        return Ok(None);
    };
    let Ok(until) = chrono::DateTime::parse_from_rfc3339(&until) else {
        return Ok(None);
    };
    let until = until.with_timezone(&chrono::Utc);
    if until <= now {
        return Ok(None);
    }
    // HubSpot's daily limit resets at midnight in the account's time zone; Salesforce's
    // is a rolling 24-hour window.
    let then = match target {
        Target::Hubspot => "when HubSpot resets it (midnight in the account's time zone, [hubspot] daily_reset_utc_offset_minutes)",
        Target::Salesforce => "then one request shows whether the rolling 24-hour window freed some",
    };
    Ok(Some(format!(
        "paused: {}'s daily API request limit is spent; nothing is sent before {} ({} min left), {then}",
        target.name(),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (until - now).num_minutes() + 1
    )))
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Crm(#[from] CrmError),
    #[error("the view changes cannot be read: {0}")]
    Source(String),
}

/// Where view changes come from: the JetStream feed, or the views file in-process.
pub trait ChangeSource: Send {
    /// The changes after `cursor` (`None`: from the start), at most about `limit`, and
    /// the cursor after them; `None` when there is nothing new.
    fn changes_after(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Option<(Vec<ViewChange>, String)>, SyncError>> + Send;
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub changes: u64,
    /// Records the changes made (after keeping each record's latest state).
    pub records: u64,
    pub written: u64,
    pub created: u64,
    /// Records whose fields were as the adapter last wrote them: not sent.
    pub unchanged: u64,
    pub dead_lettered: u64,
    pub requests: u64,
    pub throttled: u64,
    /// The CRM's daily API limit is spent: what `crm status` says (nothing more was sent).
    pub paused: Option<String>,
}

impl SyncReport {
    fn add(&mut self, other: &SyncReport) {
        self.changes += other.changes;
        self.records += other.records;
        self.written += other.written;
        self.created += other.created;
        self.unchanged += other.unchanged;
        self.dead_lettered += other.dead_lettered;
        self.requests += other.requests;
        self.throttled += other.throttled;
        if other.paused.is_some() {
            self.paused.clone_from(&other.paused);
        }
    }
}

/// A record to write: the record, what is sent, and the digest stored once it is written.
type Outgoing = (Record, Upsert, String);
/// Records to write by CRM object and external-id field, in the order they came.
type Groups = Vec<((String, String), Vec<Outgoing>)>;

/// One adapter: a CRM, its mapping, its state.
pub struct Outbound<C: CrmClient> {
    pub config: CrmConfig,
    pub target: Target,
    pub client: C,
    pub state: Arc<SyncState>,
    pub clock: Arc<dyn Clock>,
    /// Names the adapter's cursor (one per CRM and source).
    pub adapter: String,
    /// First wait after a transient failure; doubled per attempt.
    pub backoff: Duration,
}

impl<C: CrmClient> Outbound<C> {
    /// Applies everything the source has after the cursor, a batch at a time, moving the
    /// cursor after each.
    pub async fn run_once<S: ChangeSource>(
        &self,
        source: &mut S,
        batch: usize,
    ) -> Result<SyncReport, SyncError> {
        let mut total = SyncReport::default();
        loop {
            total.paused = paused(&self.state, self.target, self.clock.now())?;
            if total.paused.is_some() {
                return Ok(total);
            }
            let cursor = self.state.cursor(&self.adapter)?;
            let Some((changes, next)) = source.changes_after(cursor.as_deref(), batch).await?
            else {
                return Ok(total);
            };
            let report = match self.push(&changes).await {
                Err(SyncError::Crm(CrmError::Throttled(wait))) if wait >= LONG_PAUSE => {
                    // The batch is sent again after the pause (records it already wrote
                    // are skipped by digest).
                    self.pause(wait)?;
                    continue;
                }
                other => other?,
            };
            self.state.set_cursor(&self.adapter, &next)?;
            total.add(&report);
            if changes.is_empty() && cursor.as_deref() == Some(next.as_str()) {
                return Ok(total);
            }
        }
    }

    fn pause(&self, wait: Duration) -> Result<(), StateError> {
        note_pause(&self.state, self.target, self.clock.now(), wait)
    }

    /// Maps and writes one batch of changes.
    pub async fn push(&self, changes: &[ViewChange]) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport {
            changes: changes.len() as u64,
            ..SyncReport::default()
        };
        // Each record's latest state, in the order records first appear.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut latest: HashMap<(String, String), Record> = HashMap::new();
        for change in changes {
            let records = match self.config.records(self.target, change) {
                Ok(records) => records,
                Err(e) => {
                    self.dead_letter_unmappable(change, &e.to_string())?;
                    report.dead_lettered += 1;
                    continue;
                }
            };
            for record in records {
                let id = (record.object.clone(), record.external_id.clone());
                if latest.insert(id.clone(), record).is_none() {
                    order.push(id);
                }
            }
        }
        report.records = order.len() as u64;
        // What to send: fields that changed since the adapter last wrote the record, and
        // the first-sync fields for records it has not written yet.
        let mut groups: Groups = Vec::new();
        for id in order {
            let Some(record) = latest.remove(&id) else {
                continue;
            };
            let known =
                self.state
                    .digest(self.target.name(), &record.object, &record.external_id)?;
            let mut fields = record.fields.clone();
            if known.is_none() {
                for (k, v) in &record.first_sync {
                    fields.insert(k.clone(), v.clone());
                }
            }
            let digest = digest(&record.fields);
            if known.as_ref() == Some(&digest) {
                report.unchanged += 1;
                continue;
            }
            let upsert = Upsert {
                external_id: record.external_id.clone(),
                fields,
            };
            let group = (record.object.clone(), record.external_id_field.clone());
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, items)) => items.push((record, upsert, digest)),
                None => groups.push((group, vec![(record, upsert, digest)])),
            }
        }
        for ((object, external_id_field), items) in referenced_first(groups) {
            for chunk in items.chunks(self.client.max_batch().max(1)) {
                self.write_chunk(&object, &external_id_field, chunk, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }

    async fn write_chunk(
        &self,
        object: &str,
        external_id_field: &str,
        chunk: &[Outgoing],
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let mut pending: Vec<&Outgoing> = chunk.iter().collect();
        let mut attempt = 1;
        while !pending.is_empty() {
            let upserts: Vec<Upsert> = pending.iter().map(|(_, u, _)| u.clone()).collect();
            let outcomes = match self.send(object, external_id_field, &upserts, report).await {
                Ok(outcomes) => outcomes,
                Err(CrmError::Refused(message)) => {
                    // The CRM refused the request as a whole: every record of it is a
                    // dead letter with that reason; the next batch goes on.
                    for (record, upsert, _) in &pending {
                        self.dead_letter(record, upsert, "REQUEST_REFUSED", &message, attempt)?;
                        report.dead_lettered += 1;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let mut retry = Vec::new();
            let mut crm_ids = Vec::new();
            for (item, outcome) in pending.iter().zip(outcomes) {
                let (record, upsert, _) = item;
                match outcome {
                    RecordOutcome::Upserted { crm_id, created } => {
                        crm_ids.push((*item, crm_id));
                        report.written += 1;
                        report.created += u64::from(created);
                    }
                    RecordOutcome::Failed {
                        retryable: true, ..
                    } if attempt < RECORD_ATTEMPTS => retry.push(*item),
                    RecordOutcome::Failed { code, message, .. } => {
                        tracing::warn!(object, external_id = %record.external_id, %code, %message, "a record goes to the dead-letter list");
                        self.dead_letter(record, upsert, &code, &message, attempt)?;
                        report.dead_lettered += 1;
                    }
                }
            }
            // Records this adapter writes for the first time are linked to their company
            // before they are noted as written: a crash in between links them again
            // (links are idempotent in the CRM).
            let mut links = Vec::new();
            for ((record, _, _), crm_id) in &crm_ids {
                if let Some(company) = &record.company {
                    let known = self.state.digest(
                        self.target.name(),
                        &record.object,
                        &record.external_id,
                    )?;
                    if known.is_none() {
                        links.push(CompanyLink {
                            from_id: crm_id.clone(),
                            company: company.clone(),
                        });
                    }
                }
            }
            if !links.is_empty() {
                self.link(object, &links, report).await?;
            }
            let written: Vec<Written<'_>> = crm_ids
                .iter()
                .map(|((record, upsert, digest), crm_id)| Written {
                    target: self.target.name(),
                    object: &record.object,
                    external_id: &record.external_id,
                    mapping: &record.mapping,
                    crm_id,
                    digest,
                    fields: &upsert.fields,
                })
                .collect();
            self.state.records_written(&written)?;
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(self.backoff * attempt).await;
            }
            attempt += 1;
        }
        Ok(())
    }

    /// Links records to their companies, waited out while throttled and retried while
    /// failing transiently; any other failure stops the sync (the records are sent and
    /// linked again on the next run).
    async fn link(
        &self,
        object: &str,
        links: &[CompanyLink],
        report: &mut SyncReport,
    ) -> Result<(), CrmError> {
        let mut failures = 0;
        let mut throttled = 0;
        loop {
            report.requests += 1;
            match self.client.link_companies(object, links).await {
                Err(CrmError::Throttled(wait)) if wait >= LONG_PAUSE => {
                    return Err(CrmError::Throttled(wait));
                }
                Err(CrmError::Throttled(wait)) if throttled < THROTTLED_WAITS => {
                    throttled += 1;
                    report.throttled += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(CrmError::Transient(_)) if failures + 1 < REQUEST_ATTEMPTS => {
                    failures += 1;
                    tokio::time::sleep(self.backoff * 2u32.pow(failures)).await;
                }
                other => return other,
            }
        }
    }

    /// One request, waited out while throttled and retried while failing transiently.
    async fn send(
        &self,
        object: &str,
        external_id_field: &str,
        upserts: &[Upsert],
        report: &mut SyncReport,
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        let mut failures = 0;
        let mut throttled = 0;
        loop {
            report.requests += 1;
            match self.client.upsert(object, external_id_field, upserts).await {
                Err(CrmError::Throttled(wait)) if wait >= LONG_PAUSE => {
                    return Err(CrmError::Throttled(wait));
                }
                Err(CrmError::Throttled(wait)) if throttled < THROTTLED_WAITS => {
                    throttled += 1;
                    report.throttled += 1;
                    tracing::info!(?wait, "the CRM throttles: waiting before sending again");
                    tokio::time::sleep(wait).await;
                }
                Err(CrmError::Transient(reason)) if failures + 1 < REQUEST_ATTEMPTS => {
                    failures += 1;
                    tracing::warn!(%reason, failures, "a CRM request failed; sending it again");
                    tokio::time::sleep(self.backoff * 2u32.pow(failures)).await;
                }
                other => return other,
            }
        }
    }

    fn dead_letter(
        &self,
        record: &Record,
        upsert: &Upsert,
        code: &str,
        message: &str,
        attempts: u32,
    ) -> Result<(), StateError> {
        self.state.dead_letter(&DeadLetter {
            target: self.target.name().into(),
            object: record.object.clone(),
            external_id_field: record.external_id_field.clone(),
            external_id: record.external_id.clone(),
            mapping: record.mapping.clone(),
            fields: upsert.fields.clone(),
            code: code.into(),
            message: message.into(),
            attempts,
            at: self.clock.now().to_rfc3339(),
        })
    }

    fn dead_letter_unmappable(&self, change: &ViewChange, reason: &str) -> Result<(), StateError> {
        let mut fields = Map::new();
        fields.insert("row".into(), change.row.clone().unwrap_or(Value::Null));
        self.state.dead_letter(&DeadLetter {
            target: self.target.name().into(),
            object: format!("{}/{}", change.view, change.table),
            external_id_field: String::new(),
            external_id: change.key.clone(),
            mapping: String::new(),
            fields,
            code: "UNMAPPABLE".into(),
            message: reason.into(),
            attempts: 1,
            at: self.clock.now().to_rfc3339(),
        })
    }

    /// Sends every dead letter of this CRM again, as it was stored; those the CRM now
    /// accepts leave the list.
    pub async fn retry_dead_letters(&self) -> Result<SyncReport, SyncError> {
        let letters = self.state.dead_letters(self.target.name())?;
        let mut report = SyncReport::default();
        let mut groups: Groups = Vec::new();
        for letter in letters.into_iter().filter(|l| l.code != "UNMAPPABLE") {
            let record = Record {
                mapping: letter.mapping.clone(),
                object: letter.object.clone(),
                external_id_field: letter.external_id_field.clone(),
                external_id: letter.external_id.clone(),
                fields: letter.fields.clone(),
                first_sync: Map::new(),
                company: None,
                references: Vec::new(),
            };
            let upsert = Upsert {
                external_id: letter.external_id.clone(),
                fields: letter.fields.clone(),
            };
            let digest = digest(&letter.fields);
            let group = (letter.object, letter.external_id_field);
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, items)) => items.push((record, upsert, digest)),
                None => groups.push((group, vec![(record, upsert, digest)])),
            }
        }
        for ((object, external_id_field), items) in groups {
            report.records += items.len() as u64;
            for chunk in items.chunks(self.client.max_batch().max(1)) {
                self.write_chunk(&object, &external_id_field, chunk, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }
}

/// The groups of a batch with the objects other records reference (Salesforce
/// relationships by external id: the partner's Account of a registration) first, otherwise
/// in the order records first appeared: a reference to a record not written yet is refused
/// by the CRM ("Foreign key external ID ... not found"), so the referenced records must be
/// in the CRM before the records that name them.
fn referenced_first(mut groups: Groups) -> Groups {
    let referenced: std::collections::BTreeSet<String> = groups
        .iter()
        .flat_map(|(_, items)| items.iter().flat_map(|(r, _, _)| r.references.clone()))
        .collect();
    // A stable sort: referenced objects first, each side in its order of appearance.
    groups.sort_by_key(|((object, _), _)| !referenced.contains(object));
    groups
}

/// A digest of the fields a sync writes on every run (first-sync fields are left out: they
/// are written once).
fn digest(fields: &Map<String, Value>) -> String {
    let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
