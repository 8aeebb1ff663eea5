//! Errors: why a store could not be opened, and how the client's errors become the events
//! port's [`StoreError`]s.
//!
//! The one judgement made here is what an append failure says about the write. The
//! client's errors fall in three groups, read from its code (kurrentdb 1.2.0,
//! `Error::from_grpc` and `commands::append_to_stream`):
//!
//! * the server answered and refused (wrong expected version, stream deleted, access
//!   denied, invalid argument): nothing was written, and sending it again gets the same
//!   answer;
//! * the request never left (no node could be reached, the client's connection task is
//!   gone), or the server turned it away before looking at it (not the leader, too busy):
//!   nothing was written, and sending it again is safe;
//! * anything else (a deadline, a connection lost mid-call, a status the client maps to
//!   `ServerError` such as `UNAVAILABLE` or `INTERNAL`): the write may have happened.

use kurrentdb::{CurrentRevision, Error as ClientError};
use tonic::Code;

use dealreg_events::{ExpectedVersion, Position, StoreError};

/// Why [`crate::KurrentStore::connect`] could not open a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("`{url}` is not a KurrentDB connection string ({reason}); write it as kurrentdb://HOST:2113?tls=false for an insecure single node, kurrentdb://USER:PASSWORD@HOST:2113 for a secure one, or kurrentdb+discover://HOST:2113 for a cluster (esdb:// works too)")]
    BadUrl { url: String, reason: String },
    #[error("`{namespace}` cannot be a stream namespace: use letters, digits, `_` and `-` only, not starting with `$`")]
    BadNamespace { namespace: String },
    #[error("KurrentStore::connect needs a running tokio runtime (the KurrentDB client runs its connection on it); call it from inside one")]
    NoRuntime,
    #[error("the KurrentDB client for `{url}` could not start: {reason}")]
    Client { url: String, reason: String },
    #[error("KurrentDB at `{url}` did not answer: {reason}; check that the server runs, the host and port, and that tls= matches the server (tls=false for an insecure node)")]
    Unreachable { url: String, reason: String },
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

/// An event in KurrentDB that dealreg cannot read as one of its own: written by another
/// program, or by a newer dealreg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the KurrentDB event at position {position} (stream `{stream}`, revision {revision}, id {event_id}, type `{event_type}`) is not a dealreg event: {why}. Only dealreg may write the streams it reads; move other programs' streams out of the way (or give dealreg a namespace of its own) and read again")]
pub struct ForeignEvent {
    pub position: Position,
    pub stream: String,
    pub revision: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub why: String,
}

impl From<ForeignEvent> for StoreError {
    fn from(e: ForeignEvent) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

/// A connection string with any password replaced, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, hosts)) => format!("{scheme}://***@{hosts}{tail}"),
        None => url.to_string(),
    }
}

/// What one failed attempt at an append says about that attempt.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// The server answered and refused: nothing of the attempt was written, and sending
    /// it again would get the same answer.
    Refused(StoreError),
    /// Nothing of the attempt was written, and it may be sent again.
    NotSent(String),
    /// The attempt may have been written.
    Unknown(String),
}

