//! `subscribe_all`: an ephemeral pull consumer over every event subject, catch-up then
//! live, kept ordered the way an "ordered consumer" is.
//!
//! Why not async-nats's ordered consumer itself: it notices a consumer lost with its node
//! only after two missed heartbeats of 15 s, and when it recreates one before delivering
//! anything it starts from the stream's first message. This module does what it does
//! (memory, R1, no acks; a gap in the consumer sequence means something was lost, so a
//! fresh consumer starts after the last delivered event) with a short heartbeat, from the
//! subscriber's own position. It also makes pages (what is ready, up to [`PAGE`]), skips
//! anything at or before the last delivered event, and keeps trying to get a consumer
//! back for [`GIVE_UP_AFTER`] before it reports the error.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{Config, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use dealreg_events::{LogStream, Position, RecordedEvent, StoreError};
use futures_util::{FutureExt, StreamExt};

use crate::JetStreamStore;

/// Most events in one page of a subscription.
pub(crate) const PAGE: usize = 512;

/// How long the subscription keeps trying to get a consumer back before it reports the
/// error (and ends, as a [`LogStream`] does after an error).
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// How often the server says the consumer is alive while nothing comes; two missed ones
/// and a fresh consumer is made (its node may be gone).
const HEARTBEAT: Duration = Duration::from_secs(2);

struct State {
    store: JetStreamStore,
    /// The last sequence delivered.
    after: u64,
    messages: Option<Messages>,
    /// The consumer sequence of the last message the current consumer delivered.
    consumer_sequence: u64,
    /// When the current run of failures started.
    failing_since: Option<Instant>,
}

pub(crate) fn subscribe(store: JetStreamStore, after: Position) -> LogStream {
    let state = State {
        store,
        after: after.commit(),
        messages: None,
        consumer_sequence: 0,
        failing_since: None,
    };
    Box::pin(futures_util::stream::unfold(
        Some(state),
        |state| async move {
            let mut state = state?;
            match next_page(&mut state).await {
                Ok(page) => Some((Ok(page), Some(state))),
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

/// A consumer over every event subject from `after + 1`, and its messages. (A free
/// function, not a method: no `&State` may live across an await, as the message stream in
/// it is not `Sync`.)
async fn consumer(store: JetStreamStore, after: u64) -> Result<Messages, String> {
    let config = Config {
        filter_subject: store.inner.subjects.all(),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        },
        ack_policy: AckPolicy::None,
        max_deliver: 1,
        memory_storage: true,
        num_replicas: 1,
        inactive_threshold: Duration::from_secs(30),
        ..Default::default()
    };
    let consumer = store
        .inner
        .stream
        .create_consumer(config)
        .await
        .map_err(|e| format!("creating the consumer failed: {e}"))?;
    consumer
        .stream()
        .max_messages_per_batch(PAGE)
        .heartbeat(HEARTBEAT)
        .expires(HEARTBEAT * 5)
        .messages()
        .await
        .map_err(|e| format!("pulling messages failed: {e}"))
}

impl State {
    /// Notes a failure; the error to end with once failures lasted too long.
    async fn failed(&mut self, reason: String) -> Result<(), StoreError> {
        self.messages = None;
        self.consumer_sequence = 0;
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > GIVE_UP_AFTER {
            return Err(StoreError::Backend(format!(
                "the subscription could not read the log for {GIVE_UP_AFTER:?} ({reason}); subscribe again after position {} once NATS is reachable",
                self.after
            )));
        }
        tracing::warn!(after = self.after, %reason, "event subscription interrupted; resuming");
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok(())
    }

    /// Turns a delivered message into an event, skipping what was delivered before; false
    /// when the consumer skipped a message (a gap in its sequence), so it must be replaced.
    fn take(
        &mut self,
        message: async_nats::jetstream::Message,
        page: &mut Vec<RecordedEvent>,
    ) -> Result<bool, StoreError> {
        let info = message.info().map_err(|e| {
            StoreError::Backend(format!("a delivered message has no metadata: {e}"))
        })?;
        let (sequence, delivered) = (info.stream_sequence, info.consumer_sequence);
        if delivered != self.consumer_sequence + 1 {
            tracing::debug!(
                after = self.after,
                delivered,
                expected = self.consumer_sequence + 1,
                "event subscription: a gap in the consumer sequence; starting a fresh consumer"
            );
            return Ok(false);
        }
        self.consumer_sequence = delivered;
        if sequence <= self.after {
            return Ok(true);
        }
        let event = self.store.decode(
            message.subject.as_str(),
            sequence,
            message.headers.as_ref(),
            &message.payload,
        )?;
        self.after = sequence;
        page.push(event);
        Ok(true)
    }
}

async fn next_page(s: &mut State) -> Result<Vec<RecordedEvent>, StoreError> {
    loop {
        let mut messages = match s.messages.take() {
            Some(messages) => messages,
            None => match consumer(s.store.clone(), s.after).await {
                Ok(messages) => {
                    s.consumer_sequence = 0;
                    messages
                }
                Err(reason) => {
                    s.failed(reason).await?;
                    continue;
                }
            },
        };
        let mut page = Vec::new();
        let first = match messages.next().await {
            Some(Ok(message)) => s.take(message, &mut page)?,
            Some(Err(e)) => {
                s.failed(e.to_string()).await?;
                continue;
            }
            None => {
                s.failed("the consumer ended".into()).await?;
                continue;
            }
        };
        if !first {
            s.consumer_sequence = 0;
            continue;
        }
        s.failing_since = None;
        let mut healthy = true;
        while page.len() < PAGE {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => {
                    if !s.take(message, &mut page)? {
                        healthy = false;
                        break;
                    }
                }
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "event subscription: replacing its consumer");
                    healthy = false;
                    break;
                }
                Some(None) => {
                    healthy = false;
                    break;
                }
                None => break,
            }
        }
        if healthy {
            s.messages = Some(messages);
        } else {
            s.consumer_sequence = 0;
        }
        if !page.is_empty() {
            return Ok(page);
        }
    }
}
