//! The dealreg event store on NATS JetStream (nats-server 2.12 or newer).
//!
//! # Layout
//!
//! * **One JetStream stream** (default `DEALREG_EVENTS`, file storage, no limits, delete
//!   and purge denied, `allow_atomic` and `allow_direct` on) holds every event of every
//!   dealreg stream; it captures `<prefix>.>` (default prefix `dealreg.ev`).
//! * **One subject per dealreg stream**: `<prefix>.<token>`, where the token is the stream
//!   name with `[A-Za-z0-9_-]` kept and every other byte (`.`, `*`, `>`, spaces, `~`, each
//!   byte of a non-ASCII character) written `~XX` in uppercase hex:
//!   `account-acme.co.uk` → `dealreg.ev.account-acme~2Eco~2Euk`. The encoding is
//!   reversible and canonical ([`encode_stream_name`], [`decode_token`]), so a read names
//!   each event's stream from its subject and no two names share a subject. Names whose
//!   subject would pass [`subject::MAX_SUBJECT_BYTES`] are refused.
//! * **One message per event**. The payload is the metadata bytes followed by the data
//!   bytes; the headers are `Dealreg-Event-Id`, `Dealreg-Event-Type`, `Dealreg-Revision`,
//!   `Dealreg-Prev-Hash`, `Dealreg-Hash` and `Dealreg-Metadata-Length` (where the
//!   metadata ends), so every byte comes back as written. A message on an event subject
//!   without them was written outside dealreg and a read reports it by its sequence.
//!
//! # Positions and revisions
//!
//! An event's [`Position`] is its JetStream stream sequence (`Position::at(seq)`): dense,
//! from 1, so [`Capabilities::dense_positions`] holds. Its revision is stored in a header,
//! since JetStream has none. A [`StreamTip`]'s position is the subject's last sequence,
//! which is what the server checks.
//!
//! # Appends
//!
//! * The expectation becomes `Nats-Expected-Last-Subject-Sequence`: `Exact(tip)` is
//!   `tip.position`, `NoStream` is 0 (no message on the subject), and `Any` reads the
//!   subject's last event from the stream leader and appends exactly after it, again after
//!   a lost race.
//! * Events are chained by [`dealreg_events::chain::link`] from the expected tip before
//!   they are sent. The server checks the tip's *position* only: the revision and hash of
//!   an `Exact` tip are taken from the writer (who read them from this store), because no
//!   JetStream header can check them atomically. A writer that forges a tip with the right
//!   position but another revision or hash writes a chain that `dealreg verify` reports.
//! * One event is one publish. Several are one atomic batch (ADR-50): `Nats-Batch-Id`,
//!   `Nats-Batch-Sequence` 1..n, `Nats-Batch-Commit: 1` on the last, the expectation on the
//!   first only (the server refuses it on a later message of a subject the batch already
//!   wrote); the server stores all or none, contiguously, so the positions are the
//!   acknowledged sequence and the n-1 before it. At most [`MAX_BATCH`] events per append
//!   (the server's batch limit); more are refused before anything is sent.
//! * [`EventStore::append_streams`] is the same batch over several subjects, each part's expectation
//!   on the first message of its subject (ADR-50 takes that); one refused expectation
//!   writes no part.
//! * A refused expectation (`10071`, or `10164`) is
//!   [`StoreError::WrongExpectedVersion`] with the subject's real last revision, read from
//!   the stream leader. An error the server answered is [`StoreError::NotWritten`]. A
//!   publish nobody answered (no stream leader during an election, or a stream just
//!   created whose subjects not every server routes yet) wrote nothing: it is tried again
//!   every 50 ms until the timeout, then is [`StoreError::NotWritten`]; a store opened on
//!   a replicated stream also waits (up to the timeout) for it to have a leader. No answer
//!   in time or a lost connection is [`StoreError::OutcomeUnknown`].

