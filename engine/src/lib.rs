//! The dealreg engine: the loop that loads a boundary, asks the pure domain to decide and
//! appends the events with the exact expected version; and what runs beside it: the
//! command envelope every interface parses, replies rebuilt from the log, the projection
//! runner and its one registry of projections, the timekeeper, and the reactor that
//! issues the commands recorded facts imply.
//!
//! It knows neither a command line nor a storage backend: stores come in through the
//! ports (`dealreg-events`, `dealreg-views`, `dealreg-vault`), time and ids through the clock adapter. A NATS service or a CRM
//! adapter depends on this crate without linking clap, the demo or SQLite.

pub mod cache;
mod capacity;
pub mod codec;
pub mod engine;
pub mod envelope;
pub mod feed;
pub mod host;
pub mod parallel;
pub mod partner_reply;
pub mod personal;
pub mod reactor;
pub mod registry;
pub mod reply;
pub mod runner;
pub mod tail;
pub mod timekeeper;

pub use codec::{decode_event, EventMetadata, EVENT_SCHEMA_VERSION};
pub use engine::{Engine, EngineError, Executed};
pub use envelope::{Address, CommandEnvelope, InputError, InputErrorCode};
pub use partner_reply::{PartnerError, PartnerEvent, PartnerReply};
pub use reply::{bounded_message, PositionedEvent, RefusalBody, Reply, ReplyLine};
