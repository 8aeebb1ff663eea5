//! The KurrentDB (EventStoreDB) backend of dealreg's event store, through the official
//! `kurrentdb` client (1.2.0, gRPC).
//!
//! # How events are mapped
//!
//! Each dealreg event is one KurrentDB event in the stream of the same name (or
//! `<namespace>.<name>` when [`KurrentOptions::namespace`] is set; the hash chain covers
//! the dealreg name, so the same events chain alike in any namespace):
//!
//! * **event type** = the dealreg event type; **event id** = the dealreg `event_id`, always
//!   sent (the client would otherwise make a fresh id on every send, and the server could
//!   not recognise a retried append);
//! * **data** = the exact data bytes. They go as `application/json` when they are exactly
//!   one JSON value (what the engine writes), so KurrentDB's UI and projections can read
//!   them; they are sent through `RawValue`, which writes the bytes unchanged. Anything
//!   else goes as `application/octet-stream`. Either way a read gives back the same bytes;
//! * **custom metadata** = the dealreg envelope (`envelope.rs`):
//!   `{"dealreg":1,"prev_hash":…,"hash":…,"metadata":<the dealreg metadata, raw>}`. The
//!   hashes are computed before the append by [`dealreg_events::chain::link`] from the tip
//!   the append expects, never here. An event without an envelope (written by another
//!   program) is refused by every read with an error naming its position.
//!
//! **Revisions** are KurrentDB's stream revisions (0-based, as dealreg's). **Positions** are
//! KurrentDB's `$all` positions, `Position::pair(commit, prepare)`: ordered, never dense
//! ([`Capabilities::dense_positions`] is false), meaningful only to the server that made
//! them.
//!
//! # Appends
//!
//! KurrentDB checks an expected revision natively, so an exact expectation is sent as
//! `StreamRevision(tip.revision)` and "no stream" as `NoStream`. [`ExpectedVersion::Any`]
//! cannot be sent as KurrentDB's `Any`: the chain needs the tip the events follow. The
//! store reads the stream's last event, chains from it and appends with that exact
//! revision, reading and trying again when another writer got there first.
//!
//! The positions an append reports are read back from the stream (one more round trip).
//! The append reply carries one position for the whole write: in the server source read
//! for this crate (`RequestManager/Managers/WriteEvents.cs`), the commit position in both
//! parts, which that code's own comment calls "not technically correct", and for a retry
//! it recognised, the position of the original commit. Neither is, in general, the `$all`
//! position a reader sees for each event, and the engine hands these positions to readers
//! ("views at least as new as this"), so they must be the ones `$all` shows.
//!
//! When an append's outcome is unknown (a deadline, a connection lost mid-call), the store
//! sends the very same append again (same ids, same expected revision), up to
//! [`KurrentOptions::append_attempts`] times. The server recognises an append whose ids are
//! already the events after the expected revision and answers success without writing
//! them twice; if they are not there, the answer is definite (written now, or a wrong
//! expected version). This relies on the server's idempotence check, which for an exact
//! expected revision compares the ids of the stream's events at those revisions (not the
//! bounded cache of recent ids it uses for `Any`), as the double's README describes it and
//! the double implements it. Only if no attempt gets a definite answer does the append
//! fail with [`StoreError::OutcomeUnknown`]; if the append was written but its positions
//! could not be read back, it fails the same way (the engine then reads the stream and
//! finds the command there by its idempotency key).
//!
//! # The log
//!
//! `$all` is the log, without KurrentDB's own records: system streams (names starting with
//! `$`: `$$stream` metadata, projections' output, statistics), which every read and
//! subscription filters out on the server, and `$`-typed records in ordinary streams (a
//! tombstone's `$streamDeleted`), which no server-side filter on stream names can leave out
//! and which are skipped here. Appends refuse `$` stream names and event types, so no
//! dealreg event is ever mistaken for one.
//!
//! [`EventStore::read_all`] reads `$all` forwards from the position (inclusive, as
//! KurrentDB reads) and drops the event at exactly that position.
//! [`EventStore::subscribe_all`] is a filtered catch-up subscription to `$all` (exclusive
//! of its start); it resumes after a dropped connection from the last event or checkpoint
//! it saw, so nothing is skipped or repeated (`subscription.rs`).
//! [`EventStore::last_position`] reads `$all` backwards to the newest dealreg event.
//!
//! # Checks at open and on reads
//!
//! [`KurrentStore::connect`] reads one record of `$all`, so a user who may not read the
//! log is refused at once with what to grant ([`OpenError::AnonymousDenied`],
//! [`OpenError::AllDenied`], [`OpenError::Refused`]), not on the first command. A
//! stream read must start at the revision asked and run without gaps; a stream whose
//! events `$tb`/`$maxCount` metadata hides is refused ([`TruncatedStream`]). The read-back
//! of an append that comes back short (a follower behind the leader) is read again, then
//! reported as [`StoreError::OutcomeUnknown`], never as a change by someone else.
//!
//! # What was verified where
//!
//! Everything in this crate's tests ran against `dealreg-kurrentdb-double`, an in-memory
//! gRPC server built from the client's own `.proto` files, through the real client; none of
//! it ran against KurrentDB itself here (`tests/real_server.rs` runs the conformance suite
//! against a real server when `DEALREG_KURRENTDB_URL` names one). What a real server may do
//! differently, from the double's README and the server's source:
//!
//! * **positions**: the double gives every event commit == prepare; a real server gives
//!   the events of one multi-event append distinct prepare positions (and possibly one
//!   commit position). The store only compares positions, so either works;
//! * **checkpoints**: the real server checkpoints per page read, the double per record;
//!   the store only ever resumes after a checkpoint, which both send at the position of a
//!   record already considered;
//! * **deadlines, "not leader", "server busy", maximum append size**: the double never
//!   sends them; the store sorts them by what they say about a write (`error.rs`), unseen;
//! * **soft-deleted streams** continue their revisions on a real server as on the double
//!   (by the double's README);
//!   an append whose events landed at other revisions than the chain was computed for is
//!   reported as an error rather than accepted;
//! * **a subscription whose gRPC stream ends without an error status** makes the client
//!   (1.2.0) poll it forever; the double always ends with a status and so, by its source,
//!   does the server.
//!
//! # Cost of a call
//!
//! Every call costs about 44 ms on loopback against the double, whatever it does: the
//! client (1.2.0) leaves `TCP_NODELAY` off on its sockets (its `HttpConnector` keeps
//! hyper's default), so the second small write of each call waits for the peer's delayed
//! acknowledgement. Turning it on on the double's side changed nothing, so the delay is
//! the client's, and a real server would most likely see it too. An append costs two
//! calls (the append, the read-back of its positions) and an `Any` append three (the tip
//! read first).

