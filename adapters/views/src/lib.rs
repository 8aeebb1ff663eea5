//! Where read models keep their state and the log position it covers.
//!
//! Why beside the event store: a projection's state and its checkpoint must change
//! together or not at all, so each backend keeps them in one atomic write of its own
//! (SQLite: one transaction of the store's file). The runner that feeds projections only
//! sees this trait, so it runs unchanged on every backend.
//!
//! A saved read model is its *meta* (a small blob: policy, counters) and its *rows* (one
//! per registration, account, ledger entry...). Rows are written as they change, so a save
//! costs what changed since the last one, not the whole state; a row may name the partner
//! it belongs to (its *scope*), so one partner's rows can be read without the rest.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

pub mod conformance;

use dealreg_events::Position;

/// What a views store, a lease or the shared duties answer when they fail. Why a type of
/// its own and not the event store's: a views store has failures a log does not (a lost
/// lease), and none of the log's (an expected version).
#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("the views store failed: {0}")]
    Backend(String),
    #[error("the views store is closed; reopen it")]
    Closed,
    /// A save fenced by a lease found the lease held by another process (or expired):
    /// nothing was written. Why a variant: the holder must stop writing that view, not retry.
    #[error("the lease `{lease}` is no longer held by this process; another process writes the views now, nothing was saved")]
    LeaseLost { lease: String },
}

/// A views store kept beside the log (in the same SQLite file, say) fails as the log's
/// store does: the same backend, the same words.
impl From<dealreg_events::StoreError> for ViewsError {
    fn from(e: dealreg_events::StoreError) -> Self {
        match e {
            dealreg_events::StoreError::Closed => ViewsError::Closed,
            other => ViewsError::Backend(other.to_string()),
        }
    }
}

/// A saved read model: the state's bytes, the position it covers, and the version of the
/// fold that wrote it (a fold of another version must not serve it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub version: u32,
    pub state: Vec<u8>,
}

/// One row of a read model as a save writes it: `row: None` deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWrite {
    /// `<table>/<key>`, unique within the read model.
    pub key: String,
    /// The partner the row belongs to, if any.
    pub scope: Option<String>,
    pub row: Option<Vec<u8>>,
}

/// A stored row: its key and bytes.
pub type StoredRow = (String, Vec<u8>);

/// One row change waiting in the feed outbox: written in the transaction of the save that
/// changed the row, removed once published. It names the row, not its bytes: the feed
/// publishes the row as stored when it is published (a later change of the same row has an
/// entry of its own), so the outbox stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Order of the outbox, increasing.
    pub seq: u64,
    pub view: String,
    pub key: String,
    /// The row's scope after the change (`None`: unscoped, or deleted).
    pub scope: Option<String>,
    /// Its scope before the change: a row that moved to another partner is withdrawn
    /// from the one it left.
    pub previous_scope: Option<String>,
    /// The position of the save that changed it.
    pub position: Position,
}

