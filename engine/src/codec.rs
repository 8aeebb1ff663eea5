//! The stored form of events: the metadata written beside every event, and decoding
//! through one chain of upcasters.
//!
//! Why upcasters: events are never rewritten (docs/ARCHITECTURE.md, invariant 2), but the code that
//! reads them changes. Every event's metadata records the `schema` its payload was written
//! in; [`decode_event`] reads it and, for an older schema, lifts the payload one version at
//! a time (each step keyed by event type and the version it lifts from) until it has the
//! shape this build decodes. Payloads of the current schema decode directly, without serde's
//! buffering of internally tagged enums ([`decode_current`], issue 36).

use chrono::{DateTime, Utc};
use dealreg_domain::ids::normalise_product_line;
use dealreg_domain::{Actor, Event};
use dealreg_events::RecordedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

mod fields;
mod tag_first;
mod time;

pub use tag_first::{decode_buffered, decode_current};

/// Payload encoding of events written by this build.
///
/// * 1: the first encoding.
/// * 2: product lines are stored normalised (trimmed, single-spaced, lower case), so that
///   ` Analytics` and `analytics` are one line for every rule that compares them.
/// * 3: a registration's contact is personal data and is stored sealed under its
///   person's key (`customer.contact` is `{"sealed": {...}}`; see `personal`), so that
///   `dealreg forget` can erase it. Older contacts were stored in clear and read as
///   `{"clear": {...}}`.
pub const EVENT_SCHEMA_VERSION: u32 = 3;

/// Stored next to every event; not part of the event's meaning but part of the stored
/// (and hashed) bytes, so an auditor sees who, when, under which policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Version of the event payload encoding; the upcasters key on it.
    pub schema: u32,
    pub command_id: Uuid,
    pub command: String,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// What makes a command with the key "the same" (a hash of the actor and the command):
    /// a retry with the key and another command is refused. Absent in events written
    /// before the engine kept idempotency in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub policy_version: u32,
    /// The clock adapter's time when the command was decided.
    pub decided_at: DateTime<Utc>,
    /// The command itself, its personal data replaced by placeholders of the same shape
    /// ([`dealreg_domain::redaction`]), on the first event the command wrote on its own
    /// stream only: what `dealreg what-if` decides again under a draft policy. Absent in
    /// events written before the engine kept it, and on the other events of a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_body: Option<serde_json::Value>,
}

/// One step of the chain: lifts a payload of `event_type` (or of every type, `"*"`) from
/// schema `from` to `from + 1`.
struct Upcaster {
    event_type: &'static str,
    from: u32,
    lift: fn(&mut Value),
}

/// Every step ever needed, oldest first. A new schema adds its steps here; none is ever
/// removed while a store may hold events of its version.
const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "*",
        from: 1,
        lift: normalise_product_lines,
    },
    Upcaster {
        event_type: "registration_submitted",
        from: 2,
        lift: contact_on_record,
    },
];

/// Schema 1 → 2: product lines are normalised wherever an event names one.
fn normalise_product_lines(payload: &mut Value) {
    if let Some(Value::String(line)) = payload.get_mut("product_line") {
        *line = normalise_product_line(line);
    }
}

/// Schema 2 → 3: the contact, stored as it was given (`{"name", "email"}`), is a contact
/// on record held in clear: `{"clear": {"name", "email"}}`. It stays readable, and
/// `dealreg forget` reports it as beyond its reach (the log is never rewritten).
fn contact_on_record(payload: &mut Value) {
    if let Some(customer) = payload.get_mut("customer").and_then(Value::as_object_mut) {
        if let Some(contact) = customer.remove("contact") {
            let mut on_record = serde_json::Map::new();
            on_record.insert("clear".into(), contact);
            customer.insert("contact".into(), Value::Object(on_record));
        }
    }
}

/// The part of the metadata decoding needs.
#[derive(Deserialize)]
struct Schema {
    schema: u32,
}

/// A stored event this build cannot read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("event at position {position} in stream `{stream}` cannot be decoded ({reason}); it was written by a newer dealreg or altered: run `dealreg verify`")]
pub struct DecodeError {
    pub stream: String,
    pub position: dealreg_events::Position,
    pub reason: String,
}

fn undecodable(recorded: &RecordedEvent, reason: String) -> DecodeError {
    DecodeError {
        stream: recorded.stream.clone(),
        position: recorded.position,
        reason,
    }
}

/// The schema a metadata blob names. This build writes `{"schema":N,...` first, so that
/// prefix is read without parsing the rest; anything else (a hand-written or foreign
/// blob) is parsed in full.
fn schema_of(metadata: &[u8]) -> Result<u32, String> {
    if let Some(rest) = metadata.strip_prefix(b"{\"schema\":") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && matches!(rest.get(digits), Some(b',') | Some(b'}')) {
            if let Some(n) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                return Ok(n);
            }
        }
    }
    serde_json::from_slice::<Schema>(metadata)
        .map(|s| s.schema)
        .map_err(|e| format!("its metadata has no readable schema: {e}"))
}

/// Decodes a stored event into the current [`Event`], upcasting older payload versions.
pub fn decode_event(recorded: &RecordedEvent) -> Result<Event, DecodeError> {
    let schema = schema_of(&recorded.metadata).map_err(|e| undecodable(recorded, e))?;
    if schema == EVENT_SCHEMA_VERSION {
        return decode_current(&recorded.data).map_err(|e| undecodable(recorded, e.to_string()));
    }
    if schema > EVENT_SCHEMA_VERSION || schema == 0 {
        return Err(undecodable(
            recorded,
            format!("it was written in schema {schema}; this build reads schemas 1 to {EVENT_SCHEMA_VERSION}: upgrade dealreg"),
        ));
    }
    let mut payload: Value =
        serde_json::from_slice(&recorded.data).map_err(|e| undecodable(recorded, e.to_string()))?;
    for version in schema..EVENT_SCHEMA_VERSION {
        for step in UPCASTERS.iter().filter(|u| {
            u.from == version && (u.event_type == "*" || u.event_type == recorded.event_type)
        }) {
            (step.lift)(&mut payload);
        }
    }
    serde_json::from_value::<Event>(payload).map_err(|e| undecodable(recorded, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_read_from_the_prefix_or_from_the_whole_blob() {
        assert_eq!(schema_of(br#"{"schema":2,"command":"x"}"#), Ok(2));
        assert_eq!(schema_of(br#"{"schema":12}"#), Ok(12));
        assert_eq!(schema_of(br#"{ "command":"x", "schema": 1 }"#), Ok(1));
        assert!(schema_of(br#"{"schema":"2"}"#).is_err());
        assert!(schema_of(b"not json").is_err());
    }

    #[test]
    fn a_schema_2_contact_is_lifted_to_a_clear_contact_on_record() {
        let mut payload = serde_json::json!({"customer": {"company": "Acme", "contact": {"name": "Dana", "email": "dana@acme.com"}}});
        contact_on_record(&mut payload);
        assert_eq!(
            payload["customer"]["contact"],
            serde_json::json!({"clear": {"name": "Dana", "email": "dana@acme.com"}})
        );
    }
}