//! # Reads
//!
//! `read_stream` and `read_all` use batched direct gets (`next_by_subj` from a sequence:
//! the subject's index seeks there, so reading after a tip costs the same however long the
//! stream is). On a replicated stream any replica answers a direct get and a follower may
//! not have applied the newest events, so a read that ends short of `max` asks the stream
//! leader once (`STREAM.MSG.GET`) whether anything follows: one more round trip buys
//! read-your-writes through any node (see `read.rs`). `subscribe_all` is an ephemeral pull
//! consumer (memory, R1, no acks) over `<prefix>.>` from `after + 1`: catch-up, then live,
//! in pages of what is ready; a gap in its consumer sequence or two missed heartbeats
//! (2 s each) replace it by a fresh one after the last delivered event (see `subscribe.rs`).

//! # Durability
//!
//! "Acknowledged means durable" needs either a replicated stream (`replicas: 3`: a quorum
//! of two nodes stored the event before the ack) or, on a single node, the server setting
//! `jetstream { sync_interval: always }` (it fsyncs before it acknowledges). By default a
//! node syncs every two minutes, so a power loss can take acknowledged events with it.
//! JetStream's API does not tell the sync setting; give
//! [`JetStreamOptions::monitoring_url`] and the store reads `/varz` at open.
//! [`JetStreamStore::durability`] says what was found, and a single replica without proof
//! of sync-always is logged as a warning.
//!
//! # What this backend does not do
//!
//! * **No idempotency**: no `Nats-Msg-Id` is sent (a duplicate id would refuse a whole
//!   batch, and the server's window forgets ids after minutes). The engine keeps each
//!   command's key in its events' metadata; that is where a retried command is found.
//! * It does not refuse an event id stored before (SQLite does, by its unique index).
//! * It does not check a cluster's other nodes' versions: only the server the client
//!   connected to is asked.
//! * It does not fence reads on a single-replica stream: a mirror with `mirror_direct`
//!   also answers direct gets and may be behind; give such a deployment R3 instead.
//! * No JetStream domains or custom API prefixes (`$JS.API` is used as is).
//! * Event types must survive a NATS header unchanged (no control characters, no leading
//!   or trailing whitespace); others are refused as invalid appends.

mod open;
mod read;
pub mod subject;
mod subscribe;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, HeaderMap};
use dealreg_events::chain::link;
use dealreg_events::{
    validate, Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamAppend, StreamTip,
};

pub use open::{check_server_version, Durability, JetStreamOptions, OpenError, MIN_SERVER_VERSION};
pub use subject::{decode_token, encode_stream_name};

use read::{Reader, Stored};

/// Most events in one append: the server's limit on an atomic batch (1000).
pub const MAX_BATCH: usize = 1000;

/// How often an `Any` append reads the tip again after losing a race before it gives up.
const ANY_ATTEMPTS: usize = 64;

/// Header names of ADR-50 atomic batches.
const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// The server's error code for an expectation header on a batch message that may not carry
/// one (a later message of a subject the batch wrote, or an expected stream sequence after
/// the first message); not in async-nats's list. Treated as a refused expectation.
const EXPECTED_SUBJECT_SEQUENCE_IN_BATCH: ErrorCode = ErrorCode(10164);

/// The event store on a JetStream stream. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct JetStreamStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    js: jetstream::Context,
    stream: Stream<()>,
    stream_name: String,
    subjects: subject::Subjects,
    replicated: bool,
    timeout: Duration,
    durability: Durability,
    identity: String,
    /// The refusals the server sent on this connection, when it was made by
    /// dealreg-nats-connect.
    refusals: Option<dealreg_nats_connect::Refusals>,
}

/// One stream's share of an append, with what its expectation stands for on the server.
struct Part<'a> {
    stream: &'a str,
    subject: String,
    expected: ExpectedVersion,
    events: &'a [NewEvent],
    /// `Nats-Expected-Last-Subject-Sequence` of the part's first message.
    expected_sequence: u64,
    /// Revision and hash the part's events chain from.
    tip: Option<(u64, String)>,
}

