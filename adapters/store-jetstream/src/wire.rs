//! One event as one JetStream message, and back.
//!
//! The payload is the metadata bytes followed by the data bytes, so both come back exactly
//! as written (no JSON re-encoding: the hash covers the bytes). The headers carry the rest;
//! the stream name is not repeated, it is decoded from the subject.

use async_nats::HeaderMap;
use bytes::Bytes;
use dealreg_events::chain::Link;
use dealreg_events::{NewEvent, Position, RecordedEvent, StoreError};
use uuid::Uuid;

pub const EVENT_ID: &str = "Dealreg-Event-Id";
pub const EVENT_TYPE: &str = "Dealreg-Event-Type";
pub const REVISION: &str = "Dealreg-Revision";
pub const PREV_HASH: &str = "Dealreg-Prev-Hash";
pub const HASH: &str = "Dealreg-Hash";
pub const METADATA_LENGTH: &str = "Dealreg-Metadata-Length";

/// Whether an event type survives a trip through a NATS header unchanged. Why it is
/// checked: the client trims header values and a value cannot hold line breaks, and the
/// chain hashes the type, so a type that came back different would break its chain.
pub fn header_safe(value: &str) -> bool {
    value.trim() == value && !value.chars().any(char::is_control)
}

/// The headers and payload of one event.
pub fn encode(event: &NewEvent, link: &Link) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(EVENT_ID, event.event_id.to_string().as_str());
    headers.insert(EVENT_TYPE, event.event_type.as_str());
    headers.insert(REVISION, link.revision.to_string().as_str());
    headers.insert(PREV_HASH, link.prev_hash.as_str());
    headers.insert(HASH, link.hash.as_str());
    headers.insert(METADATA_LENGTH, event.metadata.len().to_string().as_str());
    let mut payload = Vec::with_capacity(event.metadata.len() + event.data.len());
    payload.extend_from_slice(&event.metadata);
    payload.extend_from_slice(&event.data);
    (headers, Bytes::from(payload))
}

/// A message that is not a dealreg event, named by its sequence so an operator can find it.
pub fn foreign(sequence: u64, subject: &str, what: &str) -> StoreError {
    StoreError::Backend(format!(
        "message {sequence} on subject `{subject}` is not a dealreg event ({what}): it was written outside dealreg; \
         keep other writers off the event subjects, or remove the message"
    ))
}

fn header<'a>(
    headers: Option<&'a HeaderMap>,
    name: &str,
    sequence: u64,
    subject: &str,
) -> Result<&'a str, StoreError> {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
        .ok_or_else(|| foreign(sequence, subject, &format!("no `{name}` header")))
}

/// Rebuilds the event stored at `sequence` on `subject` of stream `stream`.
pub fn decode(
    stream: String,
    subject: &str,
    sequence: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<RecordedEvent, StoreError> {
    let event_id = header(headers, EVENT_ID, sequence, subject)?;
    let event_id = Uuid::parse_str(event_id)
        .map_err(|_| foreign(sequence, subject, &format!("`{EVENT_ID}` is not a uuid")))?;
    let event_type = header(headers, EVENT_TYPE, sequence, subject)?.to_string();
    let revision = header(headers, REVISION, sequence, subject)?
        .parse::<u64>()
        .map_err(|_| foreign(sequence, subject, &format!("`{REVISION}` is not a number")))?;
    let prev_hash = header(headers, PREV_HASH, sequence, subject)?.to_string();
    let hash = header(headers, HASH, sequence, subject)?.to_string();
    let metadata_length = header(headers, METADATA_LENGTH, sequence, subject)?
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= payload.len())
        .ok_or_else(|| {
            foreign(
                sequence,
                subject,
                &format!("`{METADATA_LENGTH}` is not a length within the payload"),
            )
        })?;
    let (metadata, data) = payload.split_at(metadata_length);
    Ok(RecordedEvent {
        stream,
        revision,
        position: Position::at(sequence),
        event_id,
        event_type,
        data: data.to_vec(),
        metadata: metadata.to_vec(),
        prev_hash,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_events::chain::link;

    #[test]
    fn an_event_round_trips() {
        let event = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "AccountOpened".into(),
            data: br#"{"n":1}"#.to_vec(),
            metadata: br#"{"k":"v"}"#.to_vec(),
        };
        let links = link("s", None, std::slice::from_ref(&event));
        let (headers, payload) = encode(&event, &links[0]);
        let back = decode("s".into(), "ev.s", 7, Some(&headers), &payload).expect("decode");
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.event_type, event.event_type);
        assert_eq!(back.data, event.data);
        assert_eq!(back.metadata, event.metadata);
        assert_eq!(back.revision, 0);
        assert_eq!(back.position, Position::at(7));
        assert_eq!(back.hash, links[0].hash);
        assert_eq!(back.prev_hash, links[0].prev_hash);
    }

    #[test]
    fn a_message_without_headers_names_its_sequence() {
        let err = decode("s".into(), "ev.s", 42, None, b"x").expect_err("foreign");
        assert!(err.to_string().contains("message 42"), "{err}");
    }

    #[test]
    fn types_that_a_header_would_change_are_found() {
        assert!(header_safe("AccountOpened"));
        assert!(header_safe("account.opened: v2 ü"));
        assert!(header_safe(""));
        for bad in [" lead", "trail ", "line\nbreak", "cr\r", "tab\tin"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
    }
}
