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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema,
)]
#[error("{code}: {message}")]
pub struct InputError {
    pub code: InputErrorCode,
    pub message: String,
    /// What a program can read: `line`/`column` of malformed JSON, the `field` (JSON path)
    /// of an invalid command, the `limit` of an oversized one.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The body names another actor than the subject it was sent on (NATS): the actor
    /// comes from the subject, which the server's permissions confine.
    ActorMismatch,
    /// The body's `command.type` is not the command its subject names (NATS).
    CommandMismatch,
}

impl InputErrorCode {
    /// Every input error, in declaration order.
    pub const ALL: [InputErrorCode; 6] = [
        InputErrorCode::MalformedJson,
        InputErrorCode::InvalidCommand,
        InputErrorCode::UnknownCommand,
        InputErrorCode::PayloadTooLarge,
        InputErrorCode::ActorMismatch,
        InputErrorCode::CommandMismatch,
    ];

    /// Whether `code` is the code of an input error (the line or body was not a readable
    /// command), as opposed to a refusal of a readable one.
    pub fn is_input_code(code: &str) -> bool {
        Self::ALL.iter().any(|c| c.to_string() == code)
    }
}

impl std::fmt::Display for InputErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self {
            InputErrorCode::MalformedJson => "malformed_json",
            InputErrorCode::InvalidCommand => "invalid_command",
            InputErrorCode::UnknownCommand => "unknown_command",
            InputErrorCode::PayloadTooLarge => "payload_too_large",
            InputErrorCode::ActorMismatch => "actor_mismatch",
            InputErrorCode::CommandMismatch => "command_mismatch",
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

/// Whether `value` holds an array anywhere (most commands hold none, and need no
/// [`array_for_object`] walk).
fn holds_array(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Array(_) => true,
        serde_json::Value::Object(fields) => fields.values().any(holds_array),
        _ => false,
    }
}

/// The JSON path of the first place where `given` (the input) has an array and `read`
/// (what was read from it, serialised again) has an object: a struct that serde's derive
/// read from the array of its fields in order (it accepts both, as `[5000, "EUR"]` for an
/// amount). Why refuse it: the schemas say object, and a reader that follows them (or a
/// later field added to the struct) would read that array otherwise.
fn array_for_object(
    given: &serde_json::Value,
    read: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (given, read) {
        (Value::Array(_), Value::Object(_)) => Some(path.to_string()),
        (Value::Object(given), Value::Object(read)) => read.iter().find_map(|(key, r)| {
            given
                .get(key)
                .and_then(|g| array_for_object(g, r, &join(key)))
        }),
        (Value::Array(given), Value::Array(read)) => given
            .iter()
            .zip(read)
            .enumerate()
            .find_map(|(i, (g, r))| array_for_object(g, r, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Refuses `given` when [`array_for_object`] finds an array where `read` has an object.
/// `given` is kept (a copy of the input) only when it [`holds_array`]: most inputs need no
/// walk, and no copy on the command path.
fn objects_as_objects<T: Serialize>(
    given: Option<&serde_json::Value>,
    read: &T,
    path: &str,
) -> Result<(), InputError> {
    let Some(given) = given else {
        return Ok(());
    };
    let Ok(read) = serde_json::to_value(read) else {
        return Ok(());
    };
    match array_for_object(given, &read, path) {
        None => Ok(()),
        Some(field) => Err(invalid(
            format!("`{field}` must be an object, not an array; see schemas/ for its fields"),
            &field,
        )),
    }
}

/// Reads JSON, refusing an object that names a key twice: JSON parsers disagree on which
/// of the two wins (serde keeps the last), and two readers of one message must never
/// disagree about what it says.
fn unique_keys(bytes: &[u8]) -> Result<serde_json::Value, InputError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let mut track = serde_path_to_error::Track::new();
    let read = Unique::deserialize(serde_path_to_error::Deserializer::new(
        &mut reader,
        &mut track,
    ))
    .and_then(|unique| reader.end().map(|()| unique))
    .map_err(|e| serde_path_to_error::Error::new(track.path(), e));
    match read {
        Ok(Unique(value)) => Ok(value),
        Err(e) if e.inner().is_data() => {
            // The path is the object's; name the repeated key in it.
            let message = e.inner().to_string();
            let key = message
                .strip_prefix("the key `")
                .and_then(|rest| rest.split_once("` appears twice"))
                .map(|(key, _)| key);
            let field = match (field_of("", &e), key) {
                (object, Some(key)) if object.is_empty() => key.to_string(),
                (object, Some(key)) => format!("{object}.{key}"),
                (object, None) => object,
            };
            Err(invalid(
                format!("{}; send each key once", at_path(&field, &e)),
                &field,
            ))
        }
        Err(e) => {
            let inner = e.inner();
            Err(InputError {
                code: InputErrorCode::MalformedJson,
                message: format!("not valid JSON ({inner}); send one JSON object per command"),
                details: serde_json::json!({ "line": inner.line(), "column": inner.column() }),
            })
        }
    }
}

/// A JSON value read with every object's keys checked for repeats.
struct Unique(serde_json::Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("the key `{key}` appears twice")));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
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
    let what = explain(&error.inner().to_string());
    if field.is_empty() {
        format!("the envelope: {what}")
    } else {
        format!("`{field}`: {what}")
    }
}

/// JSON has one kind of number: a whole number too big for 64 bits is read as a float, and
/// serde then says "invalid type: floating point `1.8446744073709552e19`, expected i64".
/// Say what was wrong instead.
fn explain(serde_message: &str) -> String {
    let integer = ["i64", "u64", "u32", "u16", "u8", "i32"]
        .into_iter()
        .find(|t| serde_message.ends_with(&format!("expected {t}")));
    match integer {
        Some(kind) if serde_message.starts_with("invalid type: floating point") => {
            let (min, max) = match kind {
                "i64" => (i64::MIN.to_string(), i64::MAX.to_string()),
                "i32" => (i32::MIN.to_string(), i32::MAX.to_string()),
                "u64" => ("0".into(), u64::MAX.to_string()),
                "u16" => ("0".into(), u16::MAX.to_string()),
                "u8" => ("0".into(), u8::MAX.to_string()),
                _ => ("0".into(), u32::MAX.to_string()),
            };
            format!("expected a whole number from {min} to {max} (the number sent is out of range or not whole)")
        }
        _ => serde_message.to_string(),
    }
}

/// Where a command was sent, when the address itself says who sends it and what it is
/// (a NATS subject: `dealreg.partner.<id>.cmd.submit_registration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The actor the subject stands for; its `user` is the one used when the body names
    /// no actor.
    pub actor: Actor,
    pub command: String,
    /// A key the transport carries (the `Nats-Msg-Id` header).
    pub idempotency_key: Option<String>,
}

