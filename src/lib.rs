//! dealreg: an event-sourced deal registration engine for partner programs.
//!
//! This crate holds the engine (the loop that loads, decides and appends) and the
//! interfaces in front of it (the command envelope, replies, the CLI's jobs). The rules live
//! in `dealreg-domain`; storage in `dealreg-store`; time in `dealreg-clock`.

pub mod cli;
pub mod engine;
pub mod envelope;
pub mod projector;
pub mod reply;
pub mod timekeeper;

pub use dealreg_clock as clock;
pub use dealreg_domain as domain;
pub use dealreg_store as store;
pub use engine::{Engine, EngineError, Executed};
pub use envelope::CommandEnvelope;
pub use reply::{Reply, ReplyLine};
