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
    /// What a program can read: `line`/`column` of malformed JSON, the `field` (JSON path)
    /// of an invalid command, the `limit` of an oversized one.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
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

/// The envelope as it arrives, before its command is read: the command stays JSON so that
/// it can be read by its own type, with a path-tracking deserializer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arriving {
    #[serde(default)]
    idempotency_key: Option<String>,
    actor: Actor,
    command: serde_json::Value,
}

fn invalid(message: String, field: &str) -> InputError {
    InputError {
        code: InputErrorCode::InvalidCommand,
        message,
        details: serde_json::json!({ "field": field }),
    }
}

/// The JSON path of a path-tracked serde error (`command.motion`), under `prefix`.
fn field_of(prefix: &str, error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    match (prefix, error.path().to_string().as_str()) {
        (p, ".") => p.to_string(),
        ("", path) => path.to_string(),
        (p, path) => format!("{p}.{path}"),
    }
}

/// "`command.motion`: unknown variant `resale`, expected one of ...".
fn at_path(field: &str, error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    if field.is_empty() {
        format!("the envelope: {}", error.inner())
    } else {
        format!("`{field}`: {}", error.inner())
    }
}

impl CommandEnvelope {
    /// Reads one envelope from JSON bytes, or says precisely what is wrong with them: the
    /// code, and for a command that does not fit its type the JSON path of the field and
    /// what was expected there.
    pub fn parse(bytes: &[u8]) -> Result<CommandEnvelope, InputError> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(InputError {
                code: InputErrorCode::PayloadTooLarge,
                message: format!(
                    "the command is {} bytes; the limit is {MAX_COMMAND_BYTES}. Move large evidence to a document store and send its link",
                    bytes.len()
                ),
                details: serde_json::json!({ "bytes": bytes.len(), "limit": MAX_COMMAND_BYTES }),
            });
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| InputError {
            code: InputErrorCode::MalformedJson,
            message: format!("not valid JSON ({e}); send one JSON object per command"),
            details: serde_json::json!({ "line": e.line(), "column": e.column() }),
        })?;
        const SHAPE: &str =
            "the envelope must be {\"idempotency_key\"?, \"actor\", \"command\": {\"type\", ...}}";
        let arriving: Arriving = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = field_of("", &e);
            invalid(format!("{}; {SHAPE}", at_path(&field, &e)), &field)
        })?;
        let serde_json::Value::Object(mut fields) = arriving.command else {
            return Err(invalid(
                format!("`command` must be an object; {SHAPE}"),
                "command",
            ));
        };
        let name = match fields.remove("type") {
            Some(serde_json::Value::String(name)) => name,
            Some(other) => {
                return Err(invalid(
                    format!("`command.type` must be a command name (a string), not {other}"),
                    "command.type",
                ))
            }
            None => {
                return Err(invalid(
                    format!("`command.type` is required; {SHAPE}"),
                    "command.type",
                ))
            }
        };
        let mut track = serde_path_to_error::Track::new();
        let fields =
            serde_path_to_error::Deserializer::new(serde_json::Value::Object(fields), &mut track);
        let command = match Command::from_fields(&name, fields) {
            None => {
                return Err(InputError {
                    code: InputErrorCode::UnknownCommand,
                    message: format!(
                        "`{name}` is not a dealreg command; the commands are {}; see schemas/ or docs/API.md",
                        Command::NAMES.join(", ")
                    ),
                    details: serde_json::json!({ "command": name }),
                })
            }
            Some(Ok(command)) => command,
            Some(Err(e)) => {
                let error = serde_path_to_error::Error::new(track.path(), e);
                let field = field_of("command", &error);
                return Err(invalid(
                    format!("{} (in `{name}`)", at_path(&field, &error)),
                    &field,
                ));
            }
        };
        Ok(CommandEnvelope {
            idempotency_key: arriving.idempotency_key,
            actor: arriving.actor,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<CommandEnvelope, InputError> {
        CommandEnvelope::parse(value.to_string().as_bytes())
    }

    fn submission() -> serde_json::Value {
        json!({
            "actor": { "kind": "vendor", "role": "channel_manager", "user": "cm" },
            "command": {
                "type": "submit_registration",
                "registration_id": "0190a0a0-0000-7000-8000-000000000001",
                "partner_id": "0190a0a0-0000-7000-8000-000000000002",
                "customer": { "company": "Acme", "domain": "acme.com",
                              "contact": { "name": "Dana", "email": "dana@acme.com" } },
                "product_line": "analytics",
                "motion": "reseller",
                "estimated_amount": { "amount_minor": 100, "currency": "USD" },
                "expected_close": "2026-09-30",
                "proof_of_work": "met the CFO"
            }
        })
    }

    #[test]
    fn a_valid_command_parses() {
        let envelope = parse(submission()).expect("parses");
        assert_eq!(envelope.command.name(), "submit_registration");
    }

    #[test]
    fn an_unknown_value_of_a_nested_enum_is_an_invalid_command_naming_the_field() {
        let mut bad = submission();
        bad["command"]["motion"] = json!("resale");
        let error = parse(bad).expect_err("refused");
        assert_eq!(
            error.code,
            InputErrorCode::InvalidCommand,
            "{}",
            error.message
        );
        assert!(
            error.message.contains("`command.motion`"),
            "{}",
            error.message
        );
        assert_eq!(error.details["field"], "command.motion");
        for allowed in [
            "referral",
            "reseller",
            "marketplace",
            "services",
            "tech_isv",
        ] {
            assert!(error.message.contains(allowed), "{}", error.message);
        }
        assert!(!error.message.contains("is not a dealreg command"));
    }

    #[test]
    fn errors_name_the_json_path_of_nested_fields() {
        let mut overflow = submission();
        overflow["command"]["estimated_amount"]["amount_minor"] =
            json!(9_223_372_036_854_775_808u64);
        let error = parse(overflow).expect_err("refused");
        assert!(
            error
                .message
                .contains("`command.estimated_amount.amount_minor`"),
            "{}",
            error.message
        );
        let mut actor = submission();
        actor["actor"] = json!({ "kind": "partner", "user": "x" });
        let error = parse(actor).expect_err("refused");
        assert_eq!(error.code, InputErrorCode::InvalidCommand);
        assert!(error.message.contains("`actor`"), "{}", error.message);
    }

    #[test]
    fn only_a_name_no_command_has_is_an_unknown_command() {
        let mut unknown = submission();
        unknown["command"]["type"] = json!("submit_registraton");
        let error = parse(unknown).expect_err("refused");
        assert_eq!(error.code, InputErrorCode::UnknownCommand);
        assert!(
            error.message.contains("submit_registration"),
            "lists the commands"
        );
        let mut untyped = submission();
        untyped["command"]["type"] = json!(7);
        assert_eq!(
            parse(untyped).expect_err("refused").code,
            InputErrorCode::InvalidCommand
        );
        let mut missing = submission();
        missing["command"].as_object_mut().map(|c| c.remove("type"));
        assert_eq!(
            parse(missing).expect_err("refused").code,
            InputErrorCode::InvalidCommand
        );
    }
}
