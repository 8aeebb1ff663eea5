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
    /// No user was given and the server denies anonymous access (a secure KurrentDB 24.10
    /// or later does by default).
    #[error("KurrentDB at `{url}` denies anonymous access (a secure server does by default since 24.10): connect as a user that may read $all, in the connection string (kurrentdb://USER:PASSWORD@HOST:2113) or, on the command line, DEALREG_KURRENTDB_USER and DEALREG_KURRENTDB_PASSWORD")]
    AnonymousDenied { url: String },
    /// The user may read ordinary streams but not `$all`, which is dealreg's log.
    #[error("user `{user}` may not read $all at `{url}`, and $all is dealreg's log: add `{user}` to the $admins group, or give $all an ACL whose $r names `{user}` or one of its groups (the metadata of $all, written by an admin; the $ops group alone does not open $all), or connect as an admin")]
    AllDenied { url: String, user: String },
    /// The server refused the user for every call: a wrong password, an unknown or
    /// disabled user, or one an ACL keeps out of every stream.
    #[error("KurrentDB at `{url}` refused user `{user}` (wrong user name or password, or a disabled user, or one that may read nothing): check the password given for `{user}`, that the user exists and is enabled, and that it may read $all (the $admins group, or an ACL on $all naming it)")]
    Refused { url: String, user: String },
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

/// A stream whose events do not start where a read asked, or skip revisions: KurrentDB
/// hides events before a stream's `$tb` (truncate before) and all but the last
/// `$maxCount`, and its reads skip them without a word. Folding what is left would build
/// a wrong state, so the read is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` was truncated in KurrentDB: a read from revision {from} got revision {got} next (expected {expected}), so events of it are hidden by its $tb (truncate before) or $maxCount metadata, or were scavenged. dealreg needs every event of a stream to fold it: remove $tb/$maxCount from the metadata of `{stream}` (stream `$${stream}`) if no scavenge has run since they were set, otherwise restore the stream from a backup or a dealreg export")]
pub struct TruncatedStream {
    /// The stream as KurrentDB names it (namespace included).
    pub stream: String,
    /// The revision the read started from.
    pub from: u64,
    /// The revision that should have come next.
    pub expected: u64,
    /// The revision that did.
    pub got: u64,
}

impl From<TruncatedStream> for StoreError {
    fn from(e: TruncatedStream) -> StoreError {
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

/// The user a connection string names (`scheme://USER:PASSWORD@hosts…`), without its
/// password.
pub(crate) fn user_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..end].rsplit_once('@')?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    Some(user.to_string())
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
        assert_eq!(
            user_of("kurrentdb://reader:s3cret@db-1:2113?tls=true").as_deref(),
            Some("reader")
        );
        assert_eq!(user_of("kurrentdb://db-1:2113?tls=false"), None);
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
