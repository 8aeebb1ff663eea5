//! dealreg's domain: pure decisions over partner programs.
//!
//! `decide(state, command, context) -> Result<Vec<Event>, DomainError>` and
//! `evolve(&mut state, &event)`. No I/O, no async runtime, no clock: the time, the actor,
//! the policy in force and read-only partner facts arrive in the [`Context`] (docs/ARCHITECTURE.md,
//! invariant 1).
//!
//! Imports inside the crate run one way, and never through this root: value types
//! (`ids`, `money`, `motion`, `actor`, `values`, `policy`, ...) → the wire vocabulary
//! (`event`, `command`, `route`) → the boundaries' states (`program`, `partner`,
//! `account`) → the decisions (`registration`, `decision`). `tests/module_graph.rs`
//! checks it.

pub mod account;
pub mod actor;
pub mod announcement;
pub mod attribution;
pub mod boundary;
pub mod calendar;
pub mod command;
pub mod context;
pub mod decision;
pub mod error;
pub mod event;
pub mod harness;
pub mod hierarchy;
pub mod ids;
pub mod money;
pub mod motion;
pub mod partner;
pub mod policy;
pub mod position;
pub mod program;
pub mod redaction;
mod registration;
pub mod route;
pub mod stages;
pub mod subscription;
pub mod values;

pub use account::{AccountState, Registration, RegistrationStatus};
pub use actor::{Actor, VendorRole};
pub use attribution::Attribution;
pub use boundary::Boundary;
pub use command::Command;
pub use context::{Context, Partners};
pub use decision::{
    decide, evolve, partner_written, partners_needed, CapacityWork, Decision, SlotRelease,
    SlotTake, State,
};
pub use error::{DomainError, RejectionCode};
pub use event::Event;
pub use ids::{AccountKey, ConflictId, OpportunityId, PartnerId, RegistrationId};
pub use money::{Currency, Money, MAX_AMOUNT_MINOR};
pub use motion::{DealKind, Motion, Tier};
pub use partner::{PartnerState, PartnerStatus};
pub use policy::Policy;
pub use position::Position;
pub use program::ProgramState;
pub use values::{
    ConflictKind, ConflictParty, ConflictSla, Contact, Customer, OpenSlot, StageEvidence, Territory,
};
