//! The change feeds: every row change of a published view, on JetStream.
//!
//! Why an outbox: a row change and its outbox entry are written in one transaction (the
//! checkpoint store's `save_published_rows`), and an entry leaves the outbox only after
//! JetStream acknowledged its messages. A crash between the two re-publishes, and
//! JetStream drops the repeat by its `Nats-Msg-Id` (`<view>/<key>@<position>/<audience>`)
//! inside the stream's duplicate window. Nothing is lost, nothing is seen twice.
//!
//! An entry names a row, not its bytes: the publisher sends the row as stored when it
//! publishes. Several changes of one row that wait together are sent once, as the row's
//! latest state (a CRM mirrors rows; the history of every change is the log). A row that
//! moves to another partner is withdrawn from the one it left with a deletion.

use std::collections::{BTreeMap, HashMap};

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use dealreg_events::StoreError;
use dealreg_projections::pipeline::{PartnerRow, VendorRow};
use dealreg_views::{CheckpointStore, FeedEntry};
use serde::{Deserialize, Serialize};

use crate::subject;

/// Entries published per round.
const BATCH: usize = 512;
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
    pub position: u64,
    /// The row as the view stores it (for a partner: its partner-safe form); `null` when
    /// the row was deleted, or withdrawn from this partner.
    pub row: Option<serde_json::Value>,
    pub deleted: bool,
}

/// Creates the feed stream, or updates its configuration.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<(), FeedError> {
    let config = jetstream::stream::Config {
        name: subject::FEED_STREAM.into(),
        subjects: vec![subject::FEED_SUBJECTS.into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
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

/// The partner-safe form of a row, or `None` when the row is not for partners at all.
fn partner_safe(view: &str, table: &str, row: &serde_json::Value) -> Option<serde_json::Value> {
    match (view, table) {
        ("pipeline", "registration") => {
            let vendor: VendorRow = serde_json::from_value(row.clone()).ok()?;
            serde_json::to_value(PartnerRow::from(&vendor)).ok()
        }
        // A partner's own commission entries and balances are its to see.
        ("ledger", "entry" | "balance") => Some(row.clone()),
        _ => None,
    }
}

/// A message to publish: subject, id and body.
struct Outgoing {
    subject: String,
    id: String,
    body: FeedMessage,
}

fn messages(entry: &FeedEntry, row: Option<serde_json::Value>) -> Vec<Outgoing> {
    let (table, _) = entry
        .key
        .split_once('/')
        .unwrap_or((entry.key.as_str(), ""));
    let message = |row: Option<serde_json::Value>| FeedMessage {
        view: entry.view.clone(),
        table: table.to_string(),
        key: entry.key.clone(),
        position: entry.position.0,
        deleted: row.is_none(),
        row,
    };
    let id = |audience: &str| {
        format!(
            "{}/{}@{}/{audience}",
            entry.view, entry.key, entry.position.0
        )
    };
    let mut out = vec![Outgoing {
        subject: subject::feed(&entry.view, table, None),
        id: id("vendor"),
        body: message(row.clone()),
    }];
    let safe = row
        .as_ref()
        .and_then(|r| partner_safe(&entry.view, table, r));
    let for_partners = partner_safe_table(&entry.view, table);
    if let (Some(partner), true) = (&entry.scope, for_partners) {
        out.push(Outgoing {
            subject: subject::feed(&entry.view, table, Some(partner)),
            id: id(&format!("partner.{partner}")),
            body: message(safe),
        });
    }
    if let (Some(left), true) = (&entry.previous_scope, for_partners) {
        if entry.scope.as_ref() != Some(left) {
            out.push(Outgoing {
                subject: subject::feed(&entry.view, table, Some(left)),
                id: id(&format!("partner.{left}")),
                body: message(None),
            });
        }
    }
    out
}

/// The tables published to the feeds: the ones a CRM mirrors. The others are a view's
/// own lookup structures (the conflict view's name, label and first-word indexes, the
/// ledger's tiers and won deals), whose changes would only load JetStream: a submission
/// changes three of them for every row a CRM wants.
pub const FEED_TABLES: &[(&str, &str)] = &[
    ("pipeline", "registration"),
    ("pipeline", "partner"),
    ("ledger", "entry"),
    ("ledger", "balance"),
    ("conflicts", "account"),
    ("conflicts", "duplicate"),
];

fn published_table(view: &str, key: &str) -> bool {
    let table = key.split_once('/').map_or(key, |(table, _)| table);
    FEED_TABLES.iter().any(|(v, t)| *v == view && *t == table)
}

/// Whether partners get the rows of this table (in their partner-safe form).
fn partner_safe_table(view: &str, table: &str) -> bool {
    matches!(
        (view, table),
        ("pipeline", "registration") | ("ledger", "entry" | "balance")
    )
}

/// Publishes what waits in the outbox, up to one batch, and removes it once JetStream
/// acknowledged every message. Returns how many entries it published.
pub async fn publish_pending<K: CheckpointStore>(
    js: &jetstream::Context,
    checkpoints: &K,
) -> Result<usize, FeedError> {
    let entries = checkpoints.feed_after(0, BATCH).await?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    // The latest entry of each published row in this batch; earlier ones are the same
    // row again. Entries of other tables leave the outbox unpublished.
    let mut latest: HashMap<(&str, &str), u64> = HashMap::new();
    for entry in entries.iter().filter(|e| published_table(&e.view, &e.key)) {
        latest.insert((entry.view.as_str(), entry.key.as_str()), entry.seq);
    }
    let latest_of = |entry: &FeedEntry| {
        latest
            .get(&(entry.view.as_str(), entry.key.as_str()))
            .copied()
    };
    let mut keys: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| latest_of(e) == Some(e.seq)) {
        keys.entry(entry.view.as_str())
            .or_default()
            .push(entry.key.clone());
    }
    let mut rows: HashMap<(String, String), Option<serde_json::Value>> = HashMap::new();
    for (view, keys) in keys {
        let (_, found) = checkpoints.rows_by_key(view, keys.clone()).await?;
        for (key, row) in keys.into_iter().zip(found) {
            let row = row.and_then(|bytes| serde_json::from_slice(&bytes).ok());
            rows.insert((view.to_string(), key), row);
        }
    }
    let mut acks = Vec::new();
    for entry in &entries {
        if latest_of(entry) != Some(entry.seq) {
            continue;
        }
        let row = rows
            .get(&(entry.view.clone(), entry.key.clone()))
            .cloned()
            .flatten();
        for out in messages(entry, row) {
            let body = serde_json::to_vec(&out.body)
                .map_err(|e| FeedError::Publish(format!("encoding: {e}")))?;
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", out.id.as_str());
            headers.insert("Dealreg-Position", entry.position.0.to_string().as_str());
            let ack = js
                .publish_with_headers(out.subject, headers, Bytes::from(body))
                .await
                .map_err(|e| FeedError::Publish(e.to_string()))?;
            acks.push(ack);
        }
    }
    for ack in acks {
        ack.await.map_err(|e| FeedError::Publish(e.to_string()))?;
    }
    checkpoints.feed_published(last).await?;
    Ok(entries.len())
}
