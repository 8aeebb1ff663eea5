//! The gRPC face of the double: translates the protocol's messages to and from the store,
//! and runs `$all` subscriptions. Each answer takes the shape the real server gives it
//! (which oneof is set, which fields, which gRPC status and metadata on errors), because
//! the client maps exactly those shapes to its results and errors.

// tonic's handlers must fail with `Status` (176 bytes); the helpers here return what the
// handlers return rather than box it and unbox it again.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::proto::event_store::client as pb;
use crate::store::{Expected, Proposed, Record, Store, StreamFrom, StreamRead, WriteError};
use crate::{Security, Shared};
use pb::gossip::{self, gossip_server::GossipServer};
use pb::server_features::{self, server_features_server::ServerFeaturesServer};
use pb::streams::read_req::options::{self as read_options, all_options::AllOption};
use pb::streams::{self as streams, streams_server::StreamsServer};

/// The real server's default search window of a filtered read or subscription (its read
/// batch size), used when the client sends `window: count` (no explicit max).
const DEFAULT_SEARCH_WINDOW: u32 = 32;

/// The version the double reports through server features. The client only compares it
/// to gate features; 25.0 is a version that has them all (caught-up/fell-behind messages
/// arrived in 23.10).
const SERVER_VERSION: &str = "25.0.0";

/// Serves the double until the shutdown flag is raised.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let double = Double { shared };
    let result = tonic::transport::Server::builder()
        .add_service(StreamsServer::new(double.clone()))
        .add_service(ServerFeaturesServer::new(double.clone()))
        .add_service(GossipServer::new(double))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        eprintln!("kurrentdb double: server stopped: {e}");
    }
}

#[derive(Clone)]
struct Double {
    shared: Arc<Shared>,
}

