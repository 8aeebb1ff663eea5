//! The append rules every backend applies identically.

use crate::{ExpectedVersion, NewEvent, StoreError, StreamRevision};

/// Refuses appends no backend should accept: an empty stream name, no events, or one
/// event id twice.
pub fn validate(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    if stream.is_empty() {
        return Err(StoreError::InvalidAppend(
            "a stream name cannot be empty".into(),
        ));
    }
    if events.is_empty() {
        return Err(StoreError::InvalidAppend(format!(
            "an append to `{stream}` needs at least one event"
        )));
    }
    for (i, event) in events.iter().enumerate() {
        if events[..i].iter().any(|e| e.event_id == event.event_id) {
            return Err(StoreError::InvalidAppend(format!(
                "event id {} appears twice in one append; every event needs its own id",
                event.event_id
            )));
        }
    }
    Ok(())
}

/// Checks an append's expectation against the stream's last revision (`None`: no events).
pub fn check_expected(
    stream: &str,
    expected: &ExpectedVersion,
    actual: Option<StreamRevision>,
) -> Result<(), StoreError> {
    let holds = match expected.revision() {
        None => true,
        Some(wanted) => wanted == actual,
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected: expected.clone(),
            actual,
        })
    }
}