/// Exclusive, expiring leases: which of several processes sharing a store writes the
/// views and publishes the feed. Why leases: two folds saving rows of one view would mix
/// rows of different positions; a save fenced by a lease is refused once the lease is lost.
pub trait Leases: Send + Sync + 'static {
    /// Takes or renews `lease` for `holder` until `now + ttl`; `false` when another holder
    /// has it and it has not expired.
    fn try_acquire(
        &self,
        lease: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, ViewsError>> + Send;

    /// Gives `lease` up, if `holder` has it.
    fn release(
        &self,
        lease: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;
}

/// The duties one process of a whole deployment performs (publishing the feeds, the
/// follow-up reactor, the timekeeper) when every host keeps its own views file beside a
/// log they share (JetStream, KurrentDB): who performs them, a lease kept beside the log,
/// and how far each got, so the process that takes them over goes on from there rather
/// than from its own file's (older) checkpoints.
///
/// Why: each host folds its own views (its queries answer from them), and every host's
/// outbox holds the same row changes with the same ids; one process publishes them, and
/// the others drop what it marked published. Marks are written after the work they record,
/// so a takeover repeats at most the work of the last moments (feed messages carry their
/// id, which JetStream's duplicate window drops; follow-ups carry their idempotency key).
pub trait SharedDuties: Leases + Clone {
    /// Records that duty `name` (`feed/pipeline`, `reactor`...) is done through
    /// `position`. Never moves a mark back.
    fn mark_done(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// How far duty `name` is done; `None` when it was never marked.
    fn done_through(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, ViewsError>> + Send;
}

/// No shared duties: the views file is the deployment's only one (a SQLite log), so
/// whoever holds its lease performs them. Never held, never marked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unshared;

impl Leases for Unshared {
    async fn try_acquire(
        &self,
        _lease: &str,
        _holder: &str,
        _now: chrono::DateTime<chrono::Utc>,
        _ttl: std::time::Duration,
    ) -> Result<bool, ViewsError> {
        Ok(false)
    }

    async fn release(&self, _lease: &str, _holder: &str) -> Result<(), ViewsError> {
        Ok(())
    }
}

impl SharedDuties for Unshared {
    async fn mark_done(&self, _name: &str, _position: Position) -> Result<(), ViewsError> {
        Ok(())
    }

    async fn done_through(&self, _name: &str) -> Result<Option<Position>, ViewsError> {
        Ok(None)
    }
}

/// Saved states by name (`pipeline`, `ledger`, `reactor/offboarding`...). Clones share
/// the storage (the runner writes a save while it folds on).
pub trait CheckpointStore: Clone + Send + Sync + 'static {
    /// The saved checkpoint of `name`, if any.
    fn load(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, ViewsError>> + Send;

    /// Replaces the checkpoint of `name`: state, position and version in one atomic write.
    fn save(
        &self,
        name: &str,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// Writes `rows` and replaces the checkpoint of `name` in one atomic write: a reader
    /// sees the rows of one save with its position, never part of a save.
    fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// Every row of `name`, by key.
    fn load_rows(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<StoredRow>, ViewsError>> + Send;

    /// The rows of `name` that belong to `scope` (a partner), by key, with the position of
    /// the checkpoint they were read with (one consistent read).
    fn scoped_rows(
        &self,
        name: &str,
        scope: &str,
    ) -> impl Future<Output = Result<(Position, Vec<StoredRow>), ViewsError>> + Send;

    /// One page of the rows of `name` whose keys begin with `prefix` (a table's
    /// `<table>/`): after the key `after` (`None`: from the first), in key order, at most
    /// `limit`, only those of `scope` when given; with the position of the checkpoint they
    /// were read at (one consistent read). Why: a query answers a page of a view from the
    /// store, at a cost of the page and not of the whole view.
    fn rows_after(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        scope: Option<&str>,
    ) -> impl Future<Output = Result<(Position, Vec<StoredRow>), ViewsError>> + Send;

    /// Forgets `name` (checkpoint and rows), so its next run starts from the origin. Its
    /// outbox entries stay and are published; the rebuild that follows publishes every
    /// row again.
    fn reset(&self, name: &str) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// Tells the store that the fold of `name` has caught up with the log: a store that
    /// writes the rows of a fold from the origin in bulk (the SQLite store leaves out the
    /// scope index until then and builds it once, at the end) makes them ready for
    /// queries now. Stores without such a bulk mode do nothing.
    fn caught_up(&self, name: &str) -> impl Future<Output = Result<(), ViewsError>> + Send {
        let _ = name;
        std::future::ready(Ok(()))
    }

    /// Like [`CheckpointStore::save_rows`], and every row written also gets an entry in
    /// the feed outbox, in the same atomic write.
    fn save_published_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// The rows of `name` with these keys, as stored now (`None`: no such row), with the
    /// position of the view's checkpoint (one consistent read).
    fn rows_by_key(
        &self,
        name: &str,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<RowsAt, ViewsError>> + Send;

    /// Up to `limit` outbox entries after `after_seq`, in order.
    fn feed_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FeedEntry>, ViewsError>> + Send;

    /// Removes the outbox entries up to `seq`: they are published.
    fn feed_published(&self, seq: u64) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// Removes the outbox entries of `view` at or before `position`: another process of
    /// the deployment published them (see [`SharedDuties`]).
    fn feed_published_elsewhere(
        &self,
        view: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;

    /// Puts the view saved as `built` (a fold rebuilt beside the serving one) in the place
    /// of `name`, in one atomic write: `built`'s checkpoint and rows become `name`'s and
    /// `built` is gone; `name`'s previous rows are retired. Why: readers of `name` see the
    /// old view, complete, until this write and the new one, complete, after it; never a
    /// view half rebuilt. With `publish`, every row of the new view gets an outbox entry,
    /// and every row the new view no longer has one that deletes it, so the feed's
    /// readers hold the rebuilt view afterwards (as a rebuild in place published it).
    fn swap_in(
        &self,
        name: &str,
        built: &str,
        publish: bool,
    ) -> impl Future<Output = Result<(), ViewsError>> + Send;
}

/// Rows read by key (`None`: no such row) and the view's checkpoint position they are
/// current at.
pub type RowsAt = (Position, Vec<Option<Vec<u8>>>);

/// Who holds each lease, and until when.
type LeaseHolders = HashMap<String, (String, chrono::DateTime<chrono::Utc>)>;

/// A saved read model in memory: its checkpoint and its rows (scope, bytes) by key.
type SavedView = (Checkpoint, BTreeMap<String, (Option<String>, Vec<u8>)>);

/// Checkpoints in memory, for tests and for the in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    saved: Arc<Mutex<HashMap<String, SavedView>>>,
    /// The last sequence number given, and the entries not yet published.
    outbox: Arc<Mutex<(u64, Vec<FeedEntry>)>>,
    leases: Arc<Mutex<LeaseHolders>>,
}

impl MemoryCheckpoints {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
        published: bool,
    ) -> Result<(), ViewsError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        let view = saved
            .entry(name.to_string())
            .or_insert_with(|| (checkpoint.clone(), BTreeMap::new()));
        let position = checkpoint.position;
        view.0 = checkpoint;
        for write in rows {
            let scope = write.row.as_ref().and(write.scope.clone());
            let previous = match write.row {
                Some(row) => view.1.insert(write.key.clone(), (write.scope.clone(), row)),
                None => view.1.remove(&write.key),
            };
            if published {
                outbox.0 += 1;
                let seq = outbox.0;
                outbox.1.push(FeedEntry {
                    seq,
                    view: name.to_string(),
                    key: write.key,
                    scope,
                    previous_scope: previous.and_then(|(scope, _)| scope),
                    position,
                });
            }
        }
        Ok(())
    }
}

impl CheckpointStore for MemoryCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, ViewsError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved.get(name).map(|(checkpoint, _)| checkpoint.clone()))
    }

    async fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), ViewsError> {
        self.write(name, checkpoint, Vec::new(), false)
    }

    async fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        self.write(name, checkpoint, rows, false)
    }

    async fn save_published_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        self.write(name, checkpoint, rows, true)
    }

    async fn load_rows(&self, name: &str) -> Result<Vec<StoredRow>, ViewsError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved
            .get(name)
            .map(|(_, rows)| {
                rows.iter()
                    .map(|(key, (_, row))| (key.clone(), row.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn scoped_rows(
        &self,
        name: &str,
        scope: &str,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved
            .get(name)
            .map(|(checkpoint, rows)| {
                let rows = rows
                    .iter()
                    .filter(|(_, (s, _))| s.as_deref() == Some(scope))
                    .map(|(key, (_, row))| (key.clone(), row.clone()))
                    .collect();
                (checkpoint.position, rows)
            })
            .unwrap_or((Position::ORIGIN, Vec::new())))
    }

    async fn rows_by_key(&self, name: &str, keys: Vec<String>) -> Result<RowsAt, ViewsError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match saved.get(name) {
            Some((checkpoint, rows)) => (
                checkpoint.position,
                keys.iter()
                    .map(|k| rows.get(k).map(|(_, row)| row.clone()))
                    .collect(),
            ),
            None => (Position::ORIGIN, keys.iter().map(|_| None).collect()),
        })
    }

    async fn rows_after(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        scope: Option<&str>,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((checkpoint, rows)) = saved.get(name) else {
            return Ok((Position::ORIGIN, Vec::new()));
        };
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after.to_string()),
            None => std::ops::Bound::Included(prefix.to_string()),
        };
        let page = rows
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, (s, _))| scope.is_none_or(|scope| s.as_deref() == Some(scope)))
            .take(limit)
            .map(|(key, (_, row))| (key.clone(), row.clone()))
            .collect();
        Ok((checkpoint.position, page))
    }

    async fn reset(&self, name: &str) -> Result<(), ViewsError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.remove(name);
        Ok(())
    }

    async fn feed_after(&self, after_seq: u64, limit: usize) -> Result<Vec<FeedEntry>, ViewsError> {
        let outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(outbox
            .1
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn feed_published(&self, seq: u64) -> Result<(), ViewsError> {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.1.retain(|e| e.seq > seq);
        Ok(())
    }

    async fn feed_published_elsewhere(
        &self,
        view: &str,
        position: Position,
    ) -> Result<(), ViewsError> {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        outbox.1.retain(|e| e.view != view || e.position > position);
        Ok(())
    }

    async fn swap_in(&self, name: &str, built: &str, publish: bool) -> Result<(), ViewsError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((checkpoint, rows)) = saved.remove(built) else {
            return Err(ViewsError::Backend(format!(
                "there is no view `{built}` to put in the place of `{name}`"
            )));
        };
        let previous = saved.remove(name).map(|(_, rows)| rows).unwrap_or_default();
        if publish {
            let position = checkpoint.position;
            let mut entry = |key: &String, scope: Option<String>, previous_scope| {
                outbox.0 += 1;
                let seq = outbox.0;
                outbox.1.push(FeedEntry {
                    seq,
                    view: name.to_string(),
                    key: key.clone(),
                    scope,
                    previous_scope,
                    position,
                });
            };
            for (key, (scope, _)) in &rows {
                entry(
                    key,
                    scope.clone(),
                    previous.get(key).and_then(|(s, _)| s.clone()),
                );
            }
            for (key, (scope, _)) in &previous {
                if !rows.contains_key(key) {
                    entry(key, None, scope.clone());
                }
            }
        }
        saved.insert(name.to_string(), (checkpoint, rows));
        Ok(())
    }
}

impl Leases for MemoryCheckpoints {
    async fn try_acquire(
        &self,
        lease: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, ViewsError> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        match leases.get(lease) {
            Some((other, expires)) if other != holder && *expires > now => Ok(false),
            _ => {
                leases.insert(lease.to_string(), (holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn release(&self, lease: &str, holder: &str) -> Result<(), ViewsError> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.get(lease).is_some_and(|(h, _)| h == holder) {
            leases.remove(lease);
        }
        Ok(())
    }
}
