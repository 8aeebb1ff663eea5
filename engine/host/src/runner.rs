//! The projection runner: feeds a pure projection from the log and checkpoints it.
//!
//! Why state and checkpoint are one write: a projection's folded state, the position it
//! covers and the version of the fold that made it are saved together through
//! [`CheckpointStore`], so a runner killed at any moment resumes from the last saved
//! triple: no event is skipped and none is counted twice. A state saved by a fold of
//! another version is never served; it is rebuilt from the origin, and the caller is told.
//!
//! Why rows: a save writes the meta and only the rows changed since the last save
//! ([`dealreg_projections::Table`]), so its cost follows the events folded since, not the
//! size of the read model; and it is written while the fold goes on (one save in flight at
//! a time, awaited before the next), so a rebuild does not stop for its saves.

use std::time::{Duration, Instant};

use dealreg_events::{EventStore, LogPages, Position, StoreError};
use dealreg_projections::table::TakenRow;
use dealreg_projections::Projection;
use dealreg_views::{Checkpoint, CheckpointStore, RowWrite};
use tokio::task::JoinHandle;

use crate::beside::Beside;
use crate::tail::LogTail;
use dealreg_engine::codec::decode_event;
use dealreg_engine::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Views(#[from] dealreg_views::ViewsError),
    #[error("the saved state of projection `{name}` cannot be read ({reason}); run `dealreg rebuild {name}`")]
    Corrupt { name: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How far a catch-up got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub position: Position,
    pub head: Position,
    pub events: u64,
}

/// Saves during a long catch-up are at least this far apart by default. A save writes the
/// rows changed since the last one; saves far apart write a row changed many times once.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// A save starts along the way once this many rows changed (and none is being written).
pub const ROWS_PER_SAVE: usize = 50_000;

/// Whether a save along the way is due: enough rows changed while no save is being
/// written (`idle`), or `how.save_interval` passed since the last one. The runner and the
/// fold threads of [`crate::parallel`] decide by this one rule.
pub(crate) fn save_due(how: &CatchUp, idle: bool, changed: usize, since_last: Duration) -> bool {
    (idle && changed >= how.rows_per_save) || since_last >= how.save_interval
}

/// How a catch-up saves along the way.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    /// Report progress (and consider saving) every this many events.
    pub checkpoint_every: u64,
    /// A save starts along the way once this long has passed since the last one (the
    /// final save always happens).
    pub save_interval: Duration,
    /// A save also starts, when none is being written, once this many rows changed: it
    /// is written while the fold goes on, so the save at the end stays small.
    pub rows_per_save: usize,
    /// Ends the run after this many events *without* the final save, exactly as a crash
    /// would (tests use it; `None` in service).
    pub stop_after: Option<u64>,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            checkpoint_every: 10_000,
            save_interval: SAVE_INTERVAL,
            rows_per_save: ROWS_PER_SAVE,
            stop_after: None,
        }
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, PartialEq)]
pub struct CaughtUp<P> {
    pub state: P,
    /// The position the state covers.
    pub position: Position,
    /// Where the run started from (the saved checkpoint, or the origin).
    pub resumed_from: Position,
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
) -> Result<(Position, P, Option<String>), ViewError> {
    match checkpoints.load(P::NAME).await? {
        None => Ok((Position::ORIGIN, P::default(), None)),
        Some(saved) if saved.version != P::VERSION => {
            let why = format!(
                "projection `{}` was saved by version {} of its fold; this build folds version {}, so it is rebuilt from the log",
                P::NAME,
                saved.version,
                P::VERSION
            );
            tracing::info!("{why}");
            Ok((Position::ORIGIN, P::default(), Some(why)))
        }
        Some(saved) => {
            let corrupt = |reason: String| ViewError::Corrupt {
                name: P::NAME.into(),
                reason,
            };
            let mut state: P =
                serde_json::from_slice(&saved.state).map_err(|e| corrupt(e.to_string()))?;
            let rows = checkpoints.load_rows(P::NAME).await?;
            dealreg_projections::table::restore_rows(&mut state.tables_mut(), rows)
                .map_err(corrupt)?;
            Ok((saved.position, state, None))
        }
    }
}

/// What a save writes: the meta now, and the rows changed since the last save, taken from
/// the state (so the next save starts from nothing changed) to be serialised later.
pub(crate) fn take_save<P: Projection>(
    position: Position,
    state: &mut P,
) -> Result<(Checkpoint, Vec<TakenRow>), ViewError> {
    let meta = serde_json::to_vec(&*state).map_err(|e| corrupt::<P>(&e))?;
    let rows = dealreg_projections::table::take_all(&mut state.tables_mut());
    Ok((
        Checkpoint {
            position,
            version: P::VERSION,
            state: meta,
        },
        rows,
    ))
}

