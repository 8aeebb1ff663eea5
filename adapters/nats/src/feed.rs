//! The change feeds on JetStream: one sink of the views host's feed
//! ([`dealreg_host::feed`]), which reads the outbox and decides what each audience gets.
//!
//! Each change is one message on `dealreg.feed.<view>.<table>[.partner.<id>]`, with the
//! change's id as `Nats-Msg-Id` (`<view>/<key>@<position>/<audience>`): a change handed
//! over again after a crash is dropped by JetStream inside the stream's duplicate window.
//! The changes leave the outbox only once JetStream acknowledged every message.

use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use dealreg_events::{Position, StoreError};
use dealreg_host::feed::{Audience, FeedError as SinkError, FeedSink, RowChange};
use serde::{Deserialize, Serialize};

use crate::subject;
/// How long JetStream keeps a message id to drop a re-publish.
pub const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the feed outbox cannot be read: {0}")]
    Store(#[from] StoreError),
    #[error("the feed stream {stream} cannot be set up: {reason}; check the account's JetStream limits and permissions")]
    Stream { stream: String, reason: String },
    #[error("a feed message was not acknowledged by JetStream: {0}; it stays in the outbox and is published again")]
    Publish(String),
}

/// One message of a feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedMessage {
    pub view: String,
    pub table: String,
    pub key: String,
    /// The log position of the save that changed the row.
    pub position: Position,
    /// The row as the view stores it (for a partner: its partner-safe form); `null` when
    /// the row was deleted, or withdrawn from this partner.
    pub row: Option<serde_json::Value>,
    pub deleted: bool,
}

/// Creates the feed stream, or updates its configuration (`replicas`: 3 on a cluster).
pub async fn ensure_stream(js: &jetstream::Context, replicas: usize) -> Result<(), FeedError> {
    let config = jetstream::stream::Config {
        name: subject::FEED_STREAM.into(),
        subjects: vec![subject::FEED_SUBJECTS.into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        description: Some("dealreg view row changes; see docs/NATS.md".into()),
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map(|_| ())
        .map_err(|e| FeedError::Stream {
            stream: subject::FEED_STREAM.into(),
            reason: e.to_string(),
        })
}

/// The JetStream feeds as a sink of the views host.
pub struct JetStreamFeed {
    js: jetstream::Context,
}

impl JetStreamFeed {
    pub fn new(js: jetstream::Context) -> Self {
        JetStreamFeed { js }
    }
}

impl FeedSink for JetStreamFeed {
    fn publish<'a>(
        &'a self,
        changes: &'a [RowChange],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(changes.len());
            for change in changes {
                let partner = match &change.audience {
                    Audience::Vendor => None,
                    Audience::Partner(id) => Some(id.as_str()),
                };
                let body = FeedMessage {
                    view: change.view.clone(),
                    table: change.table.clone(),
                    key: change.key.clone(),
                    position: change.position,
                    deleted: change.row.is_none(),
                    row: change.row.clone(),
                };
                let body = serde_json::to_vec(&body)
                    .map_err(|e| SinkError::Sink(format!("encoding: {e}")))?;
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", change.id().as_str());
                headers.insert("Dealreg-Position", change.position.to_string().as_str());
                let ack = self
                    .js
                    .publish_with_headers(
                        subject::feed(&change.view, &change.table, partner),
                        headers,
                        Bytes::from(body),
                    )
                    .await
                    .map_err(|e| SinkError::Sink(e.to_string()))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| SinkError::Sink(e.to_string()))?;
            }
            Ok(())
        })
    }
}