impl Address {
    /// Whether an actor named in a body is the one this address stands for (any user of
    /// that partner, role or component).
    pub fn sends_as(&self, named: &Actor) -> bool {
        match (&self.actor, named) {
            (Actor::Partner { partner_id: a, .. }, Actor::Partner { partner_id: b, .. }) => a == b,
            (Actor::Vendor { role: a, .. }, Actor::Vendor { role: b, .. }) => a == b,
            (Actor::System { component: a }, Actor::System { component: b }) => a == b,
            _ => false,
        }
    }
}

fn too_large(bytes: &[u8]) -> Result<(), InputError> {
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
    Ok(())
}

impl CommandEnvelope {
    /// Reads one envelope from JSON bytes, or says precisely what is wrong with them: the
    /// code, and for a command that does not fit its type the JSON path of the field and
    /// what was expected there.
    pub fn parse(bytes: &[u8]) -> Result<CommandEnvelope, InputError> {
        too_large(bytes)?;
        Self::from_value(unique_keys(bytes)?)
    }

    /// Reads a command sent to an address that already says who sends it and which
    /// command it is (a NATS subject): the body may leave out `actor` and `command.type`,
    /// and when it names them they must be the address's. Why: the actor of a NATS
    /// command is the one the server let publish on its subject, never what the body
    /// claims. The idempotency key of the body wins over the address's (a header).
    pub fn parse_addressed(bytes: &[u8], address: &Address) -> Result<CommandEnvelope, InputError> {
        too_large(bytes)?;
        let mut value = unique_keys(bytes)?;
        let serde_json::Value::Object(fields) = &mut value else {
            return Err(invalid(
                "the body must be a JSON object: {\"idempotency_key\"?, \"actor\"?, \"command\": {...}}".into(),
                "",
            ));
        };
        match fields.get("actor") {
            None | Some(serde_json::Value::Null) => {
                fields.insert(
                    "actor".into(),
                    serde_json::to_value(&address.actor).unwrap_or_default(),
                );
            }
            Some(named) => {
                let named: Actor =
                    serde_path_to_error::deserialize(named.clone()).map_err(|e| {
                        let field = field_of("actor", &e);
                        invalid(at_path(&field, &e), &field)
                    })?;
                if !address.sends_as(&named) {
                    return Err(InputError {
                        code: InputErrorCode::ActorMismatch,
                        message: format!(
                            "this subject sends as {}, the body names {}; leave `actor` out (the subject says who sends) or send on your own subject",
                            address.actor.label(),
                            named.label()
                        ),
                        details: serde_json::json!({ "field": "actor" }),
                    });
                }
            }
        }
        if let (None, Some(key)) = (fields.get("idempotency_key"), &address.idempotency_key) {
            fields.insert("idempotency_key".into(), key.clone().into());
        }
        if let Some(serde_json::Value::Object(command)) = fields.get_mut("command") {
            match command.get("type") {
                None => {
                    command.insert("type".into(), address.command.clone().into());
                }
                Some(serde_json::Value::String(named)) if *named == address.command => {}
                Some(other) => {
                    return Err(InputError {
                        code: InputErrorCode::CommandMismatch,
                        message: format!(
                            "this subject takes `{}`, the body's `command.type` is {other}; leave `type` out or send on the subject of that command",
                            address.command
                        ),
                        details: serde_json::json!({ "field": "command.type" }),
                    });
                }
            }
        }
        Self::from_value(value)
    }