fn corrupt<P: Projection>(e: &serde_json::Error) -> ViewError {
    ViewError::Corrupt {
        name: P::NAME.into(),
        reason: e.to_string(),
    }
}

/// Serialises the taken rows on the blocking pool and writes them with the checkpoint.
async fn write_save<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
    checkpoint: Checkpoint,
    rows: Vec<TakenRow>,
) -> Result<(), ViewError> {
    write_rows(
        checkpoints,
        P::NAME,
        !P::PUBLISHED.is_empty(),
        checkpoint,
        rows,
    )
    .await
}

/// [`write_save`] for a projection known by its name: the rows serialised on the
/// blocking pool, then written with the checkpoint (and the feed outbox when the view
/// `publishes`).
pub(crate) async fn write_rows<K: CheckpointStore>(
    checkpoints: &K,
    name: &'static str,
    publishes: bool,
    checkpoint: Checkpoint,
    rows: Vec<TakenRow>,
) -> Result<(), ViewError> {
    let corrupt = |e: serde_json::Error| ViewError::Corrupt {
        name: name.into(),
        reason: e.to_string(),
    };
    let rows = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|taken| {
                taken.serialise().map(|c| RowWrite {
                    key: c.key,
                    scope: c.scope,
                    row: c.row,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| {
        StoreError::Backend(format!(
            "serialising a checkpoint's rows failed to run: {e}"
        ))
    })?
    .map_err(corrupt)?;
    if publishes {
        checkpoints
            .save_published_rows(name, checkpoint, rows)
            .await?;
    } else {
        checkpoints.save_rows(name, checkpoint, rows).await?;
    }
    Ok(())
}

/// Saves `state` as covering `position`, under this build's fold version: its meta and
/// the rows changed since its last save.
pub async fn save<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
    position: Position,
    state: &mut P,
) -> Result<(), ViewError> {
    let (checkpoint, rows) = take_save(position, state)?;
    write_save::<P, K>(checkpoints, checkpoint, rows).await
}

/// A save being written while the fold goes on.
type PendingSave = Option<JoinHandle<Result<(), ViewError>>>;

async fn finish(pending: &mut PendingSave) -> Result<(), ViewError> {
    if let Some(save) = pending.take() {
        save.await
            .map_err(|e| StoreError::Backend(format!("a checkpoint save failed to run: {e}")))??;
    }
    Ok(())
}

/// Starts writing a save of `state` while the fold goes on.
fn start_save<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
    position: Position,
    state: &mut P,
) -> Result<PendingSave, ViewError> {
    let (checkpoint, rows) = take_save(position, state)?;
    let checkpoints = checkpoints.clone();
    Ok(Some(tokio::spawn(async move {
        write_save::<P, K>(&checkpoints, checkpoint, rows).await
    })))
}

/// Brings `P` up to the log's head from its checkpoint, saving along the way as `how`
/// says and at the end.
pub async fn catch_up<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    how: CatchUp,
    progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    let (resumed_from, state, rebuilt) = load::<P, K>(checkpoints).await?;
    if rebuilt.is_some() {
        // Rebuilt beside the other version's view, which it then replaces (its rows do
        // not outlive it).
        return rebuild_beside(store, checkpoints, rebuilt, how, progress).await;
    }
    fold_and_save(
        store,
        checkpoints,
        resumed_from,
        state,
        rebuilt,
        how,
        progress,
    )
    .await
}

/// Folds from `resumed_from` onto `state` and saves at the end (unless the run stopped
/// early as a simulated crash, or folded nothing and rebuilt nothing).
async fn fold_and_save<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    resumed_from: Position,
    mut state: P,
    rebuilt: Option<String>,
    how: CatchUp,
    mut progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    let mut position = resumed_from;
    let (folded, crashed) = advance(
        Reader::<S>::Pages(LogPages::new(store, resumed_from).await?),
        checkpoints,
        &mut state,
        &mut position,
        how,
        &mut progress,
    )
    .await?;
    // Nothing new folded: nothing to write (a reader of a read-only copy writes nothing).
    if !crashed && (folded > 0 || rebuilt.is_some()) {
        save(checkpoints, position, &mut state).await?;
        checkpoints.caught_up(P::NAME).await?;
    }
    Ok(CaughtUp {
        state,
        position,
        resumed_from,
        folded,
        rebuilt,
    })
}

