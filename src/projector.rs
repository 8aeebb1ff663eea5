//! The projection runner: feeds a pure projection from the log and checkpoints it.
//!
//! Why state and checkpoint are one row: the projection's folded state and the position it
//! has folded up to are written by one SQL statement in the store's own SQLite file, so
//! they can only change together. A runner killed at any moment resumes from the last
//! saved (position, state) pair: no event is skipped and none is counted twice.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use dealreg_projections::Projection;
use dealreg_store::{EventStore, GlobalPosition, LogPages};
use rusqlite::{params, Connection, OptionalExtension};

use crate::engine::decode_event;
use crate::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("view storage failed: {0}; check the store file and its permissions")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the saved state of projection `{name}` cannot be read ({reason}); run `dealreg rebuild {name}`")]
    Corrupt { name: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Where projections keep their state and checkpoints: a table in the store's file.
pub struct ViewStore {
    conn: Mutex<Connection>,
}

impl ViewStore {
    pub fn open(path: impl AsRef<Path>) -> Result<ViewStore, ViewError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS projection_state (
                name     TEXT PRIMARY KEY,
                position INTEGER NOT NULL,
                state    BLOB    NOT NULL
            ) WITHOUT ROWID;",
        )?;
        Ok(ViewStore {
            conn: Mutex::new(conn),
        })
    }

    /// The saved state of `P` and the position it covers; the empty state at the origin
    /// when nothing was saved.
    pub fn load<P: Projection>(&self) -> Result<(GlobalPosition, P), ViewError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let row: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT position, state FROM projection_state WHERE name = ?1",
                params![P::NAME],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok((GlobalPosition::ORIGIN, P::default())),
            Some((position, bytes)) => {
                let state = serde_json::from_slice(&bytes).map_err(|e| ViewError::Corrupt {
                    name: P::NAME.into(),
                    reason: e.to_string(),
                })?;
                Ok((GlobalPosition(position as u64), state))
            }
        }
    }

    /// Saves state and checkpoint together (one statement: atomic).
    pub fn save<P: Projection>(
        &self,
        position: GlobalPosition,
        state: &P,
    ) -> Result<(), ViewError> {
        let bytes = serde_json::to_vec(state).map_err(|e| ViewError::Corrupt {
            name: P::NAME.into(),
            reason: e.to_string(),
        })?;
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "INSERT INTO projection_state (name, position, state) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET position = excluded.position, state = excluded.state",
            params![P::NAME, position.0 as i64, bytes],
        )?;
        Ok(())
    }

    /// Forgets `P`'s state so the next run rebuilds it from the log.
    pub fn reset<P: Projection>(&self) -> Result<(), ViewError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "DELETE FROM projection_state WHERE name = ?1",
            params![P::NAME],
        )?;
        Ok(())
    }
}

/// How far a catch-up got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub position: GlobalPosition,
    pub head: GlobalPosition,
    pub events: u64,
}

/// Saves during a long catch-up are at least this far apart: each save writes the whole
/// state, so saving by event count alone made a 1M-event rebuild spend most of its time
/// serialising (26k events/s with a save every 50k events, 140k events/s without).
pub const MIN_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Brings `P` up to the log's head from its checkpoint, saving after every
/// `checkpoint_every` events (but at most once per [`MIN_CHECKPOINT_INTERVAL`]) and at the
/// end. `stop_after` ends the run after that many events *without* the final save, exactly
/// as a crash would (tests use it; `None` in service).
pub async fn catch_up<P: Projection, S: EventStore>(
    store: &S,
    views: &ViewStore,
    checkpoint_every: u64,
    stop_after: Option<u64>,
    progress: impl FnMut(Progress),
) -> Result<(GlobalPosition, P), ViewError> {
    catch_up_with(
        store,
        views,
        checkpoint_every,
        MIN_CHECKPOINT_INTERVAL,
        stop_after,
        progress,
    )
    .await
}

/// [`catch_up`] with an explicit minimum time between saves (tests pass zero so that
/// resuming from a mid-stream checkpoint is exercised).
pub async fn catch_up_with<P: Projection, S: EventStore>(
    store: &S,
    views: &ViewStore,
    checkpoint_every: u64,
    min_interval: std::time::Duration,
    stop_after: Option<u64>,
    mut progress: impl FnMut(Progress),
) -> Result<(GlobalPosition, P), ViewError> {
    let (mut position, mut state) = views.load::<P>()?;
    let head = *store.head().borrow();
    let mut pages = LogPages::new(store, position, 2048);
    let mut events = 0u64;
    let mut last_save = std::time::Instant::now();
    while let Some(page) = pages.next_page().await.map_err(EngineError::from)? {
        for recorded in &page {
            state.apply(recorded.position.0, &decode_event(recorded)?);
            position = recorded.position;
            events += 1;
            if stop_after == Some(events) {
                return Ok((position, state));
            }
            if events.is_multiple_of(checkpoint_every.max(1)) {
                if last_save.elapsed() >= min_interval {
                    views.save(position, &state)?;
                    last_save = std::time::Instant::now();
                }
                progress(Progress {
                    position,
                    head,
                    events,
                });
            }
        }
    }
    views.save(position, &state)?;
    progress(Progress {
        position,
        head,
        events,
    });
    Ok((position, state))
}

/// Keeps `P` up to date as events arrive: catches up, then waits for the store's head to
/// move (or `poll`, for appends made by other processes, which this process's head watch
/// does not see), and catches up again, until `stop` resolves. Every catch-up ends with a
/// save, so a follower killed at any moment resumes from its last saved checkpoint.
pub async fn follow<P: Projection, S: EventStore>(
    store: &S,
    views: &ViewStore,
    poll: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<GlobalPosition, ViewError> {
    let mut head = store.head();
    let mut stop = std::pin::pin!(stop);
    loop {
        let _ = *head.borrow_and_update();
        let (position, _) = catch_up::<P, S>(store, views, 10_000, None, |_| {}).await?;
        tokio::select! {
            _ = &mut stop => return Ok(position),
            _ = head.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
