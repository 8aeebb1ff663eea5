//! CRM adapters: the views mirrored into Salesforce and HubSpot, and CRM facts coming back
//! as commands.
//!
//! - [`mapping`]: `crm.toml`, view rows to CRM records field by field.
//! - [`sync`]: the outbound loop (cursor per adapter, latest state per record, dead
//!   letters), over a [`sync::ChangeSource`] and a [`client::CrmClient`].
//! - [`salesforce`], [`hubspot`]: the two REST clients (reqwest), each a `CrmClient`.
//! - [`state`]: what an adapter remembers, in a SQLite file of its own.
//! - [`webhook`]: HubSpot webhook deliveries (v3 signature) as commands.
//! - [`poll`]: Salesforce Opportunities polled by `SystemModstamp` as commands.
//! - [`setup`], [`setup_salesforce`], [`setup_hubspot`]: what a mapping needs in the CRM, checked (`crm
//!   check`) and created (`crm setup`).
//!
//! The crate knows neither the engine nor a store: the `dealreg` binary gives it the
//! changes (the JetStream feed or the views file) and executes its commands.

pub mod change;
pub mod client;
pub mod hubspot;
pub mod mapping;
pub mod poll;
pub mod salesforce;
pub mod setup;
pub mod setup_hubspot;
pub mod setup_salesforce;
pub mod state;
pub mod sync;
pub mod webhook;

pub use change::ViewChange;
pub use client::{CrmClient, CrmError, RecordOutcome, Upsert};
pub use mapping::{CrmConfig, Target};
pub use state::SyncState;
pub use sync::{ChangeSource, Outbound, SyncError, SyncReport};
