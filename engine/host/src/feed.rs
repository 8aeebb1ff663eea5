//! The change feeds, whatever carries them: every row change of a published view, for the
//! vendor and, in its partner-safe form, for the partner the row belongs to.
//!
//! Why an outbox: a row change and its outbox entry are written in one transaction (the
//! views store's `save_published_rows`), and an entry leaves the outbox only after the
//! sink said it has its changes ([`FeedSink::publish`] returned). A crash between the two
//! hands the same changes to the sink again, with the same ids
//! (`<view>/<key>@<position>/<audience>`), which a sink uses to drop a repeat (JetStream's
//! `Nats-Msg-Id`, a CRM's upsert by external id). Nothing is lost.
//!
//! An entry names a row, not its bytes: the sink gets the row as stored when it is
//! published. Several changes of one row that wait together are sent once, as the row's
//! latest state (a CRM mirrors rows; the history of every change is the log). A row that
//! moves to another partner is withdrawn from the one it left with a deletion. Which
//! tables are published, and what a partner sees of them, each projection declares
//! (`Projection::PUBLISHED`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use dealreg_events::{Position, StoreError};
use dealreg_views::{CheckpointStore, FeedEntry};

use dealreg_projections::Published;

use crate::registry::Catalogue;

/// Entries published per round.
pub const BATCH: usize = 512;

/// Who a change is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    Vendor,
    /// A partner, by id: it gets the row's partner-safe form, or a deletion when the row
    /// left it.
    Partner(String),
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::Vendor => f.write_str("vendor"),
            Audience::Partner(id) => write!(f, "partner.{id}"),
        }
    }
}

/// One row change for one audience.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub view: String,
    pub table: String,
    /// `<table>/<key>`, as the view stores it.
    pub key: String,
    /// The log position of the save that changed the row.
    pub position: Position,
    pub audience: Audience,
    /// The row (for a partner, its partner-safe form); `None` when it was deleted, or
    /// withdrawn from this partner.
    pub row: Option<serde_json::Value>,
}

impl RowChange {
    /// The change's id: the same change handed over again has the same one.
    pub fn id(&self) -> String {
        format!(
            "{}/{}@{}/{}",
            self.view, self.key, self.position, self.audience
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the feed outbox cannot be read: {0}")]
    Store(#[from] StoreError),
    #[error("the feed outbox cannot be read: {0}")]
    Views(#[from] dealreg_views::ViewsError),
    #[error("the feed could not take the changes ({0}); they stay in the outbox and are handed over again")]
    Sink(String),
}

/// Where the changes go: JetStream subjects, a CRM. `publish` returns once the sink holds
/// every change durably (then they leave the outbox).
pub trait FeedSink: Send + Sync + 'static {
    fn publish<'a>(
        &'a self,
        changes: &'a [RowChange],
    ) -> Pin<Box<dyn Future<Output = Result<(), FeedError>> + Send + 'a>>;
}

/// The changes one outbox entry makes: the vendor's, the owning partner's, and a
/// withdrawal from the partner the row left. `None` when the table is not published
/// (by the standard catalogue).
pub fn changes_of(entry: &FeedEntry, row: Option<&serde_json::Value>) -> Option<Vec<RowChange>> {
    changes_in(&standard(), entry, row)
}

/// The standard catalogue, for what only reads its published tables.
fn standard() -> Catalogue<dealreg_events::memory::MemoryStore, dealreg_views::MemoryCheckpoints> {
    Catalogue::standard()
}

/// The table of a stored key (`<table>/<key>`).
pub fn table_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(table, _)| table)
}

/// [`changes_of`] with the published tables of `catalogue`.
pub fn changes_in<S, K>(
    catalogue: &Catalogue<S, K>,
    entry: &FeedEntry,
    row: Option<&serde_json::Value>,
) -> Option<Vec<RowChange>> {
    let published = catalogue.published(&entry.view, table_of(&entry.key))?;
    Some(row_changes(&published, entry, row))
}

/// The changes of a row of the published table `published` that `entry` names, now
/// `row`: the vendor's, in its partner-safe form for the partner the row belongs to (its
/// scope), and a withdrawal from the partner it left. The one partner rule of every feed
/// (the NATS feed, the CRM adapters' views file).
pub fn row_changes(
    published: &Published,
    entry: &FeedEntry,
    row: Option<&serde_json::Value>,
) -> Vec<RowChange> {
    let change = |audience, row| RowChange {
        view: entry.view.clone(),
        table: published.table.to_string(),
        key: entry.key.clone(),
        position: entry.position,
        audience,
        row,
    };
    let mut out = vec![change(Audience::Vendor, row.cloned())];
    if let Some(form) = published.for_partners {
        if let Some(partner) = &entry.scope {
            out.push(change(
                Audience::Partner(partner.clone()),
                row.and_then(form),
            ));
        }
        if let Some(left) = &entry.previous_scope {
            if entry.scope.as_ref() != Some(left) {
                out.push(change(Audience::Partner(left.clone()), None));
            }
        }
    }
    out
}

/// What one [`publish_pending`] handed over.
#[derive(Debug, Default)]
pub struct HandedOver {
    /// Outbox entries that left the outbox.
    pub entries: usize,
    /// Per view, the newest position among them: what another host's outbox may drop
    /// ([`dealreg_views::SharedDuties`]).
    pub through: BTreeMap<String, Position>,
}

/// Hands what waits in the outbox (up to one batch) to `sink`, and removes it once the
/// sink took it.
pub async fn publish_pending<K: CheckpointStore>(
    views: &K,
    sink: &dyn FeedSink,
) -> Result<HandedOver, FeedError> {
    publish_pending_in(&standard(), views, sink).await
}

/// [`publish_pending`] with the published tables of `catalogue`.
pub async fn publish_pending_in<S, C, K: CheckpointStore>(
    catalogue: &Catalogue<S, C>,
    views: &K,
    sink: &dyn FeedSink,
) -> Result<HandedOver, FeedError> {
    let entries = views.feed_after(0, BATCH).await?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(HandedOver::default());
    };
    let published = |e: &FeedEntry| catalogue.published(&e.view, table_of(&e.key)).is_some();
    // The latest entry of each published row in this batch; earlier ones are the same
    // row again. Entries of other tables leave the outbox unpublished.
    let mut latest: HashMap<(&str, &str), u64> = HashMap::new();
    for entry in entries.iter().filter(|e| published(e)) {
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
        let (_, found) = views.rows_by_key(view, keys.clone()).await?;
        for (key, row) in keys.into_iter().zip(found) {
            let row = row.and_then(|bytes| serde_json::from_slice(&bytes).ok());
            rows.insert((view.to_string(), key), row);
        }
    }
    let mut changes = Vec::new();
    for entry in entries.iter().filter(|e| latest_of(e) == Some(e.seq)) {
        let row = rows
            .get(&(entry.view.clone(), entry.key.clone()))
            .and_then(Option::as_ref);
        changes.extend(changes_in(catalogue, entry, row).unwrap_or_default());
    }
    if !changes.is_empty() {
        sink.publish(&changes).await?;
    }
    views.feed_published(last).await?;
    let mut through: BTreeMap<String, Position> = BTreeMap::new();
    for entry in &entries {
        let newest = through.entry(entry.view.clone()).or_insert(entry.position);
        *newest = (*newest).max(entry.position);
    }
    Ok(HandedOver {
        entries: entries.len(),
        through,
    })
}
