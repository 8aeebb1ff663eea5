//! Where read models keep their state and the log position it covers.
//!
//! Why beside the event store: a projection's state and its checkpoint must change
//! together or not at all, so each backend keeps them in one atomic write of its own
//! (SQLite: one row of the store's file). The runner that feeds projections only sees this
//! trait, so it runs unchanged on every backend.

use std::collections::HashMap;
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

/// Saved states by name (`pipeline`, `ledger`, `reactor/offboarding`...).
pub trait CheckpointStore: Send + Sync + 'static {
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

    /// Forgets `name`, so its next run starts from the origin.
    fn reset(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Checkpoints in memory, for tests and for the in-memory store.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    saved: Arc<Mutex<HashMap<String, Checkpoint>>>,
}

impl MemoryCheckpoints {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved.get(name).cloned())
    }

    async fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.insert(name.to_string(), checkpoint);
        Ok(())
    }

    async fn reset(&self, name: &str) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.remove(name);
        Ok(())
    }
}
