//! A view rebuilt beside the serving one, and put in its place when complete.
//!
//! Why: a rebuild folds the whole log again, for minutes on a large one. Rebuilt in place
//! (its checkpoint and rows dropped first), the view would answer queries with nothing,
//! or with a part of the log, until it caught up. Rebuilt beside, under `<name>~next`,
//! readers keep the view as it was, whole, and get the rebuilt one, whole, from the one
//! write that swaps it in ([`CheckpointStore::swap_in`]). Its feed entries are written
//! by that swap too: every row of the rebuilt view, and a deletion for every row it no
//! longer has.
//!
//! [`Beside`] is the views store as the rebuild sees it: the views being rebuilt are
//! written and read under their `~next` names, and their saves publish nothing; every
//! other name passes through.

use std::collections::HashSet;
use std::sync::Arc;

use dealreg_events::Position;
use dealreg_views::{
    Checkpoint, CheckpointStore, FeedEntry, RowWrite, RowsAt, StoredRow, ViewsError,
};

/// The name a view is rebuilt under, beside the serving `name`.
pub fn built_name(name: &str) -> String {
    format!("{name}~next")
}

/// The views store with `names` rebuilt beside their serving views.
#[derive(Clone)]
pub struct Beside<K> {
    views: K,
    names: Arc<HashSet<String>>,
}

impl<K: CheckpointStore> Beside<K> {
    pub fn new<'a>(views: K, names: impl IntoIterator<Item = &'a str>) -> Beside<K> {
        Beside {
            views,
            names: Arc::new(names.into_iter().map(str::to_string).collect()),
        }
    }

    fn name(&self, name: &str) -> String {
        if self.names.contains(name) {
            built_name(name)
        } else {
            name.to_string()
        }
    }

    /// Puts the rebuilt view `name` in the place of the serving one (its feed entries
    /// written when it `publishes`). Call it once the rebuild saved its last state.
    pub async fn swap_in(&self, name: &str, publishes: bool) -> Result<(), ViewsError> {
        self.views.swap_in(name, &built_name(name), publishes).await
    }
}

impl<K: CheckpointStore> CheckpointStore for Beside<K> {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, ViewsError> {
        self.views.load(&self.name(name)).await
    }

    async fn save(&self, name: &str, checkpoint: Checkpoint) -> Result<(), ViewsError> {
        self.views.save(&self.name(name), checkpoint).await
    }

    async fn save_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        self.views
            .save_rows(&self.name(name), checkpoint, rows)
            .await
    }

    async fn load_rows(&self, name: &str) -> Result<Vec<StoredRow>, ViewsError> {
        self.views.load_rows(&self.name(name)).await
    }

    async fn scoped_rows(
        &self,
        name: &str,
        scope: &str,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        self.views.scoped_rows(&self.name(name), scope).await
    }

    async fn rows_after(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        scope: Option<&str>,
    ) -> Result<(Position, Vec<StoredRow>), ViewsError> {
        self.views
            .rows_after(&self.name(name), prefix, after, limit, scope)
            .await
    }

    async fn reset(&self, name: &str) -> Result<(), ViewsError> {
        self.views.reset(&self.name(name)).await
    }

    async fn caught_up(&self, name: &str) -> Result<(), ViewsError> {
        self.views.caught_up(&self.name(name)).await
    }

    /// A view rebuilt beside publishes nothing while it is built: its swap does.
    async fn save_published_rows(
        &self,
        name: &str,
        checkpoint: Checkpoint,
        rows: Vec<RowWrite>,
    ) -> Result<(), ViewsError> {
        if self.names.contains(name) {
            self.views
                .save_rows(&built_name(name), checkpoint, rows)
                .await
        } else {
            self.views.save_published_rows(name, checkpoint, rows).await
        }
    }

    async fn rows_by_key(&self, name: &str, keys: Vec<String>) -> Result<RowsAt, ViewsError> {
        self.views.rows_by_key(&self.name(name), keys).await
    }

    async fn feed_after(&self, after_seq: u64, limit: usize) -> Result<Vec<FeedEntry>, ViewsError> {
        self.views.feed_after(after_seq, limit).await
    }

    async fn feed_published(&self, seq: u64) -> Result<(), ViewsError> {
        self.views.feed_published(seq).await
    }

    async fn feed_published_elsewhere(
        &self,
        view: &str,
        position: Position,
    ) -> Result<(), ViewsError> {
        self.views.feed_published_elsewhere(view, position).await
    }

    async fn swap_in(&self, name: &str, built: &str, publish: bool) -> Result<(), ViewsError> {
        self.views.swap_in(name, built, publish).await
    }
}
