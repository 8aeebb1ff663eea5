//! The append rules every backend applies identically.

use crate::{AppendRequest, ExpectedVersion, StoreError, StreamRevision};

/// Refuses requests no backend should accept: no writes, or one stream named twice
/// (its expected version would be ambiguous).
pub fn validate(request: &AppendRequest) -> Result<(), StoreError> {
    if request.writes.is_empty() {
        return Err(StoreError::InvalidAppend(
            "an append needs at least one stream write".into(),
        ));
    }
    for (i, write) in request.writes.iter().enumerate() {
        if write.stream.is_empty() {
            return Err(StoreError::InvalidAppend(
                "a stream name cannot be empty".into(),
            ));
        }
        if request.writes[..i].iter().any(|w| w.stream == write.stream) {
            return Err(StoreError::InvalidAppend(format!(
                "stream `{}` appears twice in one append; put its events in one write",
                write.stream
            )));
        }
    }
    Ok(())
}

/// Checks a write's expectation against the stream's last revision (`None`: no events).
pub fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<StreamRevision>,
) -> Result<(), StoreError> {
    let holds = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::StreamExists => actual.is_some(),
        ExpectedVersion::Exact(revision) => actual == Some(revision),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected,
            actual,
        })
    }
}