mod envelope;
mod error;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscriptionFilter, WriteResult,
};
use tracing::warn;

use dealreg_events::chain::{link, Link};
use dealreg_events::{
    validate, Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamRevision, StreamTip,
};

pub use error::{ForeignEvent, OpenError, TruncatedStream};

/// How the store talks to KurrentDB. [`KurrentOptions::default`] suits a server on the
/// same network.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// How long one call (an append, a read of one page) may take. Sent to the server as
    /// the call's deadline and enforced here too, since a server that never received the
    /// call cannot enforce it.
    pub deadline: Duration,
    /// How many times an append is sent (the same ids, the same expected revision) while
    /// its outcome is unknown, before it fails with [`StoreError::OutcomeUnknown`].
    pub append_attempts: u32,
    /// How many times an [`ExpectedVersion::Any`] append reads the stream's tip and tries
    /// again after another writer got there first.
    pub any_attempts: u32,
    /// Most events in one page of [`EventStore::subscribe_all`].
    pub page: usize,
    /// How many times in a row a dropped subscription is resumed without it delivering
    /// anything before [`EventStore::subscribe_all`] ends with the error.
    pub resubscribe_attempts: u32,
    /// The first pause before a retry; each next one doubles, up to 5 s.
    pub retry_delay: Duration,
    /// Keeps this store's streams apart from everything else on the server: each stream
    /// is stored as `<namespace>.<stream>` and the log is only this namespace's events.
    /// `None`: streams are stored under their own names and the log is every non-system
    /// event of the server.
    pub namespace: Option<String>,
}

impl Default for KurrentOptions {
    fn default() -> Self {
        KurrentOptions {
            deadline: Duration::from_secs(10),
            append_attempts: 4,
            any_attempts: 64,
            page: 512,
            resubscribe_attempts: 10,
            retry_delay: Duration::from_millis(100),
            namespace: None,
        }
    }
}