impl Double {
    fn store(&self) -> Result<MutexGuard<'_, Store>, Status> {
        self.shared
            .store
            .lock()
            .map_err(|_| Status::internal("the double's store lock is poisoned"))
    }

    /// Who sent a call, as the server's authentication middleware decides it before any
    /// handler runs (`AuthenticationMiddleware.HandleAsGrpcAsync` in the KurrentDB source):
    /// no `authorization` header is the anonymous user; a header that names no user with
    /// that password is refused with `UNAUTHENTICATED` "Unauthenticated", whatever the call
    /// (the client maps it to `AccessDenied`; the .NET client's `NotAuthenticatedException`,
    /// as `read_all_security.cs` in the server's tests expects for bad credentials).
    fn principal(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let Some(security) = &self.shared.security else {
            // An insecure node (`--insecure`) "does not use any authentication or
            // authorization" (docs/server/security/security-options.md, "Running without
            // security").
            return Ok(Principal::Insecure);
        };
        let Some(header) = metadata.get("authorization") else {
            return Ok(Principal::Anonymous);
        };
        let header = header.to_str().unwrap_or_default();
        security
            .users
            .iter()
            .find(|u| header == basic_authorization(&u.name, &u.password))
            .map(|u| Principal::User {
                name: u.name.clone(),
                groups: u.groups.clone(),
            })
            .ok_or_else(|| Status::new(Code::Unauthenticated, "Unauthenticated"))
    }

    fn security(&self) -> Option<&Security> {
        self.shared.security.as_ref()
    }

    /// Whether `principal` may read, write or delete `stream` under the default ACLs
    /// (docs/server/security/user-authorization.md, "Access control lists" and "Default
    /// ACL"): user streams are `$userStreamAcl` (`$all` for every permission), system
    /// streams (`$…`) `$systemStreamAcl` (`$admins`), and a metadata stream `$$X` follows
    /// X's. `$admins` "bypasses all stream access checks" (same page, "Admins role").
    /// The `$all` role lets the anonymous user in only with `AllowAnonymousStreamAccess`,
    /// false by default since 24.10 (docs/server/security/security-options.md, "Anonymous
    /// access to streams"). Per-stream ACLs other than `$all`'s are not modelled.
    fn authorize_stream(&self, principal: &Principal, stream: &str) -> Result<(), Status> {
        let described = stream.strip_prefix("$$").unwrap_or(stream);
        if described.starts_with('$') {
            return self.authorize(principal, &[]);
        }
        self.authorize(principal, &["$all".to_owned()])
    }

    /// Whether `principal` may read `$all` (a read or a subscription): `$admins` ("Read
    /// all streams, including `$all`", user-authorization.md, "Admins role"), or the
    /// roles in the `$r` of the ACL written to `$all`'s metadata (`$$$all`); without one,
    /// `$all` is a system stream and only `$admins` read it. The `$ops` role "grants
    /// similar permissions to the `$admins` role, but without the user management and
    /// stream access" (same page, "Ops role"), so it does not open `$all`. The server's
    /// own tests of this: `read_all_security.cs`, `subscribe_to_all_security.cs`.
    fn authorize_all_read(&self, principal: &Principal) -> Result<(), Status> {
        let readers = self
            .store()?
            .all_readers()
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        self.authorize(principal, &readers)
    }

    /// `principal` against the roles an ACL allows; a refusal is the server's
    /// `RpcExceptions.AccessDenied()`: `PERMISSION_DENIED` "Access Denied" with
    /// `exception: access-denied`.
    fn authorize(&self, principal: &Principal, allowed: &[String]) -> Result<(), Status> {
        let anonymous_allowed = self
            .security()
            .is_some_and(|s| s.allow_anonymous_stream_access);
        let ok = match principal {
            Principal::Insecure => true,
            Principal::Anonymous => anonymous_allowed && allowed.iter().any(|r| r == "$all"),
            Principal::User { name, groups } => {
                groups.iter().any(|g| g == "$admins")
                    || allowed
                        .iter()
                        .any(|r| r == "$all" || r == name || groups.contains(r))
            }
        };
        if ok {
            Ok(())
        } else {
            let mut metadata = MetadataMap::new();
            metadata.insert("exception", MetadataValue::from_static("access-denied"));
            Err(Status::with_metadata(
                Code::PermissionDenied,
                "Access Denied",
                metadata,
            ))
        }
    }

    /// How many records of the log a read sees: all of them, or fewer while the double
    /// plays a lagging follower ([`crate::KurrentDouble::lag_reads`]).
    fn visible(&self, store: &Store) -> usize {
        let Ok(mut lag) = self.shared.lag.lock() else {
            return store.len();
        };
        if lag.reads == 0 {
            return store.len();
        }
        lag.reads -= 1;
        store.len().saturating_sub(lag.events)
    }

    /// Wakes live subscriptions after a write.
    fn published(&self, store: &Store) {
        self.shared.log_len.send_replace(store.len());
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl streams::streams_server::Streams for Double {
    type ReadStream = BoxStream<streams::ReadResp>;
    type BatchAppendStream = BoxStream<streams::BatchAppendResp>;

    async fn read(
        &self,
        request: Request<streams::ReadReq>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let principal = self.principal(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("'options' is required"))?;
        // The real server refuses a read without a UUID option.
        let ids = match options.uuid_option.and_then(|u| u.content) {
            Some(read_options::uuid_option::Content::Structured(_)) => IdFormat::Structured,
            Some(read_options::uuid_option::Content::String(_)) => IdFormat::String,
            None => return Err(Status::invalid_argument("'uuidOption' is required")),
        };
        let forwards = options.read_direction == read_options::ReadDirection::Forwards as i32;
        let compatibility = options.control_option.map_or(0, |c| c.compatibility);
        let filter = match options.filter_option {
            Some(read_options::FilterOption::Filter(f)) => Some(f),
            _ => None,
        };

        use read_options::{CountOption, StreamOption};
        match (options.stream_option, options.count_option) {
            (Some(StreamOption::Stream(s)), Some(CountOption::Count(count))) => {
                if filter.is_some() {
                    return Err(Status::invalid_argument(
                        "a filter applies to $all reads only",
                    ));
                }
                let stream = stream_name(s.stream_identifier)?;
                self.authorize_stream(&principal, &stream)?;
                let from = match s.revision_option {
                    Some(read_options::stream_options::RevisionOption::Revision(r)) => {
                        StreamFrom::Revision(r)
                    }
                    Some(read_options::stream_options::RevisionOption::End(_)) => StreamFrom::End,
                    _ => StreamFrom::Start,
                };
                let read = {
                    let store = self.store()?;
                    let visible = self.visible(&store);
                    store.read_stream_as_of(&stream, from, count, forwards, visible)
                };
                let responses = match read {
                    StreamRead::Deleted => return Err(stream_deleted(&stream)),
                    StreamRead::NotFound => {
                        vec![content(streams::read_resp::Content::StreamNotFound(
                            streams::read_resp::StreamNotFound {
                                stream_identifier: Some(identifier(&stream)),
                            },
                        ))]
                    }
                    StreamRead::Events(events, last) => {
                        let mut out: Vec<_> =
                            events.iter().map(|r| event_response(r, ids)).collect();
                        if compatibility >= 1 {
                            out.push(content(streams::read_resp::Content::LastStreamPosition(
                                last,
                            )));
                        }
                        out
                    }
                };
                Ok(Response::new(Box::pin(tokio_stream::iter(
                    responses.into_iter().map(Ok),
                ))))
            }
            (Some(StreamOption::All(a)), Some(CountOption::Count(count))) => {
                self.authorize_all_read(&principal)?;
                let filter = filter.map(|f| EventFilter::new(f, false)).transpose()?;
                let store = self.store()?;
                let visible = self.visible(&store);
                let records = read_all(
                    &store,
                    visible,
                    a.all_option,
                    count,
                    forwards,
                    filter.as_ref(),
                );
                let responses: Vec<_> = records.iter().map(|r| event_response(r, ids)).collect();
                Ok(Response::new(Box::pin(tokio_stream::iter(
                    responses.into_iter().map(Ok),
                ))))
            }
            (Some(StreamOption::All(a)), Some(CountOption::Subscription(_))) => {
                if !forwards {
                    return Err(Status::invalid_argument("subscriptions read forwards"));
                }
                self.authorize_all_read(&principal)?;
                let filter = filter.map(|f| EventFilter::new(f, true)).transpose()?;
                let start = {
                    let store = self.store()?;
                    match a.all_option {
                        Some(AllOption::Position(p)) => {
                            store.first_index_after(p.commit_position, p.prepare_position)
                        }
                        Some(AllOption::End(_)) => store.len(),
                        _ => 0,
                    }
                };
                let from = match a.all_option {
                    Some(AllOption::Position(p)) => Some(p.commit_position),
                    _ => None,
                };
                let (tx, rx) = mpsc::channel(64);
                tokio::spawn(subscription(
                    Arc::clone(&self.shared),
                    tx,
                    start,
                    from,
                    filter,
                    ids,
                ));
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
            (Some(StreamOption::Stream(_)), Some(CountOption::Subscription(_))) => Err(
                Status::unimplemented("the KurrentDB double serves no stream subscriptions"),
            ),
            _ => Err(Status::invalid_argument(
                "stream_option and count_option are required",
            )),
        }
    }

    async fn append(
        &self,
        request: Request<Streaming<streams::AppendReq>>,
    ) -> Result<Response<streams::AppendResp>, Status> {
        use streams::append_req::{options::ExpectedStreamRevision, Content};

        let principal = self.principal(request.metadata())?;
        let mut inbound = request.into_inner();
        let Some(Content::Options(options)) = inbound.message().await?.and_then(|m| m.content)
        else {
            return Err(Status::invalid_argument(
                "an append starts with its options",
            ));
        };
        let stream = stream_name(options.stream_identifier)?;
        self.authorize_stream(&principal, &stream)?;
        let expected = match options.expected_stream_revision {
            Some(ExpectedStreamRevision::Revision(r)) => Expected::Revision(r),
            Some(ExpectedStreamRevision::NoStream(_)) => Expected::NoStream,
            Some(ExpectedStreamRevision::Any(_)) => Expected::Any,
            Some(ExpectedStreamRevision::StreamExists(_)) => Expected::StreamExists,
            None => {
                return Err(Status::invalid_argument(
                    "expected_stream_revision is required",
                ))
            }
        };
        let mut events = Vec::new();
        while let Some(message) = inbound.message().await? {
            let Some(Content::ProposedMessage(m)) = message.content else {
                return Err(Status::invalid_argument(
                    "only proposed messages follow an append's options",
                ));
            };
            events.push(Proposed {
                id: uuid_from_proto(m.id)?,
                event_type: required_metadata(&m.metadata, "type")?,
                content_type: required_metadata(&m.metadata, "content-type")?,
                custom_metadata: m.custom_metadata,
                data: m.data,
            });
        }

        let result = {
            let mut store = self.store()?;
            let result = store.append(&stream, expected, events);
            self.published(&store);
            result
        };
        use streams::append_resp::{self, success, Result as AppendResult};
        let result = match result {
            Ok(appended) => AppendResult::Success(append_resp::Success {
                current_revision_option: Some(match appended.current_revision {
                    Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
                    None => success::CurrentRevisionOption::NoStream(pb::Empty {}),
                }),
                position_option: Some(match appended.position {
                    Some(p) => success::PositionOption::Position(append_resp::Position {
                        commit_position: p,
                        prepare_position: p,
                    }),
                    None => success::PositionOption::NoPosition(pb::Empty {}),
                }),
            }),
            Err(WriteError::WrongExpectedVersion { current }) => {
                AppendResult::WrongExpectedVersion(wrong_expected_version(expected, current))
            }
            Err(WriteError::StreamDeleted) => return Err(stream_deleted(&stream)),
        };
        Ok(Response::new(streams::AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(
        &self,
        request: Request<streams::DeleteReq>,
    ) -> Result<Response<streams::DeleteResp>, Status> {
        use streams::delete_req::options::ExpectedStreamRevision as E;
        let principal = self.principal(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("'options' is required"))?;
        let stream = stream_name(options.stream_identifier)?;
        self.authorize_stream(&principal, &stream)?;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(r)) => Expected::Revision(r),
            Some(E::NoStream(_)) => Expected::NoStream,
            Some(E::Any(_)) => Expected::Any,
            Some(E::StreamExists(_)) => Expected::StreamExists,
            None => {
                return Err(Status::invalid_argument(
                    "expected_stream_revision is required",
                ))
            }
        };
        let result = {
            let mut store = self.store()?;
            let result = store.delete(&stream, expected);
            self.published(&store);
            result
        };
        let position = result.map_err(|e| delete_error(e, "Delete", &stream, expected))?;
        use streams::delete_resp::{Position, PositionOption};
        Ok(Response::new(streams::DeleteResp {
            position_option: Some(PositionOption::Position(Position {
                commit_position: position,
                prepare_position: position,
            })),
        }))
    }

    async fn tombstone(
        &self,
        request: Request<streams::TombstoneReq>,
    ) -> Result<Response<streams::TombstoneResp>, Status> {
        use streams::tombstone_req::options::ExpectedStreamRevision as E;
        let principal = self.principal(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("'options' is required"))?;
        let stream = stream_name(options.stream_identifier)?;
        self.authorize_stream(&principal, &stream)?;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(r)) => Expected::Revision(r),
            Some(E::NoStream(_)) => Expected::NoStream,
            Some(E::Any(_)) => Expected::Any,
            Some(E::StreamExists(_)) => Expected::StreamExists,
            None => {
                return Err(Status::invalid_argument(
                    "expected_stream_revision is required",
                ))
            }
        };
        let result = {
            let mut store = self.store()?;
            let result = store.tombstone(&stream, expected);
            self.published(&store);
            result
        };
        let position = result.map_err(|e| delete_error(e, "Delete", &stream, expected))?;
        use streams::tombstone_resp::{Position, PositionOption};
        Ok(Response::new(streams::TombstoneResp {
            position_option: Some(PositionOption::Position(Position {
                commit_position: position,
                prepare_position: position,
            })),
        }))
    }

    async fn batch_append(
        &self,
        _request: Request<Streaming<streams::BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        // Not advertised in server features either, so the client's `batch_append` answers
        // `UnsupportedFeature` before it ever calls this.
        Err(Status::unimplemented(
            "the KurrentDB double serves no batch appends",
        ))
    }
}

#[tonic::async_trait]
impl server_features::server_features_server::ServerFeatures for Double {
    async fn get_supported_methods(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<server_features::SupportedMethods>, Status> {
        // The client sends no credentials here; bad ones would be refused as anywhere.
        self.principal(request.metadata())?;
        // Lower-case names, as the real server reports them and the client compares them.
        let method = |method: &str, service: &str| server_features::SupportedMethod {
            method_name: method.to_owned(),
            service_name: service.to_owned(),
            features: Vec::new(),
        };
        let streams = "event_store.client.streams.streams";
        Ok(Response::new(server_features::SupportedMethods {
            methods: vec![
                method("read", streams),
                method("append", streams),
                method("delete", streams),
                method("tombstone", streams),
                method("read", "event_store.client.gossip.gossip"),
                method(
                    "getsupportedmethods",
                    "event_store.client.server_features.serverfeatures",
                ),
            ],
            event_store_server_version: SERVER_VERSION.to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl gossip::gossip_server::Gossip for Double {
    /// A one-node cluster whose leader is the double itself: what a cluster connection
    /// string (several seeds, or `+discover`) asks for before it picks a node.
    async fn read(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<gossip::ClusterInfo>, Status> {
        self.principal(request.metadata())?;
        let addr = self.shared.addr;
        Ok(Response::new(gossip::ClusterInfo {
            members: vec![gossip::MemberInfo {
                instance_id: Some(uuid_to_proto(Uuid::nil(), IdFormat::Structured)),
                time_stamp: now_ticks(),
                state: gossip::member_info::VNodeState::Leader as i32,
                is_alive: true,
                http_end_point: Some(gossip::EndPoint {
                    address: addr.ip().to_string(),
                    port: u32::from(addr.port()),
                }),
            }],
        }))
    }
}

/// Who a call is from.
#[derive(Debug)]
enum Principal {
    /// Any call to an insecure double.
    Insecure,
    /// No credentials sent to a secure double.
    Anonymous,
    User {
        name: String,
        groups: Vec<String>,
    },
}

/// The `authorization` header the client sends for `name`:`password` (HTTP basic).
fn basic_authorization(name: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{name}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How a read wants event ids written.
#[derive(Clone, Copy, Debug)]
enum IdFormat {
    Structured,
    String,
}

/// A `$all` filter as the real server reads it: a non-empty regex wins over the prefixes
/// (so `exclude_system_events()` plus `add_prefix()` filters on the regex alone).
struct EventFilter {
    on_stream_name: bool,
    matcher: Matcher,
    /// For subscriptions: considered events between checkpoints.
    checkpoint_interval: u64,
}

enum Matcher {
    Regex(regex::Regex),
    Prefixes(Vec<String>),
}

impl EventFilter {
    fn new(filter: read_options::FilterOptions, subscription: bool) -> Result<EventFilter, Status> {
        use read_options::filter_options::{Filter, Window};
        let (on_stream_name, expression) = match filter.filter {
            Some(Filter::StreamIdentifier(e)) => (true, e),
            Some(Filter::EventType(e)) => (false, e),
            None => return Err(Status::invalid_argument("a filter needs an expression")),
        };
        let matcher = if expression.regex.is_empty() {
            Matcher::Prefixes(expression.prefix)
        } else {
            let regex = regex::Regex::new(&expression.regex).map_err(|e| {
                Status::invalid_argument(format!(
                    "the double cannot compile the filter regex (Rust regex syntax): {e}"
                ))
            })?;
            Matcher::Regex(regex)
        };
        let window = match filter.window {
            Some(Window::Max(max)) => max,
            _ => DEFAULT_SEARCH_WINDOW,
        };
        let multiplier = filter.checkpoint_interval_multiplier;
        if subscription && (multiplier == 0 || window == 0) {
            return Err(Status::invalid_argument(
                "checkpointIntervalMultiplier and the window must be positive",
            ));
        }
        Ok(EventFilter {
            on_stream_name,
            matcher,
            checkpoint_interval: u64::from(window) * u64::from(multiplier),
        })
    }

    fn allows(&self, record: &Record) -> bool {
        let subject = if self.on_stream_name {
            &record.stream
        } else {
            &record.event_type
        };
        match &self.matcher {
            Matcher::Regex(regex) => regex.is_match(subject),
            Matcher::Prefixes(prefixes) => prefixes.iter().any(|p| subject.starts_with(p)),
        }
    }
}

/// `$all` read: forwards from a position includes the record at that position; backwards
/// from a position returns the records before it.
fn read_all(
    store: &Store,
    visible: usize,
    from: Option<AllOption>,
    count: u64,
    forwards: bool,
    filter: Option<&EventFilter>,
) -> Vec<Record> {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let allowed = |r: &&Record| filter.is_none_or(|f| f.allows(r));
    if forwards {
        let start = match from {
            Some(AllOption::Position(p)) => {
                store.first_index_at_or_after(p.commit_position, p.prepare_position)
            }
            Some(AllOption::End(_)) => visible,
            _ => 0,
        };
        (start..visible)
            .filter_map(|i| store.record(i))
            .filter(allowed)
            .take(count)
            .cloned()
            .collect()
    } else {
        let end = match from {
            Some(AllOption::Position(p)) => store
                .first_index_at_or_after(p.commit_position, p.prepare_position)
                .min(visible),
            Some(AllOption::Start(_)) => 0,
            _ => visible,
        };
        (0..end)
            .rev()
            .filter_map(|i| store.record(i))
            .filter(allowed)
            .take(count)
            .cloned()
            .collect()
    }
}

/// One `$all` subscription: confirmation, catch-up from `start` (a log index), the
/// caught-up marker, then live records as they are written. With a filter, a checkpoint
/// follows every `checkpoint_interval` considered records (matching or not) and the end of
/// catch-up, as on the real server. `from` is the position the client asked to resume
/// after, the checkpoint when catch-up considers nothing.
async fn subscription(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<streams::ReadResp, Status>>,
    start: usize,
    from: Option<u64>,
    filter: Option<EventFilter>,
    ids: IdFormat,
) {
    use streams::read_resp::Content;
    let mut log_len = shared.log_len.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let confirmation = Content::Confirmation(streams::read_resp::SubscriptionConfirmation {
        subscription_id: Uuid::new_v4().to_string(),
    });
    if tx.send(Ok(content(confirmation))).await.is_err() {
        return;
    }

    let mut state = SubscriptionState {
        next: start,
        considered: 0,
        last_considered: from,
        last_checkpoint: None,
    };
    // Catch-up: everything in the log now.
    let batch = snapshot(&shared, &mut state);
    if !state.deliver(batch, &tx, filter.as_ref(), ids).await {
        return;
    }
    if filter.is_some() {
        if let Some(position) = state.last_considered {
            if !state.checkpoint(position, &tx).await {
                return;
            }
        }
    }
    let caught_up = Content::CaughtUp(streams::read_resp::CaughtUp {
        timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
        stream_revision: None,
        position: state.last_considered.map(|p| streams::read_resp::Position {
            commit_position: p,
            prepare_position: p,
        }),
    });
    if tx.send(Ok(content(caught_up))).await.is_err() {
        return;
    }

    // Live.
    loop {
        let batch = snapshot(&shared, &mut state);
        if !state.deliver(batch, &tx, filter.as_ref(), ids).await {
            return;
        }
        let stopped = tokio::select! {
            changed = log_len.changed() => changed.is_err(),
            stop = shutdown.wait_for(|stop| *stop) => {
                drop(stop);
                true
            }
            () = tx.closed() => return,
        };
        if stopped {
            // An error, not a clean end: the client's subscription treats a stream that
            // simply ends as "no message yet" and would poll it forever.
            let _ = tx
                .send(Err(Status::unavailable("the KurrentDB double stopped")))
                .await;
            return;
        }
    }
}

struct SubscriptionState {
    /// Log index of the next record to consider.
    next: usize,
    /// Records considered since the last checkpoint.
    considered: u64,
    last_considered: Option<u64>,
    last_checkpoint: Option<u64>,
}

/// The records written since the subscription last looked.
fn snapshot(shared: &Shared, state: &mut SubscriptionState) -> Vec<Record> {
    let Ok(store) = shared.store.lock() else {
        return Vec::new();
    };
    let records: Vec<Record> = (state.next..store.len())
        .filter_map(|i| store.record(i).cloned())
        .collect();
    state.next = store.len();
    records
}

impl SubscriptionState {
    /// Sends the matching records and the checkpoints due; false once the client is gone.
    async fn deliver(
        &mut self,
        records: Vec<Record>,
        tx: &mpsc::Sender<Result<streams::ReadResp, Status>>,
        filter: Option<&EventFilter>,
        ids: IdFormat,
    ) -> bool {
        for record in records {
            self.last_considered = Some(record.position);
            if filter.is_none_or(|f| f.allows(&record))
                && tx.send(Ok(event_response(&record, ids))).await.is_err()
            {
                return false;
            }
            if let Some(filter) = filter {
                self.considered += 1;
                if self.considered >= filter.checkpoint_interval {
                    self.considered = 0;
                    if !self.checkpoint(record.position, tx).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Sends a checkpoint unless the same one was just sent (the real server drops
    /// repeats too).
    async fn checkpoint(
        &mut self,
        position: u64,
        tx: &mpsc::Sender<Result<streams::ReadResp, Status>>,
    ) -> bool {
        if self.last_checkpoint.is_some_and(|last| position <= last) {
            return true;
        }
        self.last_checkpoint = Some(position);
        let checkpoint = streams::read_resp::Checkpoint {
            commit_position: position,
            prepare_position: position,
            timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
        };
        tx.send(Ok(content(streams::read_resp::Content::Checkpoint(
            checkpoint,
        ))))
        .await
        .is_ok()
    }
}

fn content(content: streams::read_resp::Content) -> streams::ReadResp {
    streams::ReadResp {
        content: Some(content),
    }
}

/// A record as a read answers it. The real server keeps only "is JSON" of the content type,
/// so anything but JSON reads back as `application/octet-stream`.
fn event_response(record: &Record, ids: IdFormat) -> streams::ReadResp {
    use streams::read_resp::{read_event, Content, ReadEvent};
    let content_type = if record.content_type == "application/json" {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let metadata = HashMap::from([
        ("type".to_owned(), record.event_type.clone()),
        ("content-type".to_owned(), content_type.to_owned()),
        ("created".to_owned(), record.created_ticks.to_string()),
    ]);
    let event = read_event::RecordedEvent {
        id: Some(uuid_to_proto(record.id, ids)),
        stream_identifier: Some(identifier(&record.stream)),
        stream_revision: record.revision,
        prepare_position: record.position,
        commit_position: record.position,
        metadata,
        custom_metadata: record.custom_metadata.clone(),
        data: record.data.clone(),
    };
    content(Content::Event(ReadEvent {
        event: Some(event),
        link: None,
        position: Some(read_event::Position::CommitPosition(record.position)),
    }))
}

/// The append answer to a refused expected version, with both the current fields and the
/// pre-20.6 ones the real server still fills.
fn wrong_expected_version(
    expected: Expected,
    current: Option<u64>,
) -> streams::append_resp::WrongExpectedVersion {
    use streams::append_resp::wrong_expected_version::{
        CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
        ExpectedRevisionOption2060,
    };
    let (expected_now, expected_old) = match expected {
        Expected::Any => (
            ExpectedRevisionOption::ExpectedAny(pb::Empty {}),
            ExpectedRevisionOption2060::Any2060(pb::Empty {}),
        ),
        Expected::StreamExists => (
            ExpectedRevisionOption::ExpectedStreamExists(pb::Empty {}),
            ExpectedRevisionOption2060::StreamExists2060(pb::Empty {}),
        ),
        Expected::NoStream => (
            ExpectedRevisionOption::ExpectedNoStream(pb::Empty {}),
            ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
        ),
        Expected::Revision(r) => (
            ExpectedRevisionOption::ExpectedRevision(r),
            ExpectedRevisionOption2060::ExpectedRevision2060(r),
        ),
    };
    let (current_now, current_old) = match current {
        Some(r) => (
            CurrentRevisionOption::CurrentRevision(r),
            CurrentRevisionOption2060::CurrentRevision2060(r),
        ),
        None => (
            CurrentRevisionOption::CurrentNoStream(pb::Empty {}),
            CurrentRevisionOption2060::NoStream2060(pb::Empty {}),
        ),
    };
    streams::append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(current_old),
        expected_revision_option_20_6_0: Some(expected_old),
        current_revision_option: Some(current_now),
        expected_revision_option: Some(expected_now),
    }
}

/// A delete's or tombstone's refusal: unlike an append, it is a gRPC error.
fn delete_error(error: WriteError, operation: &str, stream: &str, expected: Expected) -> Status {
    match error {
        WriteError::StreamDeleted => stream_deleted(stream),
        WriteError::WrongExpectedVersion { current } => {
            // The server's internal numbering: -1 no stream, -2 any, -4 stream exists.
            let expected_number = match expected {
                Expected::Any => -2,
                Expected::NoStream => -1,
                Expected::StreamExists => -4,
                Expected::Revision(r) => i128::from(r),
            };
            let actual = current.map_or(-1, i128::from);
            let mut metadata = MetadataMap::new();
            metadata.insert(
                "exception",
                MetadataValue::from_static("wrong-expected-version"),
            );
            insert_ascii(&mut metadata, "stream-name", stream);
            insert_ascii(
                &mut metadata,
                "expected-version",
                &expected_number.to_string(),
            );
            insert_ascii(&mut metadata, "actual-version", &actual.to_string());
            Status::with_metadata(
                Code::FailedPrecondition,
                format!(
                    "{operation} failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {expected_number}, Actual version: {actual}"
                ),
                metadata,
            )
        }
    }
}

/// The real server's "stream deleted" error, which the client maps to `ResourceDeleted` by
/// its `exception` metadata.
fn stream_deleted(stream: &str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("exception", MetadataValue::from_static("stream-deleted"));
    insert_ascii(&mut metadata, "stream-name", stream);
    Status::with_metadata(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        metadata,
    )
}

fn insert_ascii(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    if let Ok(value) = MetadataValue::try_from(value) {
        metadata.insert(key, value);
    }
}

/// An append without the metadata the server requires, answered as the server does.
fn required_metadata(metadata: &HashMap<String, String>, key: &str) -> Result<String, Status> {
    metadata.get(key).cloned().ok_or_else(|| {
        let mut md = MetadataMap::new();
        md.insert(
            "exception",
            MetadataValue::from_static("missing-required-metadata-property"),
        );
        md.insert(
            "required-metadata-properties",
            MetadataValue::from_static("type,content-type"),
        );
        Status::with_metadata(
            Code::InvalidArgument,
            format!("Required Metadata Property '{key}' is missing"),
            md,
        )
    })
}

fn stream_name(identifier: Option<pb::StreamIdentifier>) -> Result<String, Status> {
    let bytes = identifier
        .map(|i| i.stream_name)
        .ok_or_else(|| Status::invalid_argument("'stream_identifier' is required"))?;
    let name = String::from_utf8(bytes)
        .map_err(|_| Status::invalid_argument("stream name is not UTF-8"))?;
    if name.is_empty() {
        return Err(Status::invalid_argument("stream name is empty"));
    }
    Ok(name)
}

fn identifier(stream: &str) -> pb::StreamIdentifier {
    pb::StreamIdentifier {
        stream_name: stream.as_bytes().to_vec(),
    }
}

fn uuid_from_proto(id: Option<pb::Uuid>) -> Result<Uuid, Status> {
    match id.and_then(|u| u.value) {
        Some(pb::uuid::Value::Structured(s)) => {
            let high = u128::from(s.most_significant_bits as u64);
            let low = u128::from(s.least_significant_bits as u64);
            Ok(Uuid::from_u128(high << 64 | low))
        }
        Some(pb::uuid::Value::String(s)) => {
            Uuid::parse_str(&s).map_err(|_| Status::invalid_argument("event id is not a UUID"))
        }
        None => Err(Status::invalid_argument("an event needs an id")),
    }
}

fn uuid_to_proto(id: Uuid, format: IdFormat) -> pb::Uuid {
    let value = match format {
        IdFormat::String => pb::uuid::Value::String(id.hyphenated().to_string()),
        IdFormat::Structured => {
            let n = id.as_u128();
            pb::uuid::Value::Structured(pb::uuid::Structured {
                most_significant_bits: (n >> 64) as u64 as i64,
                least_significant_bits: n as u64 as i64,
            })
        }
    };
    pb::Uuid { value: Some(value) }
}

fn now_ticks() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lag, User};
    use std::sync::Mutex;
    use tokio::sync::watch;

    fn double(security: Option<Security>) -> Double {
        Double {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::default()),
                security,
                lag: Mutex::new(Lag::default()),
                log_len: watch::channel(0).0,
                shutdown: watch::channel(false).0,
                addr: ([127, 0, 0, 1], 0).into(),
            }),
        }
    }

    fn secure() -> Double {
        double(Some(Security::with_users(vec![
            User::new("admin", "changeit", &["$admins"]),
            User::new("ops", "changeit", &["$ops"]),
            User::new("reader", "pw", &["team"]),
        ])))
    }

    fn as_user(name: &str, password: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        insert_ascii(
            &mut metadata,
            "authorization",
            &basic_authorization(name, password),
        );
        metadata
    }

    #[test]
    fn the_authorization_header_is_the_clients() {
        // The value the kurrentdb client's own test expects for admin:changeit.
        assert_eq!(
            basic_authorization("admin", "changeit"),
            "Basic YWRtaW46Y2hhbmdlaXQ="
        );
        assert_eq!(basic_authorization("a", "b"), "Basic YTpi");
        assert_eq!(basic_authorization("ab", "c"), "Basic YWI6Yw==");
    }

    #[test]
    fn bad_credentials_are_unauthenticated_and_a_refusal_is_permission_denied() {
        let double = secure();
        let wrong = double.principal(&as_user("admin", "wrong")).unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
        let unknown = double.principal(&as_user("nobody", "x")).unwrap_err();
        assert_eq!(unknown.code(), Code::Unauthenticated);

        let anonymous = double.principal(&MetadataMap::new()).unwrap();
        let denied = double.authorize_all_read(&anonymous).unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied
                .metadata()
                .get("exception")
                .and_then(|v| v.to_str().ok()),
            Some("access-denied")
        );
        // Anonymous stream access is off by default (24.10+).
        assert_eq!(
            double
                .authorize_stream(&anonymous, "account-1")
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );

        let admin = double.principal(&as_user("admin", "changeit")).unwrap();
        assert!(double.authorize_all_read(&admin).is_ok());
        assert!(double.authorize_stream(&admin, "$$$all").is_ok());
        let ops = double.principal(&as_user("ops", "changeit")).unwrap();
        assert!(
            double.authorize_all_read(&ops).is_err(),
            "$ops does not open $all"
        );
        let reader = double.principal(&as_user("reader", "pw")).unwrap();
        assert!(double.authorize_stream(&reader, "account-1").is_ok());
        assert!(double.authorize_stream(&reader, "$$account-1").is_ok());
        assert!(double.authorize_stream(&reader, "$$$all").is_err());
        assert!(double.authorize_stream(&reader, "$settings").is_err());
        assert!(double.authorize_all_read(&reader).is_err());

        // An ACL on $all naming the reader's group opens it to the reader only.
        double
            .store()
            .unwrap()
            .append(
                "$$$all",
                crate::store::Expected::Any,
                vec![Proposed {
                    id: Uuid::new_v4(),
                    event_type: "$metadata".into(),
                    content_type: "application/json".into(),
                    custom_metadata: Vec::new(),
                    data: br#"{"$acl":{"$r":"team"}}"#.to_vec(),
                }],
            )
            .unwrap();
        assert!(double.authorize_all_read(&reader).is_ok());
        assert!(double.authorize_all_read(&anonymous).is_err());
        assert!(double.authorize_all_read(&ops).is_err());
    }

    #[test]
    fn an_insecure_double_lets_everyone_in_whatever_the_header() {
        let double = double(None);
        let principal = double.principal(&as_user("admin", "wrong")).unwrap();
        assert!(double.authorize_all_read(&principal).is_ok());
        assert!(double.authorize_stream(&principal, "$settings").is_ok());
    }

    #[test]
    fn a_lagging_follower_hides_the_newest_records_for_a_number_of_reads() {
        let double = double(None);
        let store = Store::default();
        assert_eq!(double.visible(&store), 0);
        *double.shared.lag.lock().unwrap() = Lag {
            events: 2,
            reads: 1,
        };
        assert_eq!(double.visible(&store), 0, "never below zero");
        assert_eq!(double.shared.lag.lock().unwrap().reads, 0);
    }
}