    fn from_value(value: serde_json::Value) -> Result<CommandEnvelope, InputError> {
        const SHAPE: &str =
            "the envelope must be {\"idempotency_key\"?, \"actor\", \"command\": {\"type\", ...}}";
        let given_actor = value.get("actor").filter(|a| holds_array(a)).cloned();
        let arriving: Arriving = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = field_of("", &e);
            invalid(format!("{}; {SHAPE}", at_path(&field, &e)), &field)
        })?;
        objects_as_objects(given_actor.as_ref(), &arriving.actor, "actor")?;
        let given_command = holds_array(&arriving.command).then(|| arriving.command.clone());
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
            Some(Ok(command)) => {
                objects_as_objects(given_command.as_ref(), &command, "command")?;
                command
            }
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

    /// serde's derived structs also read a JSON array of their fields in order; the
    /// schemas say object, and so does the parser.
    #[test]
    fn an_array_where_an_object_belongs_is_an_invalid_command_naming_the_field() {
        let mut amount = submission();
        amount["command"]["estimated_amount"] = json!([100, "USD"]);
        let mut customer = submission();
        customer["command"]["customer"] =
            json!(["Acme", "acme.com", { "name": "Dana", "email": "dana@acme.com" }]);
        let mut contact = submission();
        contact["command"]["customer"]["contact"] = json!(["Dana", "dana@acme.com"]);
        let mut actor = submission();
        actor["actor"] = json!(["vendor", "channel_manager", "cm"]);
        for (bad, field) in [
            (amount, "command.estimated_amount"),
            (customer, "command.customer"),
            (contact, "command.customer.contact"),
            (actor, "actor"),
        ] {
            let error = parse(bad).expect_err(field);
            assert_eq!(error.code, InputErrorCode::InvalidCommand, "{field}");
            assert_eq!(error.details["field"], field, "{}", error.message);
            assert!(
                error.message.contains("must be an object, not an array"),
                "{}",
                error.message
            );
        }
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
        let mut beyond_u64 = submission();
        beyond_u64["command"]["estimated_amount"]["amount_minor"] =
            serde_json::from_str::<serde_json::Value>("18446744073709551616").unwrap_or_default();
        let error = parse(beyond_u64).expect_err("refused");
        assert!(error.message.contains("whole number"), "{}", error.message);
        assert!(
            !error.message.contains("floating point"),
            "{}",
            error.message
        );
        assert_eq!(
            error.details["field"],
            "command.estimated_amount.amount_minor"
        );
        let mut actor = submission();
        actor["actor"] = json!({ "kind": "partner", "user": "x" });
        let error = parse(actor).expect_err("refused");
        assert_eq!(error.code, InputErrorCode::InvalidCommand);
        assert!(error.message.contains("`actor`"), "{}", error.message);
    }

    #[test]
    fn a_key_named_twice_is_refused_with_its_path() {
        let text = submission().to_string().replacen(
            "\"motion\":\"reseller\"",
            "\"motion\":\"reseller\",\"motion\":\"referral\"",
            1,
        );
        let error = CommandEnvelope::parse(text.as_bytes()).expect_err("refused");
        assert_eq!(
            error.code,
            InputErrorCode::InvalidCommand,
            "{}",
            error.message
        );
        assert!(
            error.message.contains("`motion` appears twice"),
            "{}",
            error.message
        );
        assert_eq!(error.details["field"], "command.motion");
        let nested = r#"{"actor":{"kind":"system","component":"a","component":"b"},"command":{"type":"adopt_policy"}}"#;
        let error = CommandEnvelope::parse(nested.as_bytes()).expect_err("refused");
        assert_eq!(error.details["field"], "actor.component");
        let broken = CommandEnvelope::parse(b"{\"actor\": ").expect_err("refused");
        assert_eq!(broken.code, InputErrorCode::MalformedJson);
        let trailing = CommandEnvelope::parse(b"{} {}").expect_err("refused");
        assert_eq!(trailing.code, InputErrorCode::MalformedJson);
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