impl KurrentOptions {
    /// The pause before retry number `n` (from 1).
    fn backoff(&self, n: u32) -> Duration {
        let doubled = self
            .retry_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        doubled.min(Duration::from_secs(5))
    }
}

/// The regex that selects the log's streams in `$all`: not KurrentDB's system streams
/// (`$…`), and only this namespace's when there is one.
fn log_filter(namespace: Option<&str>) -> SubscriptionFilter {
    match namespace {
        // A namespace is letters, digits, `_` and `-`: nothing to escape but the dot.
        Some(ns) => SubscriptionFilter::on_stream_name().regex(format!("^{ns}\\.")),
        None => SubscriptionFilter::on_stream_name().exclude_system_events(),
    }
}

/// Whether a record of `$all` is KurrentDB's own rather than an event: a system stream's
/// (which the server-side filter already leaves out) or a `$`-typed record in an ordinary
/// stream (a tombstone's `$streamDeleted`, a projection's `$>` link), which no stream-name
/// filter can leave out.
fn is_system(event: &kurrentdb::RecordedEvent) -> bool {
    event.event_type.starts_with('$') || event.stream_id().starts_with('$')
}

struct Inner {
    client: Client,
    options: KurrentOptions,
    /// `<namespace>.`, or empty.
    prefix: String,
}

/// The event store on a KurrentDB server (or cluster). Cloning is cheap: clones share one
/// client and its connection.
#[derive(Clone)]
pub struct KurrentStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KurrentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl KurrentStore {
    /// Connects to the KurrentDB server that `url` names (`kurrentdb://HOST:2113?tls=false`,
    /// `esdb://…`, `kurrentdb+discover://…`; TLS is on unless the URL says `tls=false`), and
    /// checks that it answers, so a wrong URL fails here rather than on the first append.
    pub async fn connect(url: &str) -> Result<KurrentStore, OpenError> {
        KurrentStore::connect_with(url, KurrentOptions::default()).await
    }

    /// [`KurrentStore::connect`] with options.
    pub async fn connect_with(
        url: &str,
        options: KurrentOptions,
    ) -> Result<KurrentStore, OpenError> {
        let shown = error::redact(url);
        let settings: ClientSettings = url.parse().map_err(|e| OpenError::BadUrl {
            url: shown.clone(),
            reason: format!("{e}"),
        })?;
        let prefix = match &options.namespace {
            None => String::new(),
            Some(ns) => {
                let valid = !ns.is_empty()
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    return Err(OpenError::BadNamespace {
                        namespace: ns.clone(),
                    });
                }
                format!("{ns}.")
            }
        };
        // The user's name, for the refusals at open; never the password.
        let user = error::user_of(url);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
        let client =
            Client::with_runtime_handle(runtime, settings).map_err(|e| OpenError::Client {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        // The client connects on its first call; asking for the server's features is the
        // cheapest call that needs an answer.
        match tokio::time::timeout(options.deadline, client.server_info()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(OpenError::Unreachable {
                    url: shown,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(OpenError::Unreachable {
                    url: shown,
                    reason: format!("no answer within {:?}", options.deadline),
                })
            }
        }
        let store = KurrentStore {
            inner: Arc::new(Inner {
                client,
                options,
                prefix,
            }),
        };
        store.check_access(&shown, user).await?;
        Ok(store)
    }

    /// Reads one record of `$all`, so that a user who may not read the log is refused
    /// here, naming what to grant, rather than on the first command. The client reports
    /// both of the server's refusals, `UNAUTHENTICATED` (bad credentials) and
    /// `PERMISSION_DENIED` (not allowed), as one `AccessDenied`; a read of an ordinary
    /// stream (which nobody writes: it never exists) tells them apart, since every
    /// authenticated user may read ordinary streams under the default ACL.
    async fn check_access(&self, url: &str, user: Option<String>) -> Result<(), OpenError> {
        let deadline = self.options().deadline;
        let all = ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .deadline(deadline);
        let read_all = async {
            let mut read = self.inner.client.read_all(&all).await?;
            read.next().await.map(|_| ())
        };
        match tokio::time::timeout(deadline, read_all).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(kurrentdb::Error::AccessDenied)) => {}
            Ok(Err(e)) => {
                return Err(OpenError::Unreachable {
                    url: url.to_string(),
                    reason: format!("reading $all failed: {e}"),
                })
            }
            Err(_) => {
                return Err(OpenError::Unreachable {
                    url: url.to_string(),
                    reason: format!("reading $all got no answer within {deadline:?}"),
                })
            }
        }
        let Some(user) = user else {
            return Err(OpenError::AnonymousDenied {
                url: url.to_string(),
            });
        };
        let probe = ReadStreamOptions::default().max_count(1).deadline(deadline);
        let stream = self.stored_name("dealreg-access-check");
        let read_stream = async {
            let mut read = self.inner.client.read_stream(stream, &probe).await?;
            read.next().await.map(|_| ())
        };
        match tokio::time::timeout(deadline, read_stream).await {
            Ok(Err(kurrentdb::Error::AccessDenied)) => Err(OpenError::Refused {
                url: url.to_string(),
                user,
            }),
            _ => Err(OpenError::AllDenied {
                url: url.to_string(),
                user,
            }),
        }
    }

