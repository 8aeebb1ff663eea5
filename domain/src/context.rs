//! What a decision reads besides its boundary's state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::ids::PartnerId;
use crate::partner::PartnerState;
use crate::policy::Policy;
use crate::program::ProgramState;

/// The facts of the partners a decision reads, borrowed from wherever the caller keeps
/// them (the engine's state cache: a partner holding ten thousand open registrations is
/// not copied for every command).
pub type Partners<'a> = BTreeMap<PartnerId, &'a PartnerState>;

/// What a decision may read besides the state: the time, who asks, the policy in force,
/// the program's announcements, and the facts of the partners named by
/// [`crate::decision::partners_needed`].
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub actor: &'a Actor,
    pub policy: &'a Policy,
    pub partners: &'a Partners<'a>,
    /// The program as folded (its announcements): read by the decisions an announcement
    /// gates or concerns. Every command reads the program already (its policy).
    pub program: &'a ProgramState,
}
