//! What every CRM client does for the sync: upsert records by external id, a batch at a
//! time, and say per record what happened.

use std::future::Future;
use std::time::Duration;

use serde_json::{Map, Value};

/// One record to upsert: its external id and the fields to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    pub external_id: String,
    pub fields: Map<String, Value>,
}

/// What the CRM did with one record of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Written; `crm_id` is the CRM's own id of the record.
    Upserted { crm_id: String, created: bool },
    /// Refused. `retryable`: the CRM said it may succeed later (a locked row); otherwise
    /// the record goes to the dead-letter list at once.
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
}

/// A whole request that did not give per-record outcomes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrmError {
    #[error("the CRM throttles this client; nothing is sent before {0:?} have passed")]
    Throttled(Duration),
    #[error(
        "the CRM refused the credentials: {0}; check the token or the connected app's settings"
    )]
    Auth(String),
    #[error("the CRM could not be reached or failed ({0}); the batch is sent again")]
    Transient(String),
    #[error(
        "the CRM refused the whole request: {0}; fix the mapping (crm.toml) or the CRM's fields"
    )]
    Refused(String),
}

/// A CRM's upsert-by-external-id API.
pub trait CrmClient: Send + Sync {
    /// The most records one request may carry (Salesforce 200, HubSpot 100).
    fn max_batch(&self) -> usize;

    /// Upserts `records` into `object` by `external_id_field`; one outcome per record, in
    /// order.
    fn upsert(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[Upsert],
    ) -> impl Future<Output = Result<Vec<RecordOutcome>, CrmError>> + Send;

    /// Links records of `object` to their companies (HubSpot's deal-to-company
    /// association). CRMs without such links do nothing.
    fn link_companies(
        &self,
        object: &str,
        links: &[CompanyLink],
    ) -> impl Future<Output = Result<(), CrmError>> + Send {
        let _ = (object, links);
        std::future::ready(Ok(()))
    }
}

/// The customer's company a record belongs to, upserted by its unique property.
#[derive(Debug, Clone, PartialEq)]
pub struct Company {
    /// The company's unique property (HubSpot's `idProperty`), e.g. `dealreg_account`.
    pub id_property: String,
    /// Its value: the account (`acme.com`).
    pub key: String,
    pub name: Option<String>,
    pub domain: Option<String>,
}

/// A written record to link to its company (HubSpot associates a deal with its company).
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyLink {
    /// The CRM id of the record to link from.
    pub from_id: String,
    pub company: Company,
}

/// A `Retry-After` header in seconds (or an HTTP date, read as one minute).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    match value.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Some(Duration::from_secs_f64(seconds))
        }
        _ => Some(Duration::from_secs(60)),
    }
}
