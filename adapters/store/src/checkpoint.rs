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

use crate::{GlobalPosition, StoreError};

/// A saved read model: the state's bytes, the position it covers, and the version of the
/// fold that wrote it (a fold of another version must not serve it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: GlobalPosition,
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

/// Saved states by name (`pipeline`, `ledger`, `reactor/offboarding`...). Clones share
/// the storage (the runner writes a save while it folds on).
pub trait CheckpointStore: Clone + Send + Sync + 'static {
    /// The saved checkpoint of `name`, if any.
    fn load(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    /// Replaces the checkpoint of `name`: state, position and version in one atomic write.
    fn save(
        &self,
        name: &str,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes `rows` and replaces the checkpoint of `name` in one atomic write: a reader
    /// sees the rows of one save with its position, never part of a save.
    fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every row of `name`, by key.
    fn load_rows(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<StoredRow>, StoreError>> + Send;

    /// The rows of `name` that belong to `scope` (a partner), by key, with the position of
    /// the checkpoint they were read with (one consistent read).
    fn scoped_rows(
        &self,
        name: &str,
        scope: &str,
    ) -> impl Future<Output = Result<(GlobalPosition, Vec<StoredRow>), StoreError>> + Send;

    /// Forgets `name` (checkpoint and rows), so its next run starts from the origin.
    fn reset(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A saved read model in memory: its checkpoint and its rows (scope, bytes) by key.
type SavedView = (Checkpoint, BTreeMap<String, (Option<String>, Vec<u8>)>);

/// Checkpoints in memory, for tests and for the in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    saved: Arc<Mutex<HashMap<String, SavedView>>>,
}

impl MemoryCheckpoints {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved.get(name).map(|(checkpoint, _)| checkpoint.clone()))
    }

    async fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.save_rows(name, checkpoint, Vec::new()).await
    }

    async fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let view = saved
            .entry(name.to_string())
            .or_insert_with(|| (checkpoint.clone(), BTreeMap::new()));
        view.0 = checkpoint;
        for write in rows {
            match write.row {
                Some(row) => {
                    view.1.insert(write.key, (write.scope, row));
                }
                None => {
                    view.1.remove(&write.key);
                }
            }
        }
        Ok(())
    }

    async fn load_rows(&self, name: &str) -> Result<Vec<StoredRow>, StoreError> {
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
    ) -> Result<(GlobalPosition, Vec<StoredRow>), StoreError> {
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
            .unwrap_or((GlobalPosition::ORIGIN, Vec::new())))
    }

    async fn reset(&self, name: &str) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.remove(name);
        Ok(())
    }
}