    /// The KurrentDB client this store uses (for tools and tests that need a call the port
    /// does not have).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn options(&self) -> &KurrentOptions {
        &self.inner.options
    }

    /// The KurrentDB stream that holds dealreg stream `stream`.
    fn stored_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.inner.prefix)
    }

    fn filter(&self) -> SubscriptionFilter {
        log_filter(self.inner.options.namespace.as_deref())
    }

    /// A KurrentDB event as a dealreg event, its envelope checked.
    fn decode(&self, event: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, ForeignEvent> {
        let position = Position::pair(event.position.commit, event.position.prepare);
        let stored = event.stream_id();
        let foreign = |why: String| ForeignEvent {
            position,
            stream: stored.to_string(),
            revision: event.revision,
            event_id: event.id,
            event_type: event.event_type.clone(),
            why,
        };
        let stream = stored.strip_prefix(&self.inner.prefix).ok_or_else(|| {
            foreign(format!(
                "its stream is outside this store's namespace `{}`",
                self.inner.prefix.trim_end_matches('.')
            ))
        })?;
        let envelope = envelope::decode(&event.custom_metadata).map_err(foreign)?;
        Ok(RecordedEvent {
            stream: stream.to_string(),
            revision: event.revision,
            position,
            event_id: event.id,
            event_type: event.event_type.clone(),
            data: event.data.to_vec(),
            metadata: envelope.metadata,
            prev_hash: envelope.prev_hash,
            hash: envelope.hash,
        })
    }

    /// The KurrentDB event for `event` at its place in the chain.
    fn event_data(event: &NewEvent, link: &Link) -> Result<EventData, StoreError> {
        let custom = envelope::encode(&link.prev_hash, &link.hash, &event.metadata)
            .map_err(StoreError::Backend)?;
        let data = match envelope::exact_json(&event.data) {
            // Serialising a RawValue writes its bytes unchanged.
            Some(raw) => EventData::json(&event.event_type, &raw).map_err(|e| {
                StoreError::Backend(format!("the event's JSON data could not be sent: {e}"))
            })?,
            None => EventData::binary(&event.event_type, Bytes::copy_from_slice(&event.data)),
        };
        Ok(data.id(event.event_id).metadata(Bytes::from(custom)))
    }

    /// Reads up to `max` events of stored stream `stored` forwards from `from`, decoded. A
    /// stream that does not exist (or was soft-deleted) reads as empty.
    ///
    /// The revisions must start at `from` and run without a gap: KurrentDB's reads skip
    /// the events a stream's `$tb` or `$maxCount` metadata hides (a forwards read from 0
    /// of a stream truncated before 5 starts at 5), and folding the rest would build a
    /// wrong state, so such a read fails with [`TruncatedStream`]. dealreg never truncates
    /// a stream, and it never lets a stream start past revision 0 (an append that landed
    /// elsewhere than its chain is refused), so a read that starts late always means
    /// someone else truncated it.
    async fn read_from(
        &self,
        stored: &str,
        from: StreamRevision,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let what = format!("the read of stream `{stored}`");
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from))
            .forwards()
            .max_count(max)
            .deadline(self.options().deadline);
        let read = async {
            let mut read = self
                .inner
                .client
                .read_stream(stored, &options)
                .await
                .map_err(|e| error::read_error(&what, e))?;
            let mut events: Vec<RecordedEvent> = Vec::new();
            loop {
                match read.next().await {
                    Ok(Some(resolved)) => {
                        let Some(event) = resolved.event.as_ref() else {
                            continue;
                        };
                        let expected = from + events.len() as u64;
                        if event.revision != expected {
                            return Err(TruncatedStream {
                                stream: stored.to_string(),
                                from,
                                expected,
                                got: event.revision,
                            }
                            .into());
                        }
                        events.push(self.decode(event)?);
                    }
                    Ok(None) => return Ok(events),
                    Err(kurrentdb::Error::ResourceNotFound) => return Ok(events),
                    Err(e) => return Err(error::read_error(&what, e)),
                }
            }
        };
        self.within(&what, read).await
    }

    /// The last event of stored stream `stored`, as a tip; `None` when it has none.
    async fn last_event(&self, stored: &str) -> Result<Option<StreamTip>, StoreError> {
        let what = format!("the read of the last event of stream `{stored}`");
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1)
            .deadline(self.options().deadline);
        let read = async {
            let mut read = self
                .inner
                .client
                .read_stream(stored, &options)
                .await
                .map_err(|e| error::read_error(&what, e))?;
            match read.next().await {
                Ok(Some(resolved)) => match resolved.event.as_ref() {
                    Some(event) => Ok(Some(StreamTip::of(&self.decode(event)?))),
                    None => Ok(None),
                },
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => Ok(None),
                Err(e) => Err(error::read_error(&what, e)),
            }
        };
        self.within(&what, read).await
    }

    /// Runs a read under the deadline.
    async fn within<T>(
        &self,
        what: &str,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = self.options().deadline;
        tokio::time::timeout(deadline, read)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Backend(format!(
                    "KurrentDB did not finish {what} within {deadline:?}; check the server's load and the network"
                )))
            })
    }

    /// Appends `events` after `tip` (`None`: to a stream without events), chained from it,
    /// with the matching exact expectation. `expected` is what the caller asked for, for
    /// the error it may get.
    async fn append_after(
        &self,
        stream: &str,
        tip: Option<(StreamRevision, &str)>,
        expected: &ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Appended, StoreError> {
        let links = link(stream, tip, events);
        let (Some(first), Some(last)) = (links.first(), links.last()) else {
            return Err(StoreError::InvalidAppend(format!(
                "an append to `{stream}` needs at least one event"
            )));
        };
        let (first_revision, last_revision, last_hash) =
            (first.revision, last.revision, last.hash.clone());
        let proposed = events
            .iter()
            .zip(&links)
            .map(|(event, link)| Self::event_data(event, link))
            .collect::<Result<Vec<_>, _>>()?;
        let state = match tip {
            Some((revision, _)) => StreamState::StreamRevision(revision),
            None => StreamState::NoStream,
        };
        let stored = self.stored_name(stream);
        let written = self
            .send_append(stream, &stored, state, proposed, expected)
            .await?;
        if written.next_expected_version != last_revision {
            return Err(StoreError::Backend(format!(
                "KurrentDB put the append to `{stream}` at revision {}, not at revision {last_revision} that its hash chain was computed for (was the stream deleted and recreated by someone else?); its events will fail `dealreg verify`",
                written.next_expected_version
            )));
        }
        let positions = self
            .positions_of(stream, &stored, first_revision, events)
            .await?;
        let position = positions.last().copied().unwrap_or(Position::ORIGIN);
        Ok(Appended {
            stream: stream.to_string(),
            revisions: links.iter().map(|l| l.revision).collect(),
            positions,
            tip: StreamTip {
                revision: last_revision,
                position,
                hash: last_hash,
            },
        })
    }

    /// Sends one append until the server gives a definite answer (see the crate doc).
    async fn send_append(
        &self,
        stream: &str,
        stored: &str,
        state: StreamState,
        proposed: Vec<EventData>,
        expected: &ExpectedVersion,
    ) -> Result<WriteResult, StoreError> {
        let deadline = self.options().deadline;
        let options = AppendToStreamOptions::default()
            .stream_state(state)
            .deadline(deadline);
        let attempts = self.options().append_attempts.max(1);
        // Why an earlier attempt's outcome is unknown, once one is.
        let mut unknown: Option<String> = None;
        let mut not_sent = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.options().backoff(attempt - 1)).await;
            }
            let sent = tokio::time::timeout(
                deadline,
                self.inner
                    .client
                    .append_to_stream(stored, &options, proposed.clone()),
            )
            .await;
            let failure = match sent {
                Ok(Ok(written)) => return Ok(written),
                Ok(Err(e)) => error::append_failure(stream, expected, e),
                Err(_) => error::AppendFailure::Unknown(format!(
                    "KurrentDB did not answer within {deadline:?}"
                )),
            };
            match failure {
                error::AppendFailure::Refused(refusal) => {
                    // A wrong expected version settles an earlier unknown attempt too: had
                    // it landed, the server would have recognised this one as its retry.
                    let settles = matches!(refusal, StoreError::WrongExpectedVersion { .. });
                    match &unknown {
                        Some(why) if !settles => {
                            return Err(StoreError::OutcomeUnknown {
                                reason: format!(
                                    "an append to `{stream}` got no answer ({why}), and sending it again was refused: {refusal}"
                                ),
                            })
                        }
                        _ => return Err(refusal),
                    }
                }
                error::AppendFailure::NotSent(why) => {
                    warn!(stream, attempt, %why, "the append was not sent; sending it again");
                    not_sent = why;
                }
                error::AppendFailure::Unknown(why) => {
                    warn!(stream, attempt, %why, "the append's outcome is unknown; sending the same append again to learn it");
                    unknown = Some(why);
                }
            }
        }
        Err(match unknown {
            Some(why) => StoreError::OutcomeUnknown {
                reason: format!(
                    "{attempts} attempts to append to `{stream}` got no definite answer from KurrentDB (first unknown: {why}; last: {not_sent})"
                ),
            },
            None => StoreError::NotWritten {
                reason: format!(
                    "KurrentDB could not be reached in {attempts} attempts to append to `{stream}`: {not_sent}"
                ),
            },
        })
    }

    /// The positions of the `events` just appended to `stream` from `first`, read back.
    async fn positions_of(
        &self,
        stream: &str,
        stored: &str,
        first: StreamRevision,
        events: &[NewEvent],
    ) -> Result<Vec<Position>, StoreError> {
        let attempts = self.options().append_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.options().backoff(attempt - 1)).await;
            }
            match self.read_from(stored, first, events.len()).await {
                Ok(read) => {
                    let ours = read
                        .iter()
                        .zip(events)
                        .all(|(got, sent)| got.event_id == sent.event_id);
                    if !ours {
                        return Err(StoreError::Backend(format!(
                            "the append to `{stream}` succeeded, but its revisions {first}.. now hold other events: the stream was changed by someone else"
                        )));
                    }
                    if read.len() == events.len() {
                        return Ok(read.iter().map(|e| e.position).collect());
                    }
                    // Fewer than were written, and those ours: the node read from lags the
                    // leader that took the append (a follower). Read again shortly.
                    warn!(
                        stream,
                        attempt,
                        read = read.len(),
                        written = events.len(),
                        "the read-back of an append came back short (a lagging follower?); reading again"
                    );
                    last_error = format!(
                        "the node read from showed {} of its {} events (a follower behind the leader)",
                        read.len(),
                        events.len()
                    );
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        // The events are written; only where they landed is unknown. The engine treats
        // this as an unknown outcome: it reads the stream again and finds them there.
        Err(StoreError::OutcomeUnknown {
            reason: format!(
                "the append to `{stream}` was written at revisions {first}..{}, but reading back its positions failed: {last_error}",
                first + events.len() as u64 - 1
            ),
        })
    }
}

impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        validate(stream, &events)?;
        if stream.starts_with('$') && self.inner.prefix.is_empty() {
            return Err(StoreError::InvalidAppend(format!(
                "`{stream}` starts with `$`, which KurrentDB reserves for its system streams (and the log leaves out): name the stream otherwise"
            )));
        }
        if let Some(event) = events.iter().find(|e| e.event_type.starts_with('$')) {
            return Err(StoreError::InvalidAppend(format!(
                "event type `{}` starts with `$`, which KurrentDB reserves for its own records (and the log leaves out): name the type otherwise",
                event.event_type
            )));
        }
        match &expected {
            ExpectedVersion::NoStream => self.append_after(stream, None, &expected, &events).await,
            ExpectedVersion::Exact(tip) => {
                self.append_after(
                    stream,
                    Some((tip.revision, tip.hash.as_str())),
                    &expected,
                    &events,
                )
                .await
            }
            ExpectedVersion::Any => {
                let stored = self.stored_name(stream);
                let attempts = self.options().any_attempts.max(1);
                for attempt in 1..=attempts {
                    let tip = self.last_event(&stored).await?;
                    let at = ExpectedVersion::after(tip.as_ref());
                    let chained_from = tip.as_ref().map(|t| (t.revision, t.hash.as_str()));
                    match self.append_after(stream, chained_from, &at, &events).await {
                        Err(StoreError::WrongExpectedVersion { .. }) => {
                            // Another writer appended between the read and the append.
                            if attempt % 8 == 0 {
                                tokio::time::sleep(self.options().backoff(attempt / 8)).await;
                            } else {
                                tokio::task::yield_now().await;
                            }
                        }
                        other => return other,
                    }
                }
                Err(StoreError::NotWritten {
                    reason: format!(
                        "{attempts} attempts to append to `{stream}` at its latest revision all lost the race to other writers"
                    ),
                })
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = after.map_or(0, |tip| tip.revision + 1);
        self.read_from(&self.stored_name(stream), from, max).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let what = format!("the read of the log after position {after}");
        let read = async {
            let mut events = Vec::new();
            // Where the next request starts; it moves past records skipped client-side, so
            // a page of tombstones never reads as the log's end.
            let mut from = after;
            while events.len() < max {
                let wanted = max - events.len();
                // KurrentDB reads forwards from a position inclusively: one more, then the
                // record at exactly `from` is dropped.
                let (start, count) = if from.is_origin() {
                    (StreamPosition::Start, wanted)
                } else {
                    let position = kurrentdb::Position {
                        commit: from.commit(),
                        prepare: from.prepare(),
                    };
                    (StreamPosition::Position(position), wanted.saturating_add(1))
                };
                let options = ReadAllOptions::default()
                    .position(start)
                    .forwards()
                    .max_count(count)
                    .filter(self.filter())
                    .deadline(self.options().deadline);
                let mut read = self
                    .inner
                    .client
                    .read_all(&options)
                    .await
                    .map_err(|e| error::read_error(&what, e))?;
                let (mut got, mut skipped) = (0usize, false);
                loop {
                    match read.next().await {
                        Ok(Some(resolved)) => {
                            got += 1;
                            let Some(event) = resolved.event.as_ref() else {
                                continue;
                            };
                            let position =
                                Position::pair(event.position.commit, event.position.prepare);
                            if position <= from {
                                continue;
                            }
                            from = position;
                            if is_system(event) {
                                skipped = true;
                                continue;
                            }
                            events.push(self.decode(event)?);
                            if events.len() == max {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Err(error::read_error(&what, e)),
                    }
                }
                // The server gave fewer than asked: the log ends here. Otherwise read on
                // only if records were skipped.
                if got < count || !skipped {
                    break;
                }
            }
            Ok(events)
        };
        self.within(&what, read).await
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        subscription::log_stream(self.clone(), after)
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        /// Records read per step backwards: a log rarely ends in more system records.
        const STEP: usize = 16;
        let what = "the read of the log's newest event";
        let read = async {
            let mut before = StreamPosition::End;
            loop {
                let options = ReadAllOptions::default()
                    .position(before)
                    .backwards()
                    .max_count(STEP)
                    .filter(self.filter())
                    .deadline(self.options().deadline);
                let mut read = self
                    .inner
                    .client
                    .read_all(&options)
                    .await
                    .map_err(|e| error::read_error(what, e))?;
                let mut got = 0;
                loop {
                    match read.next().await {
                        Ok(Some(resolved)) => {
                            got += 1;
                            let Some(event) = resolved.event.as_ref() else {
                                continue;
                            };
                            if !is_system(event) {
                                return Ok(Position::pair(
                                    event.position.commit,
                                    event.position.prepare,
                                ));
                            }
                            before = StreamPosition::Position(event.position);
                        }
                        Ok(None) => break,
                        Err(e) => return Err(error::read_error(what, e)),
                    }
                }
                if got < STEP {
                    return Ok(Position::ORIGIN);
                }
            }
        };
        self.within(what, read).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dense_positions: false,
            // The client's append names one stream; a multi-stream transaction is not in
            // its API. The engine takes capacity slots before the account's write instead.
            multi_stream_append: false,
            capacity_in_one_append: false,
        }
    }
}