/// Sorts a failed append attempt into what it says about the write.
pub(crate) fn append_failure(
    stream: &str,
    expected: &ExpectedVersion,
    error: ClientError,
) -> AppendFailure {
    match error {
        ClientError::WrongExpectedVersion { current, .. } => {
            AppendFailure::Refused(StoreError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected: expected.clone(),
                actual: match current {
                    CurrentRevision::Current(revision) => Some(revision),
                    CurrentRevision::NoStream => None,
                },
            })
        }
        ClientError::ResourceDeleted => AppendFailure::Refused(StoreError::Backend(format!(
            "stream `{stream}` was deleted for good (tombstoned) in KurrentDB and can never be written again; dealreg never deletes streams, so someone else did: restore it from a backup or an export"
        ))),
        ClientError::AccessDenied => AppendFailure::Refused(StoreError::Backend(format!(
            "KurrentDB denied the append to `{stream}`: give the connection string a user allowed to write it"
        ))),
        ClientError::ConnectionClosed => AppendFailure::Refused(StoreError::Closed),
        ClientError::Grpc {
            code: Code::InvalidArgument | Code::OutOfRange,
            message,
        } => AppendFailure::Refused(StoreError::InvalidAppend(format!(
            "KurrentDB refused the append to `{stream}`: {message}"
        ))),
        ClientError::Grpc {
            code: Code::FailedPrecondition | Code::AlreadyExists | Code::Unimplemented,
            message,
        } => AppendFailure::Refused(StoreError::Backend(format!(
            "KurrentDB refused the append to `{stream}`: {message}"
        ))),
        ClientError::UnsupportedFeature | ClientError::InitializationError(_) => {
            AppendFailure::Refused(StoreError::Backend(format!(
                "KurrentDB refused the append to `{stream}`: {error}"
            )))
        }
        ClientError::NotLeaderException(leader) => AppendFailure::NotSent(format!(
            "the node is not the leader (the leader is {}:{}); the client reconnects to it",
            leader.host, leader.port
        )),
        ClientError::GrpcConnectionError(e) => {
            AppendFailure::NotSent(format!("no KurrentDB node could be reached: {e}"))
        }
        ClientError::Grpc {
            code: Code::ResourceExhausted,
            message,
        } => AppendFailure::NotSent(format!("KurrentDB is too busy: {message}")),
        other => AppendFailure::Unknown(other.to_string()),
    }
}

/// A failed read of `what` as the port reports it.
pub(crate) fn read_error(what: &str, error: ClientError) -> StoreError {
    match error {
        ClientError::ConnectionClosed => StoreError::Closed,
        ClientError::AccessDenied => StoreError::Backend(format!(
            "KurrentDB denied {what}: give the connection string a user allowed to read it"
        )),
        ClientError::ResourceDeleted => StoreError::Backend(format!(
            "{what}: the stream was deleted for good (tombstoned) in KurrentDB; dealreg never deletes streams, so someone else did: restore it from a backup or an export"
        )),
        other => StoreError::Backend(format!(
            "KurrentDB failed {what}: {other}; check that the server runs and answers at the connection string's address"
        )),
    }
}

/// Whether a dropped subscription is worth resuming: not when the server refused it for
/// a reason a new attempt would meet again.
pub(crate) fn resumable(error: &ClientError) -> bool {
    !matches!(
        error,
        ClientError::AccessDenied
            | ClientError::UnsupportedFeature
            | ClientError::ConnectionClosed
            | ClientError::ResourceDeleted
            | ClientError::Grpc {
                code: Code::InvalidArgument
                    | Code::OutOfRange
                    | Code::FailedPrecondition
                    | Code::Unimplemented,
                ..
            }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("kurrentdb://admin:changeit@db-1:2113,db-2:2113?tls=true"),
            "kurrentdb://***@db-1:2113,db-2:2113?tls=true"
        );
        assert_eq!(
            redact("kurrentdb://127.0.0.1:2113?tls=false"),
            "kurrentdb://127.0.0.1:2113?tls=false"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn append_failures_are_sorted_by_what_they_say_about_the_write() {
        let expected = ExpectedVersion::NoStream;
        let sorted = |e| append_failure("s", &expected, e);
        assert!(matches!(
            sorted(ClientError::WrongExpectedVersion {
                expected: kurrentdb::StreamState::NoStream,
                current: CurrentRevision::Current(4),
            }),
            AppendFailure::Refused(StoreError::WrongExpectedVersion {
                actual: Some(4),
                ..
            })
        ));
        assert!(matches!(
            sorted(ClientError::DeadlineExceeded),
            AppendFailure::Unknown(_)
        ));
        assert!(matches!(
            sorted(ClientError::ServerError("status: Unavailable".into())),
            AppendFailure::Unknown(_)
        ));
        assert!(matches!(
            sorted(ClientError::NotLeaderException(kurrentdb::Endpoint {
                host: "db-2".into(),
                port: 2113
            })),
            AppendFailure::NotSent(_)
        ));
        assert!(matches!(
            sorted(ClientError::ResourceDeleted),
            AppendFailure::Refused(StoreError::Backend(_))
        ));
    }
}