impl<'a> Part<'a> {
    fn new(
        stream: &'a str,
        subject: String,
        expected: ExpectedVersion,
        events: &'a [NewEvent],
    ) -> Part<'a> {
        Part {
            stream,
            subject,
            expected,
            events,
            expected_sequence: 0,
            tip: None,
        }
    }
}

/// Why one attempt to publish did not land.
enum Refused {
    /// The subject was not at the expected sequence.
    Conflict,
    /// No stream answered the publish (no responders): nothing was written. A replicated
    /// stream answers nothing while it elects a leader, and a stream just created or just
    /// led by another server takes a moment until every server routes its subjects.
    Unanswered(StoreError),
    Failed(StoreError),
}

/// How long apart an append tries again while no stream answers it.
const UNANSWERED_PAUSE: Duration = Duration::from_millis(50);

impl JetStreamStore {
    /// Connects to `urls` (one or more `nats://host:port`, tried in turn and kept for
    /// reconnects) and opens the store.
    pub async fn connect(
        urls: &[String],
        options: JetStreamOptions,
    ) -> Result<JetStreamStore, OpenError> {
        if urls.is_empty() {
            return Err(OpenError::InvalidOptions(
                "no NATS URL was given; pass at least one nats://host:port".into(),
            ));
        }
        let connection = dealreg_nats_connect::connect(
            urls,
            &options.access,
            &format!("dealreg-store-{}", std::process::id()),
            options.liveness,
        )
        .await
        .map_err(|e| match e {
            dealreg_nats_connect::ConnectError::Connect { urls, reason } => {
                OpenError::Connect { urls, reason }
            }
            _ => OpenError::InvalidOptions(e.to_string()),
        })?;
        JetStreamStore::open_on(connection, options).await
    }

    /// Opens the store on a connection made by [`dealreg_nats_connect`]: as
    /// [`open`](JetStreamStore::open), and an append the server refused for want of a
    /// permission is reported as that, not as an unanswered append.
    pub async fn open_on(
        connection: dealreg_nats_connect::Connection,
        options: JetStreamOptions,
    ) -> Result<JetStreamStore, OpenError> {
        JetStreamStore::open_with(connection.client, options, Some(connection.refusals)).await
    }

    /// Opens the store on a connected client: checks the server's version, creates or
    /// verifies the stream, and finds what an acknowledgement is worth.
    pub async fn open(
        client: Client,
        options: JetStreamOptions,
    ) -> Result<JetStreamStore, OpenError> {
        JetStreamStore::open_with(client, options, None).await
    }

    async fn open_with(
        client: Client,
        options: JetStreamOptions,
        refusals: Option<dealreg_nats_connect::Refusals>,
    ) -> Result<JetStreamStore, OpenError> {
        subject::check_prefix(&options.subject_prefix).map_err(OpenError::InvalidOptions)?;
        check_stream_name(&options.stream)?;
        if !(1..=5).contains(&options.replicas) {
            return Err(OpenError::InvalidOptions(format!(
                "replicas must be 1 to 5 (3 on a cluster), not {}",
                options.replicas
            )));
        }
        let info = client.server_info();
        check_server_version(&info.version)?;
        if !info.jetstream {
            return Err(OpenError::NoJetStream);
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.timeout);
        let (config, created) = find_or_create_stream(&js, &options).await?;
        open::check_stream(&config, &options)?;
        if config.num_replicas > 1 {
            until_led(&js, &options.stream, options.timeout).await;
        }
        let durability = open::durability(config.num_replicas, &options).await;
        if durability.acknowledged_means_durable() {
            tracing::info!(stream = %options.stream, %durability, "JetStream event store opened");
        } else {
            tracing::warn!(stream = %options.stream, %durability, "JetStream event store: acknowledged appends are not proven durable");
        }
        let stream = js
            .get_stream_no_info(&options.stream)
            .await
            .map_err(|e| OpenError::Nats(e.to_string()))?;
        Ok(JetStreamStore {
            inner: Arc::new(Inner {
                client,
                js,
                stream,
                stream_name: options.stream.clone(),
                subjects: subject::Subjects::new(&options.subject_prefix),
                replicated: config.num_replicas > 1,
                timeout: options.timeout,
                durability,
                identity: format!("jetstream:{}@{created}", options.stream),
                refusals,
            }),
        })
    }