/// Where a run reads the log from.
enum Reader<'a, S> {
    /// Pages read ahead from the store and decoded by this run: a catch-up, a rebuild.
    Pages(LogPages),
    /// The process's shared tail, decoded once for every follower.
    Tail(&'a LogTail<S>),
}

/// Events a follower asks its tail for at a time.
const TAIL_PAGE: usize = 4096;

/// One run of the fold loop: what it folded and the save it may have in flight.
struct Run {
    how: CatchUp,
    pending: PendingSave,
    folded: u64,
    last_save: Instant,
    /// The log's head when the run started, for progress reports.
    head: Position,
}

impl Run {
    fn new(how: CatchUp, head: Position) -> Self {
        Run {
            how,
            pending: None,
            folded: 0,
            last_save: Instant::now(),
            head,
        }
    }

    /// Folds the event at `at` and, every `how.checkpoint_every` events, reports progress
    /// and starts a save along the way when one is due. `true` when `how.stop_after` was
    /// reached: the run stops there as a crash would.
    async fn fold<P: Projection, K: CheckpointStore>(
        &mut self,
        checkpoints: &K,
        state: &mut P,
        position: &mut Position,
        at: Position,
        event: &dealreg_domain::Event,
        progress: &mut impl FnMut(Progress),
    ) -> Result<bool, ViewError> {
        state.apply(at, event);
        *position = at;
        self.folded += 1;
        if self.how.stop_after == Some(self.folded) {
            finish(&mut self.pending).await?;
            return Ok(true);
        }
        if self.folded.is_multiple_of(self.how.checkpoint_every.max(1)) {
            let idle = self.pending.as_ref().is_none_or(JoinHandle::is_finished);
            let changed = dealreg_projections::table::changed(&state.tables());
            if save_due(&self.how, idle, changed, self.last_save.elapsed()) {
                finish(&mut self.pending).await?;
                self.pending = start_save(checkpoints, *position, state)?;
                self.last_save = Instant::now();
            }
            progress(Progress {
                position: *position,
                head: self.head,
                events: self.folded,
            });
        }
        Ok(false)
    }

    /// Waits for the save in flight and reports where the run ended.
    async fn finish(
        mut self,
        position: Position,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(u64, bool), ViewError> {
        finish(&mut self.pending).await?;
        progress(Progress {
            position,
            head: self.head,
            events: self.folded,
        });
        Ok((self.folded, false))
    }
}

/// Folds every event after `position` into `state`, saving along the way as `how` says
/// (not at the end: the caller does). Returns how many events it folded, and whether it
/// stopped early as `how.stop_after` asked (a simulated crash: no save at the end).
async fn advance<P: Projection, S: EventStore, K: CheckpointStore>(
    reader: Reader<'_, S>,
    checkpoints: &K,
    state: &mut P,
    position: &mut Position,
    how: CatchUp,
    progress: &mut impl FnMut(Progress),
) -> Result<(u64, bool), ViewError> {
    match reader {
        Reader::Pages(mut pages) => {
            let mut run = Run::new(how, pages.head());
            while let Some(page) = pages.next_page().await? {
                for recorded in &page {
                    let event = decode_event(recorded)?;
                    let at = recorded.position;
                    if run
                        .fold(checkpoints, state, position, at, &event, progress)
                        .await?
                    {
                        return Ok((run.folded, true));
                    }
                }
            }
            run.finish(*position, progress).await
        }
        Reader::Tail(tail) => {
            let mut run = Run::new(how, *tail.newest().borrow());
            loop {
                let page = tail.read_after(*position, TAIL_PAGE).await?;
                if page.is_empty() {
                    break;
                }
                for decoded in &page {
                    let (at, event) = (decoded.position, &decoded.event);
                    if run
                        .fold(checkpoints, state, position, at, event, progress)
                        .await?
                    {
                        return Ok((run.folded, true));
                    }
                }
            }
            run.finish(*position, progress).await
        }
    }
}

/// Forgets `P`'s checkpoint and folds the whole log again.
pub async fn rebuild<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    how: CatchUp,
    progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    rebuild_beside(store, checkpoints, None, how, progress).await
}

