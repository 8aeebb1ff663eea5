//! The dealreg engine, the command side: the loop that loads a boundary, asks the pure
//! domain to decide and appends the events with the exact expected version (capacity
//! slots on partners' streams beside them); the command envelope every interface parses;
//! replies rebuilt from the log; contacts sealed with keys from the vault.
//!
//! It knows no views (the views host, `dealreg-host`, reads what it writes), no command
//! line and no storage backend: stores come in through the ports (`dealreg-events`,
//! `dealreg-vault`), time and ids through the clock adapter.

pub mod answer;
pub mod cache;
pub mod codec;
pub mod engine;
pub mod envelope;
mod loaded;
pub mod partner_reply;
pub mod personal;
pub mod reply;

pub use answer::ReplyLine;
pub use codec::{
    decode_buffered, decode_current, decode_event, DecodeError, EventMetadata, EVENT_SCHEMA_VERSION,
};
pub use engine::{Engine, EngineError, Executed};
pub use envelope::{Address, CommandEnvelope, InputError, InputErrorCode};
pub use partner_reply::{PartnerError, PartnerEvent, PartnerReply};
pub use reply::{bounded_message, PositionedEvent, RefusalBody, Reply};