    /// What an acknowledged append is worth here, as found at open.
    pub fn durability(&self) -> &Durability {
        &self.inner.durability
    }

    /// The JetStream stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream_name
    }

    /// What names this log wherever it is reached from: the stream's name and when it was
    /// created (a views file saved from another log's events is rebuilt).
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// The connection the store uses (the key vault and the leases beside it share it).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The subject the events of `stream` are published on (`None`: the name cannot be
    /// one: empty, or too long).
    pub fn subject_of(&self, stream: &str) -> Option<String> {
        self.inner.subjects.of(stream)
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            client: &self.inner.client,
            stream: &self.inner.stream,
            stream_name: &self.inner.stream_name,
            replicated: self.inner.replicated,
            timeout: self.inner.timeout,
        }
    }

    /// A reader that takes a replica's answer as it is: no question to the leader when
    /// the replica has nothing more (for reads followed by an append at their tip).
    fn replica_reader(&self) -> Reader<'_> {
        Reader {
            replicated: false,
            ..self.reader()
        }
    }

    /// Up to `max` events of `stream` after `after`, read by `reader`.
    async fn read_stream_with(
        &self,
        reader: Reader<'_>,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Some(subject) = self.inner.subjects.of(stream) else {
            return Ok(Vec::new());
        };
        if max == 0 {
            return Ok(Vec::new());
        }
        let start = match after {
            None => 1,
            Some(tip) => match tip.position.sequence() {
                Some(sequence) => sequence + 1,
                None => {
                    return Err(StoreError::Backend(format!(
                        "the tip of `{stream}` to read after is at position {}, which is no JetStream sequence; pass a tip this store gave",
                        tip.position
                    )))
                }
            },
        };
        let stored = reader.read(&subject, start, max).await?;
        stored.iter().map(|s| self.decode_stored(s)).collect()
    }

    /// An event from a stored message.
    fn decode(
        &self,
        subject: &str,
        sequence: u64,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<RecordedEvent, StoreError> {
        let stream = self
            .inner
            .subjects
            .stream_of(subject)
            .ok_or_else(|| wire::foreign(sequence, subject, "its subject names no stream"))?;
        wire::decode(stream, subject, sequence, headers, payload)
    }

    fn decode_stored(&self, stored: &Stored) -> Result<RecordedEvent, StoreError> {
        self.decode(
            &stored.subject,
            stored.sequence,
            stored.headers.as_ref(),
            &stored.payload,
        )
    }

    /// The stream's last event as the stream leader has it.
    async fn tip(&self, subject: &str) -> Result<Option<StreamTip>, StoreError> {
        match self.reader().leader_last(subject).await? {
            Some(stored) => Ok(Some(StreamTip::of(&self.decode_stored(&stored)?))),
            None => Ok(None),
        }
    }

    /// Checks one part of an append before anything is sent, and finds its subject.
    fn check_part(&self, stream: &str, events: &[NewEvent]) -> Result<String, StoreError> {
        validate(stream, events)?;
        if let Some(e) = events.iter().find(|e| !wire::header_safe(&e.event_type)) {
            return Err(StoreError::InvalidAppend(format!(
                "event type {:?} cannot be stored in a NATS header unchanged (control characters, or whitespace at an end); rename the type",
                e.event_type
            )));
        }
        self.inner.subjects.of(stream).ok_or_else(|| {
            StoreError::InvalidAppend(format!(
                "the stream name `{}` is too long for a subject (at most {} bytes once encoded); use a shorter name",
                stream.chars().take(64).collect::<String>(),
                subject::MAX_SUBJECT_BYTES
            ))
        })
    }

    /// The subject sequence and chain tip an expectation stands for; `Any` reads the tip
    /// from the stream leader.
    async fn resolve(
        &self,
        stream: &str,
        subject: &str,
        expected: &ExpectedVersion,
    ) -> Result<(u64, Option<(u64, String)>), StoreError> {
        match expected {
            ExpectedVersion::Exact(tip) => {
                let sequence = tip.position.sequence().filter(|s| *s > 0).ok_or_else(|| {
                    StoreError::InvalidAppend(format!(
                        "the expected tip of `{stream}` is at position {}, which is no JetStream sequence; pass a tip this store gave",
                        tip.position
                    ))
                })?;
                Ok((sequence, Some((tip.revision, tip.hash.clone()))))
            }
            ExpectedVersion::NoStream => Ok((0, None)),
            ExpectedVersion::Any => {
                let tip = self.tip(subject).await?;
                let sequence = tip
                    .as_ref()
                    .and_then(|t| t.position.sequence())
                    .unwrap_or(0);
                Ok((sequence, tip.map(|t| (t.revision, t.hash))))
            }
        }
    }

    /// After a refused batch: the first part whose expectation no longer holds, as the
    /// error to report (with the stream's real revision); `None` when every stated
    /// expectation holds, so only an `Any` part lost a race and the append may be tried again.
    async fn diagnose(&self, parts: &[Part<'_>]) -> Option<StoreError> {
        for part in parts {
            if matches!(part.expected, ExpectedVersion::Any) {
                continue;
            }
            let tip = match self.tip(&part.subject).await {
                Ok(tip) => tip,
                Err(e) => return Some(e),
            };
            let holds = match (&part.expected, &tip) {
                (ExpectedVersion::NoStream, None) => true,
                (ExpectedVersion::Exact(want), Some(have)) => want.position == have.position,
                _ => false,
            };
            if !holds {
                return Some(StoreError::WrongExpectedVersion {
                    stream: part.stream.to_string(),
                    expected: part.expected.clone(),
                    actual: tip.map(|t| t.revision),
                });
            }
        }
        None
    }

    /// Appends `parts` (one stream each) in one publish or one atomic batch, resolving
    /// `Any` expectations and trying again when only they lost a race.
    async fn append_parts(&self, parts: Vec<Part<'_>>) -> Result<Vec<Appended>, StoreError> {
        let total: usize = parts.iter().map(|p| p.events.len()).sum();
        if total > MAX_BATCH {
            return Err(StoreError::InvalidAppend(format!(
                "{total} events in one append; JetStream takes at most {MAX_BATCH} in one atomic batch, so split the decision"
            )));
        }
        let mut parts = parts;
        // Unanswered publishes wrote nothing: they are tried again until the timeout.
        let unanswered_until = std::time::Instant::now() + self.inner.timeout;
        let mut attempt = 0;
        while attempt < ANY_ATTEMPTS {
            for part in &mut parts {
                let (sequence, tip) = self
                    .resolve(part.stream, &part.subject, &part.expected)
                    .await?;
                part.expected_sequence = sequence;
                part.tip = tip;
            }
            match self.publish(&parts).await {
                Ok(appended) => return Ok(appended),
                Err(Refused::Failed(e)) => return Err(e),
                Err(Refused::Unanswered(e)) => {
                    if std::time::Instant::now() + UNANSWERED_PAUSE >= unanswered_until {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "no stream answered the append; trying again");
                    tokio::time::sleep(UNANSWERED_PAUSE).await;
                    continue;
                }
                Err(Refused::Conflict) => {
                    if let Some(e) = self.diagnose(&parts).await {
                        return Err(e);
                    }
                    // Someone appended between the read and the publish: read again,
                    // after a pause that grows, so racing writers spread out.
                    let pause = 1 + (attempt as u64).min(20) * (u64::from(rand_byte()) % 4);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            attempt += 1;
        }
        // Writers kept winning every race: report the first stream as it is now.
        let Some(first) = parts.first() else {
            return Err(StoreError::InvalidAppend(
                "an append needs at least one stream".into(),
            ));
        };
        Err(StoreError::WrongExpectedVersion {
            stream: first.stream.to_string(),
            expected: first.expected.clone(),
            actual: self.tip(&first.subject).await?.map(|t| t.revision),
        })
    }

    /// One attempt: publishes every part's events (each part's expectation on its first
    /// message), chained from each part's tip.
    async fn publish(&self, parts: &[Part<'_>]) -> Result<Vec<Appended>, Refused> {
        let count: usize = parts.iter().map(|p| p.events.len()).sum();
        let started = std::time::Instant::now();
        let batch_id = (count > 1).then(|| uuid::Uuid::now_v7().simple().to_string());
        let mut links = Vec::with_capacity(parts.len());
        let mut commit = None;
        let mut index = 0;
        for part in parts {
            let chained = link(
                part.stream,
                part.tip.as_ref().map(|(r, h)| (*r, h.as_str())),
                part.events,
            );
            for (i, (event, l)) in part.events.iter().zip(&chained).enumerate() {
                index += 1;
                let (mut headers, payload) = wire::encode(event, l);
                if i == 0 {
                    headers.insert(
                        NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                        part.expected_sequence.to_string().as_str(),
                    );
                }
                if let Some(id) = &batch_id {
                    headers.insert(BATCH_ID, id.as_str());
                    headers.insert(BATCH_SEQUENCE, index.to_string().as_str());
                }
                if index == count {
                    if batch_id.is_some() {
                        headers.insert(BATCH_COMMIT, "1");
                    }
                    commit = Some((part.subject.clone(), headers, payload));
                } else {
                    // A batch's messages before the commit need no reply: the commit's ack
                    // answers for the batch. Same connection, so they arrive in order.
                    self.inner
                        .client
                        .publish_with_headers(part.subject.clone(), headers, payload)
                        .await
                        .map_err(|e| {
                            Refused::Failed(StoreError::NotWritten {
                                reason: format!("sending the batch failed before its commit: {e}"),
                            })
                        })?;
                }
            }
            links.push(chained);
        }
        let Some((subject, headers, payload)) = commit else {
            return Err(Refused::Failed(StoreError::InvalidAppend(
                "an append needs at least one event".into(),
            )));
        };
        let ack = self
            .inner
            .js
            .send_publish(
                subject.clone(),
                PublishMessage::build().headers(headers).payload(payload),
            )
            .await
            .map_err(|e| {
                Refused::Failed(StoreError::NotWritten {
                    reason: format!("the append could not be sent: {e}"),
                })
            })?;
        let ack = ack.await.map_err(|e| self.refused(e, parts, started))?;
        if ack.stream != self.inner.stream_name {
            return Err(Refused::Failed(StoreError::Backend(format!(
                "the append was stored in JetStream stream `{}`, not `{}`: another stream captures `{subject}`; give dealreg subjects of its own",
                ack.stream, self.inner.stream_name
            ))));
        }
        let count = count as u64;
        if ack.sequence < count {
            return Err(Refused::Failed(StoreError::OutcomeUnknown {
                reason: format!(
                    "the server acknowledged {count} events at sequence {}, which cannot be",
                    ack.sequence
                ),
            }));
        }
        // A committed batch is stored contiguously: its first event is count - 1 before
        // the acknowledged (last) one.
        let mut sequence = ack.sequence + 1 - count;
        let mut appended = Vec::with_capacity(parts.len());
        for (part, chained) in parts.iter().zip(links) {
            let positions: Vec<Position> = chained
                .iter()
                .map(|_| {
                    sequence += 1;
                    Position::at(sequence - 1)
                })
                .collect();
            let tip = match (chained.last(), positions.last()) {
                (Some(l), Some(p)) => StreamTip {
                    revision: l.revision,
                    position: *p,
                    hash: l.hash.clone(),
                },
                _ => {
                    return Err(Refused::Failed(StoreError::InvalidAppend(
                        "an append needs at least one event".into(),
                    )))
                }
            };
            appended.push(Appended {
                stream: part.stream.to_string(),
                revisions: chained.iter().map(|l| l.revision).collect(),
                positions,
                tip,
            });
        }
        Ok(appended)
    }

    /// What a failed acknowledgement means for the append.
    fn refused(
        &self,
        e: async_nats::jetstream::context::PublishError,
        parts: &[Part<'_>],
        started: std::time::Instant,
    ) -> Refused {
        // A publish the user may not make is dropped by the server, which says so only on
        // the connection: nothing was written, and the cause is the permission.
        if let Some(refusal) = self.inner.refusals.as_ref().and_then(|refusals| {
            parts
                .iter()
                .find_map(|part| refusals.publish_denied(&part.subject, started))
        }) {
            return Refused::Failed(StoreError::NotWritten {
                reason: format!(
                    "the NATS server refused this user publishing the events ({refusal}); grant the user publish on `{}` (adapters/nats/deploy/nats-server.conf)",
                    self.inner.subjects.all()
                ),
            });
        }
        let code = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .map(|js| js.error_code());
        match e.kind() {
            PublishErrorKind::WrongLastSequence => Refused::Conflict,
            _ if code == Some(EXPECTED_SUBJECT_SEQUENCE_IN_BATCH)
                || code == Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE) =>
            {
                Refused::Conflict
            }
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                Refused::Failed(StoreError::OutcomeUnknown {
                    reason: format!(
                        "no acknowledgement within {:?} ({e})",
                        self.inner.timeout
                    ),
                })
            }
            PublishErrorKind::StreamNotFound => Refused::Unanswered(StoreError::NotWritten {
                reason: format!(
                    "no JetStream stream answered for the event subjects (is `{}` there, and a quorum of its replicas up?)",
                    self.inner.stream_name
                ),
            }),
            // The server answered with an error: it refused before storing.
            _ if code.is_some() => Refused::Failed(StoreError::NotWritten {
                reason: format!("the server refused the append: {e}"),
            }),
            PublishErrorKind::MaxAckPending
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::MaxPayloadExceeded => {
                Refused::Failed(StoreError::NotWritten {
                    reason: e.to_string(),
                })
            }
            // An answer that could not be read: stored or not, nobody can say.
            PublishErrorKind::Other => Refused::Failed(StoreError::OutcomeUnknown {
                reason: format!("the acknowledgement could not be read: {e}"),
            }),
        }
    }
}

/// Refuses stream names JetStream does not take (empty, whitespace, `.`, `*`, `>`, path
/// separators).
fn check_stream_name(name: &str) -> Result<(), OpenError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        });
    if bad {
        return Err(OpenError::InvalidOptions(format!(
            "`{name}` is not a JetStream stream name; use letters, digits, `-` and `_`, e.g. DEALREG_EVENTS"
        )));
    }
    Ok(())
}

