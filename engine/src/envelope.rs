//! The command envelope: what a caller sends on any interface (CLI file, NATS, tests).
//!
//! Why a separate parse step: every interface must answer bad input with a structured error
//! and keep running. Parsing here turns malformed JSON, wrong types, missing fields,
//! oversized payloads and unknown commands into one [`InputError`] with a stable code, before
//! anything reaches the engine.

use dealreg_domain::{Actor, Command};
use serde::{Deserialize, Serialize};

/// Largest command accepted on any interface. A registration with a long proof of work fits
/// many times over; anything bigger is a mistake or an attack.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// A command with who sends it and the key that makes retries safe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope {
    /// Same key, same command → one effect, and the retry gets the first reply. Keys are
    /// scoped to the actor, so two partners can never see each other's replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub actor: Actor,
    pub command: Command,
}

/// Why a command could not even be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct InputError {
    pub code: InputErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputErrorCode {
    /// Not JSON at all.
    MalformedJson,
    /// JSON, but not a command envelope (wrong types, missing or unknown fields).
    InvalidCommand,
    /// `command.type` names no command this engine knows.
    UnknownCommand,
    /// Bigger than [`MAX_COMMAND_BYTES`].
    PayloadTooLarge,
}

impl std::fmt::Display for InputErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self {
            InputErrorCode::MalformedJson => "malformed_json",
            InputErrorCode::InvalidCommand => "invalid_command",
            InputErrorCode::UnknownCommand => "unknown_command",
            InputErrorCode::PayloadTooLarge => "payload_too_large",
        };
        f.write_str(code)
    }
}

impl CommandEnvelope {
    /// Reads one envelope from JSON bytes, or says precisely what is wrong with them.
    pub fn parse(bytes: &[u8]) -> Result<CommandEnvelope, InputError> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(InputError {
                code: InputErrorCode::PayloadTooLarge,
                message: format!(
                    "the command is {} bytes; the limit is {MAX_COMMAND_BYTES}. Move large evidence to a document store and send its link",
                    bytes.len()
                ),
                line: None,
                column: None,
            });
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| InputError {
            code: InputErrorCode::MalformedJson,
            message: format!("not valid JSON ({e}); send one JSON object per command"),
            line: Some(e.line()),
            column: Some(e.column()),
        })?;
        let command_type = value
            .get("command")
            .and_then(|c| c.get("type"))
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        serde_json::from_value::<CommandEnvelope>(value).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown variant") {
                if let Some(name) = command_type {
                    return InputError {
                        code: InputErrorCode::UnknownCommand,
                        message: format!(
                            "`{name}` is not a dealreg command; see schemas/ or docs/API.md for the command list ({text})"
                        ),
                        line: None,
                        column: None,
                    };
                }
            }
            InputError {
                code: InputErrorCode::InvalidCommand,
                message: format!(
                    "the envelope must be {{\"idempotency_key\"?, \"actor\", \"command\": {{\"type\", ...}}}}: {text}"
                ),
                line: None,
                column: None,
            }
        })
    }
}