/// Folds the whole log into a fresh `P` beside the serving view ([`crate::beside`]) and,
/// once it is saved complete, puts it in the serving view's place: readers never see the
/// view half rebuilt. `rebuilt` is the reason reported (a fold of another version).
async fn rebuild_beside<P: Projection, S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    rebuilt: Option<String>,
    how: CatchUp,
    progress: impl FnMut(Progress),
) -> Result<CaughtUp<P>, ViewError> {
    let beside = Beside::new(checkpoints.clone(), [P::NAME]);
    // Whatever an interrupted rebuild left beside is forgotten first.
    beside.reset(P::NAME).await?;
    let stop_after = how.stop_after;
    let mut caught = fold_and_save(
        store,
        &beside,
        Position::ORIGIN,
        P::default(),
        None,
        how,
        progress,
    )
    .await?;
    if stop_after.is_some_and(|n| caught.folded >= n) {
        // Stopped as a crash would: nothing is swapped in.
        return Ok(caught);
    }
    if caught.folded == 0 {
        // An empty log: the rebuilt view is the empty one, saved all the same.
        save(&beside, caught.position, &mut caught.state).await?;
    }
    beside.swap_in(P::NAME, !P::PUBLISHED.is_empty()).await?;
    caught.rebuilt = rebuilt;
    Ok(caught)
}

/// Keeps `P` up to date as events arrive: catches up, then waits for the process's log
/// pump to see more (or `poll`), and catches up again, until `stop` resolves. The state stays in memory
/// between catch-ups; what they folded is saved (only the rows it changed) at most every
/// [`SAVE_EVERY`], and at `stop`, so a follower killed at any moment resumes from its last
/// saved checkpoint.
/// `saved` is told each position saved (queries waiting for a position listen to it).
/// Events are read through `tail`, which the followers of one process share.
pub async fn follow<P: Projection, S: EventStore, K: CheckpointStore>(
    tail: &LogTail<S>,
    checkpoints: &K,
    poll: Duration,
    stop: impl std::future::Future<Output = ()>,
    mut saved: impl FnMut(Position) + Send,
) -> Result<Position, ViewError> {
    let mut head = tail.newest();
    let mut stop = std::pin::pin!(stop);
    let (mut position, mut state, rebuilt) = load::<P, K>(checkpoints).await?;
    if rebuilt.is_some() {
        // Another version's view: rebuilt beside it first, and swapped in complete.
        let caught = rebuild_beside::<P, S, K>(
            tail.store(),
            checkpoints,
            rebuilt.clone(),
            CatchUp::default(),
            |_| {},
        )
        .await?;
        position = caught.position;
        state = caught.state;
        saved(position);
    }
    let mut first = true;
    // Folded and not saved yet, and when the last save was.
    let mut unsaved = false;
    let mut last_save: Option<std::time::Instant> = None;
    loop {
        let _ = *head.borrow_and_update();
        let (folded, _) = advance(
            Reader::Tail(tail),
            checkpoints,
            &mut state,
            &mut position,
            CatchUp::default(),
            &mut |_| {},
        )
        .await?;
        unsaved |= folded > 0;
        let due = last_save.is_none_or(|at| at.elapsed() >= SAVE_EVERY);
        if unsaved && due {
            save(checkpoints, position, &mut state).await?;
            if first {
                checkpoints.caught_up(P::NAME).await?;
            }
            last_save = Some(std::time::Instant::now());
            unsaved = false;
            saved(position);
        } else if first {
            saved(position);
        }
        first = false;
        let wait = match (unsaved, last_save) {
            (true, Some(at)) => SAVE_EVERY.saturating_sub(at.elapsed()),
            _ => poll,
        };
        let folded_at = std::time::Instant::now();
        tokio::select! {
            _ = &mut stop => {
                if unsaved {
                    save(checkpoints, position, &mut state).await?;
                    saved(position);
                }
                return Ok(position);
            }
            _ = head.changed(), if !unsaved => {
                // Appends arrive in bursts: fold what a few milliseconds bring in one
                // catch-up instead of one catch-up per append.
                tokio::time::sleep(FOLD_EVERY.saturating_sub(folded_at.elapsed())).await;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The shortest time between two catch-ups of a follower woken by appends.
pub const FOLD_EVERY: Duration = Duration::from_millis(10);

/// The shortest time between two saves of a follower. Why: every save is a write
/// transaction on the store's file, and under load a save per command would take the
/// write lock from the appends as often as they take it; folding a few milliseconds'
/// worth of events into one save keeps appends fast and read-your-writes within this.
pub const SAVE_EVERY: Duration = Duration::from_millis(50);

impl From<dealreg_engine::codec::DecodeError> for ViewError {
    fn from(e: dealreg_engine::codec::DecodeError) -> Self {
        ViewError::Engine(EngineError::Decode(e))
    }
}