/// The stream's configuration as the server has it, after creating the stream when it is
/// missing and `options.create` allows.
async fn find_or_create_stream(
    js: &jetstream::Context,
    options: &JetStreamOptions,
) -> Result<(jetstream::stream::Config, String), OpenError> {
    use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
    // The config and when the stream was created: a log's identity, however it is reached.
    let described =
        |info: &jetstream::stream::Info| (info.config.clone(), info.created.to_string());
    let not_found = |kind: &GetStreamErrorKind| matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND);
    match js.get_stream(&options.stream).await {
        Ok(mut stream) => return Ok(described(stream.info().await.map_err(nats)?)),
        Err(e) if not_found(&e.kind()) => {}
        Err(e) => return Err(nats(e)),
    }
    if !options.create {
        return Err(OpenError::StreamMissing {
            stream: options.stream.clone(),
            subjects: format!("{}.>", options.subject_prefix),
        });
    }
    match js.create_stream(open::stream_config(options)).await {
        Ok(mut stream) => Ok(described(stream.info().await.map_err(nats)?)),
        // Another process created it first: use theirs, if it fits.
        Err(e) if matches!(&e.kind(), CreateStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
        {
            let mut stream = js.get_stream(&options.stream).await.map_err(nats)?;
            Ok(described(stream.info().await.map_err(nats)?))
        }
        Err(e) => Err(OpenError::Nats(format!(
            "creating the JetStream stream `{}` failed: {e}",
            options.stream
        ))),
    }
}

