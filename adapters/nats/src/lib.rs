//! dealreg over NATS: what `dealreg serve` runs.
//!
//! - [`subject`]: the subject grammar (the actor is in the subject, confined by the
//!   server's permissions).
//! - [`command`]: one NATS micro endpoint per command; replies are the `dealreg apply`
//!   lines, with the micro protocol's error headers.
//! - [`query`]: answers from the stored views, at a position the caller asks for.
//! - [`page`]: query answers cut into pages that fit one message, with a cursor.
//! - [`feed`]: the views' row changes from the outbox to JetStream.
//! - [`service`]: the wiring, the views lease, the drain on shutdown.
//! - [`metrics`]: Prometheus text and the health endpoints.
//!
//! It knows no storage backend: the log, the views and the leases come in through the
//! `dealreg-store` traits.

pub mod command;
pub mod duties;
pub mod feed;
pub mod metrics;
pub mod page;
pub mod query;
pub mod service;
pub mod subject;

pub use service::{serve, ServeError, ServeOptions, Stores};
