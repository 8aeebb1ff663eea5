//! The projection runner: feeds a pure projection from the log and checkpoints it.
//!
//! Why state and checkpoint are one write: a projection's folded state, the position it
//! covers and the version of the fold that made it are saved together through
//! [`CheckpointStore`], so a runner killed at any moment resumes from the last saved
//! triple: no event is skipped and none is counted twice. A state saved by a fold of
//! another version is never served; it is rebuilt from the origin, and the caller is told.

use std::time::{Duration, Instant};

use dealreg_projections::Projection;
use dealreg_store::{
    Checkpoint, CheckpointStore, EventStore, GlobalPosition, LogPages, StoreError,
};

use crate::codec::decode_event;
use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the saved state of projection `{name}` cannot be read ({reason}); run `dealreg rebuild {name}`")]
    Corrupt { name: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How far a catch-up got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub position: GlobalPosition,
    pub head: GlobalPosition,
    pub events: u64,
}

/// Saves during a long catch-up are at least this far apart by default: each save writes
/// the whole state, so saving by event count alone made a 1M-event rebuild spend most of
/// its time serialising (26k events/s with a save every 50k events, 140k events/s without).
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// How a catch-up saves along the way.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    /// Report progress (and consider saving) every this many events.
    pub checkpoint_every: u64,
    /// Saves along the way are at least this far apart (the final save always happens).
    pub min_interval: Duration,
    /// Ends the run after this many events *without* the final save, exactly as a crash
    /// would (tests use it; `None` in service).
    pub stop_after: Option<u64>,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            checkpoint_every: 10_000,
            min_interval: MIN_CHECKPOINT_INTERVAL,
            stop_after: None,
        }
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, PartialEq)]
pub struct CaughtUp<P> {
    pub state: P,
    /// The position the state covers.
    pub position: GlobalPosition,
    /// Where the run started from (the saved checkpoint, or the origin).
    pub resumed_from: GlobalPosition,
    /// Events folded by this run.
    pub folded: u64,
    /// Set when the saved state was written by another version of the fold and was
    /// rebuilt from the origin: the message says so.
    pub rebuilt: Option<String>,
}

/// The saved state of `P`, or the empty state at the origin when there is none or it was
/// written by another version of the fold (then with the reason).
pub async fn load<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
) -> Result<(GlobalPosition, P, Option<String>), ViewError> {
    match checkpoints.load(P::NAME).await? {
        None => Ok((GlobalPosition::ORIGIN, P::default(), None)),
        Some(saved) if saved.version != P::VERSION => {
            let why = format!(
                "projection `{}` was saved by version {} of its fold; this build folds version {}, so it is rebuilt from the log",
                P::NAME,
                saved.version,
                P::VERSION
            );
            tracing::info!("{why}");
            Ok((GlobalPosition::ORIGIN, P::default(), Some(why)))
        }
        Some(saved) => {
            let state = serde_json::from_slice(&saved.state).map_err(|e| ViewError::Corrupt {
                name: P::NAME.into(),
                reason: e.to_string(),
            })?;
            Ok((saved.position, state, None))
        }
    }
}

/// Saves `state` as covering `position`, under this build's fold version.
pub async fn save<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
    position: GlobalPosition,
    state: &P,
) -> Result<(), ViewError> {
    let bytes = serde_json::to_vec(state).map_err(|e| ViewError::Corrupt {
        name: P::NAME.into(),
        reason: e.to_string(),
    })?;
    checkpoints
        .save(
            P::NAME,
            Checkpoint {
                position,
                version: P::VERSION,
                state: bytes,
            },
        )
        .await?;
    Ok(())
}

/// Brings `P` up to the log's head from its checkpoint, saving along the way as `how`
/// says and at the end.
pub async fn catch_up<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    how: CatchUp,
    mut progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    let (resumed_from, mut state, rebuilt) = load::<P, K>(checkpoints).await?;
    let mut position = resumed_from;
    let head = *store.head().borrow();
    let mut pages = LogPages::new(store, position, 4096);
    let mut folded = 0u64;
    let mut last_save = Instant::now();
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            state.apply(recorded.position.0, &decode_event(recorded)?);
            position = recorded.position;
            folded += 1;
            if how.stop_after == Some(folded) {
                return Ok(CaughtUp {
                    state,
                    position,
                    resumed_from,
                    folded,
                    rebuilt,
                });
            }
            if folded.is_multiple_of(how.checkpoint_every.max(1)) {
                if last_save.elapsed() >= how.min_interval {
                    save(checkpoints, position, &state).await?;
                    last_save = Instant::now();
                }
                progress(Progress {
                    position,
                    head,
                    events: folded,
                });
            }
        }
    }
    // Nothing new folded: nothing to write (a reader of a read-only copy writes nothing).
    if folded > 0 || rebuilt.is_some() {
        save(checkpoints, position, &state).await?;
    }
    progress(Progress {
        position,
        head,
        events: folded,
    });
    Ok(CaughtUp {
        state,
        position,
        resumed_from,
        folded,
        rebuilt,
    })
}

/// Forgets `P`'s checkpoint and folds the whole log again.
pub async fn rebuild<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    how: CatchUp,
    progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    checkpoints.reset(P::NAME).await?;
    catch_up(store, checkpoints, how, progress).await
}

/// Keeps `P` up to date as events arrive: catches up, then waits for the store's head to
/// move (or `poll`, for appends made by other processes, which this process's head watch
/// does not see), and catches up again, until `stop` resolves. Every catch-up ends with a
/// save, so a follower killed at any moment resumes from its last saved checkpoint.
pub async fn follow<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    poll: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<GlobalPosition, ViewError> {
    let mut head = store.head();
    let mut stop = std::pin::pin!(stop);
    loop {
        let _ = *head.borrow_and_update();
        let caught = catch_up::<P, S, K>(store, checkpoints, CatchUp::default(), |_| {}).await?;
        tokio::select! {
            _ = &mut stop => return Ok(caught.position),
            _ = head.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