/// Waits, at most `within`, until the stream has a leader. Why: a replicated stream just
/// created (or whose leader just went) answers no publish until its replicas elect one,
/// and a store's first appends then failed as not written ("no JetStream stream answered")
/// although nothing was wrong. After `within` the store opens anyway: its appends say
/// plainly that nothing was written and may be retried.
async fn until_led(js: &jetstream::Context, name: &str, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(mut stream) = js.get_stream(name).await {
            if let Ok(info) = stream.info().await {
                if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) {
                    return;
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(stream = %name, "the JetStream stream has no leader yet; appends are refused as not written until it has one");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn nats(e: impl std::fmt::Display) -> OpenError {
    OpenError::Nats(e.to_string())
}

impl EventStore for JetStreamStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let subject = self.check_part(stream, &events)?;
        let part = Part::new(stream, subject, expected, &events);
        self.append_parts(vec![part])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("the append answered no outcome".into()))
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_with(self.reader(), stream, after, max)
            .await
    }

    /// A replica's answer is taken as it is: the engine appends at the tip it read, so
    /// a replica that lags makes that append fail and the engine read again, from the
    /// leader. Saves a round trip per decision on a replicated stream.
    async fn read_stream_to_append(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_with(self.replica_reader(), stream, after, max)
            .await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let stored = self
            .reader()
            .read(&self.inner.subjects.all(), after.commit() + 1, max)
            .await?;
        stored.iter().map(|s| self.decode_stored(s)).collect()
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        subscribe::subscribe(self.clone(), after)
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let info = self.inner.stream.get_info().await.map_err(|e| {
            StoreError::Backend(format!(
                "reading the state of JetStream stream `{}` failed: {e}; check that a quorum of it is up and retry",
                self.inner.stream_name
            ))
        })?;
        Ok(Position::at(info.state.last_sequence))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dense_positions: true,
            multi_stream_append: true,
            capacity_in_one_append: self.inner.replicated,
        }
    }

    /// One atomic batch over the parts' subjects, each part's expectation on its first
    /// message (ADR-50 takes a subject expectation on the first message of each subject).
    async fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, StoreError> {
        if appends.is_empty() {
            return Err(StoreError::InvalidAppend(
                "an append needs at least one stream".into(),
            ));
        }
        let mut parts = Vec::with_capacity(appends.len());
        for (i, a) in appends.iter().enumerate() {
            let subject = self.check_part(&a.stream, &a.events)?;
            if appends[..i].iter().any(|b| b.stream == a.stream) {
                return Err(StoreError::InvalidAppend(format!(
                    "stream `{}` appears twice in one append; put its events in one part",
                    a.stream
                )));
            }
            parts.push(Part::new(&a.stream, subject, a.expected.clone(), &a.events));
        }
        self.append_parts(parts).await
    }
}

/// A byte that differs between racing tasks, for spreading their retries (no RNG crate
/// for it: the low bits of a fresh v7 uuid are random).
fn rand_byte() -> u8 {
    uuid::Uuid::now_v7().as_bytes()[15]
}
