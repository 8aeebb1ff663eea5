//! The reply to a command: the events it produced with their positions, or a coded error.
//!
//! Why replies are built from recorded events: a retried command (same idempotency key) must
//! get exactly the first caller's reply. Building both from what the store recorded makes
//! that true by construction.

use dealreg_domain::{DomainError, Event};
use dealreg_events::{Position, StreamRevision};
use serde::{Deserialize, Serialize};

use crate::envelope::InputError;

/// One event of a reply, with where it landed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PositionedEvent {
    pub stream: String,
    pub revision: StreamRevision,
    pub position: Position,
    pub event: Event,
}

/// What a caller gets back for a command that reached the engine.
///
/// A rejected command is still recorded (as a `command_rejected` event, so an auditor sees
/// every attempt); `ok` is false and `error` carries the stable code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reply {
    pub ok: bool,
    pub command: String,
    pub events: Vec<PositionedEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DomainError>,
}

/// The error body of a refused line: a stable code, a message that says what to do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefusalBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// The most of a refusal's message a reply carries, in bytes.
///
/// Why: a message may quote what it refuses (serde names the value it could not read),
/// and an input of megabytes, quoted in a NATS reply's error header and again in its body,
/// made a reply bigger than the server's `max_payload`: the server closed the service's
/// connection, and the replies to other clients in flight were lost.
pub const MAX_REFUSAL_MESSAGE: usize = 1024;

/// `message` cut to at most [`MAX_REFUSAL_MESSAGE`] bytes (at a character boundary), and
/// saying so when it was.
pub fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_REFUSAL_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_REFUSAL_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [message cut: {} bytes in all]",
        &message[..end],
        message.len()
    )
}

impl From<&InputError> for RefusalBody {
    fn from(e: &InputError) -> Self {
        RefusalBody {
            code: e.code.to_string(),
            message: bounded_message(&e.message),
            details: e.details.clone(),
        }
    }
}
