//! The one line every interface answers a command with (`dealreg apply`, the NATS reply
//! body): the engine's reply, its partner-safe form, or why the input was refused.
//!
//! Why a module of its own: it joins the vendor's reply and the partner's, which do not
//! depend on each other the other way round.

use serde::{Deserialize, Serialize};

use crate::partner_reply::PartnerReply;
use crate::reply::{RefusalBody, Reply};

/// One line of `dealreg apply` output (and the NATS reply body): the engine's reply (its
/// partner-safe form when a partner sent the command), or why the input could not be read
/// or executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ReplyLine {
    Executed {
        #[serde(flatten)]
        reply: Reply,
        /// True when the idempotency key had been seen and this is the first reply again.
        replayed: bool,
    },
    Partner {
        #[serde(flatten)]
        reply: PartnerReply,
        replayed: bool,
    },
    Refused {
        ok: bool,
        error: RefusalBody,
    },
}

impl ReplyLine {
    /// Whether the command was executed and accepted.
    pub fn ok(&self) -> bool {
        match self {
            ReplyLine::Executed { reply, .. } => reply.ok,
            ReplyLine::Partner { reply, .. } => reply.ok,
            ReplyLine::Refused { .. } => false,
        }
    }

    /// The refusal's code and message, if the command was refused.
    pub fn refusal(&self) -> Option<(String, String)> {
        match self {
            ReplyLine::Executed { reply, .. } => reply
                .error
                .as_ref()
                .map(|e| (e.code.to_string(), e.message.clone())),
            ReplyLine::Partner { reply, .. } => reply
                .error
                .as_ref()
                .map(|e| (e.code.to_string(), e.message.clone())),
            ReplyLine::Refused { error, .. } => Some((error.code.clone(), error.message.clone())),
        }
    }
}
