//! Several projections folded from one read of the log, on separate threads.
//!
//! Why: `dealreg rebuild` read and decoded the whole log once per projection, and a replay
//! of every view folded them all on the reader's thread: one core did all of it, however
//! many the machine had. Here one reader reads each page of the log once and decodes it
//! once, and hands the decoded page (shared, not copied) to every fold thread; each thread
//! folds its share of the projections and starts their saves. The reader stays one thread
//! so that every fold sees the log in its order; with enough cores the slowest stage (the
//! reader, or the busiest fold thread) bounds the whole.
//!
//! What it keeps from the one-projection runner ([`crate::runner`]): a projection's state,
//! position and fold version are saved together, along the way as [`CatchUp`] says and at
//! the end; a run that stops early (`stop_after`, a crash in tests) or whose reader fails
//! makes no final save and does not report the fold as caught up.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use dealreg_domain::Event;
use dealreg_events::{EventStore, LogPages, Position, StoreError};
use dealreg_projections::table::TakenRow;
use dealreg_projections::Projection;
use dealreg_views::{Checkpoint, CheckpointStore};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::beside::Beside;
use crate::runner::{self, CatchUp, Progress, ViewError};
use crate::tail::Decoded;
use dealreg_engine::codec::decode_event;

/// A projection's fold with its type erased, so that one thread folds several.
pub trait Folding: Send + 'static {
    fn name(&self) -> &'static str;
    /// Folds one event at its global position.
    fn fold(&mut self, at: Position, event: &Event);
    /// Rows changed since the last save.
    fn changed_rows(&self) -> usize;
    /// What a save of the state as covering `position` writes; the changed rows are taken.
    fn take_save(&mut self, position: Position) -> Result<(Checkpoint, Vec<TakenRow>), ViewError>;
    /// Whether its saves also write the feed outbox.
    fn publishes(&self) -> bool;
    /// The typed state, for a caller that downcasts it (a replay that prints the views).
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<P: Projection> Folding for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn fold(&mut self, at: Position, event: &Event) {
        self.apply(at, event);
    }

    fn changed_rows(&self) -> usize {
        dealreg_projections::table::changed(&self.tables())
    }

    fn take_save(&mut self, position: Position) -> Result<(Checkpoint, Vec<TakenRow>), ViewError> {
        runner::take_save(position, self)
    }

    fn publishes(&self) -> bool {
        !P::PUBLISHED.is_empty()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// What a run over several projections did.
pub struct FoldedTogether {
    /// The projections' states, in the order they were given.
    pub folds: Vec<Box<dyn Folding>>,
    /// The position every state covers.
    pub position: Position,
    /// Events folded into each.
    pub folded: u64,
    /// Set when the run stopped at `stop_after` as a crash would (no final save).
    pub crashed: bool,
}

/// Folds the whole log into fresh states of `folds` beside their serving views
/// ([`crate::beside`]) with `threads` fold threads fed by one reader, saving each as `how`
/// says along the way and at the end, then puts each in its serving view's place, as
/// [`runner::rebuild`] does for one. Until then readers keep the views as they were.
pub async fn rebuild_together<S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    folds: Vec<Box<dyn Folding>>,
    threads: usize,
    how: CatchUp,
    progress: impl FnMut(Progress),
) -> Result<FoldedTogether, ViewError> {
    let rebuilt: Vec<(&'static str, bool)> =
        folds.iter().map(|f| (f.name(), f.publishes())).collect();
    let beside = Beside::new(checkpoints.clone(), rebuilt.iter().map(|(name, _)| *name));
    for (name, _) in &rebuilt {
        // Whatever an interrupted rebuild left beside is forgotten first.
        beside.reset(name).await?;
    }
    let saving = Saving {
        checkpoints: beside.clone(),
        how,
        runtime: Handle::current(),
    };
    let together = fan_out(
        store,
        folds,
        threads,
        Some(saving),
        how,
        |_, _| false,
        progress,
    )
    .await?;
    if !together.crashed {
        for (name, publishes) in rebuilt {
            beside.swap_in(name, publishes).await?;
        }
    }
    Ok(together)
}

/// Folds the log from the origin into `folds` in memory (nothing is saved) with `threads`
/// fold threads fed by one reader, up to the first event `ends_before` says is past the
/// end (or the head).
pub async fn replay_together<S: EventStore>(
    store: &S,
    folds: Vec<Box<dyn Folding>>,
    threads: usize,
    ends_before: impl FnMut(Position, &Event) -> bool,
    progress: impl FnMut(Progress),
) -> Result<FoldedTogether, ViewError> {
    fan_out::<S, dealreg_views::MemoryCheckpoints>(
        store,
        folds,
        threads,
        None,
        CatchUp::default(),
        ends_before,
        progress,
    )
    .await
}

/// Fold threads a machine can use for `projections` projections: one per core, at most
/// one per projection, at least one.
pub fn fold_threads_for(projections: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(projections)
        .max(1)
}

/// Fold threads a rebuild uses by default: one per core but one (the reader and the
/// views file's writer keep the other busy), at most one per projection, at least one.
/// Why not one per core: every fold thread's saves go to the same views file, one
/// writer at a time; on 2 cores a second fold thread made the rebuild of all five views
/// 0.85 to 1.14 times as fast as one (measured with `projection_rebuild`), while a replay,
/// which writes nothing, gained 1.3 to 1.4 times.
pub fn rebuild_threads_for(projections: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .min(projections)
        .max(1)
}

/// Pages of decoded events a fold thread may have waiting: the reader runs at most this
/// far ahead of the slowest fold (a few MiB of events).
const PAGES_AHEAD: usize = 8;

enum Message {
    Page(Arc<Vec<Decoded>>),
    /// The reader read everything it was to read: the lanes make their final saves.
    End,
}

/// How a lane saves (none in a replay).
#[derive(Clone)]
struct Saving<K> {
    checkpoints: K,
    how: CatchUp,
    /// The runtime the saves run on: a fold thread is not one of its workers.
    runtime: Handle,
}

/// One projection in a lane, with the save it may have in flight.
struct LaneFold {
    /// Its place in the order the caller gave.
    index: usize,
    fold: Box<dyn Folding>,
    /// One save at a time is written while the fold goes on; the rows changed meanwhile
    /// go into the next, so saves grow with the writer's pace (tried: a second save
    /// serialised while the first is written made more, smaller saves, and the rebuild
    /// slower on two cores).
    pending: Option<JoinHandle<Result<(), ViewError>>>,
    last_save: Instant,
}

/// What a lane hands back.
struct LaneEnd {
    folds: Vec<LaneFold>,
    /// Whether it folded everything the reader sent and made its final saves.
    finished: bool,
}

impl<K: CheckpointStore> Saving<K> {
    /// Waits for `fold`'s save in flight, if any.
    fn wait(&self, fold: &mut LaneFold) -> Result<(), ViewError> {
        if let Some(save) = fold.pending.take() {
            self.runtime.block_on(save).map_err(|e| {
                StoreError::Backend(format!("a checkpoint save failed to run: {e}"))
            })??;
        }
        Ok(())
    }

    /// Starts a save of `fold` as covering `position`, written while the folds go on.
    fn start(&self, fold: &mut LaneFold, position: Position) -> Result<(), ViewError> {
        self.wait(fold)?;
        let (checkpoint, rows) = fold.fold.take_save(position)?;
        let (checkpoints, name, publishes) = (
            self.checkpoints.clone(),
            fold.fold.name(),
            fold.fold.publishes(),
        );
        fold.pending = Some(self.runtime.spawn(async move {
            runner::write_rows(&checkpoints, name, publishes, checkpoint, rows).await
        }));
        fold.last_save = Instant::now();
        Ok(())
    }

    /// Starts a save when one is due: enough rows changed and none in flight, or the
    /// interval passed since the last.
    fn if_due(&self, fold: &mut LaneFold, position: Position) -> Result<(), ViewError> {
        let idle = fold.pending.as_ref().is_none_or(JoinHandle::is_finished);
        if runner::save_due(
            &self.how,
            idle,
            fold.fold.changed_rows(),
            fold.last_save.elapsed(),
        ) {
            self.start(fold, position)?;
        }
        Ok(())
    }

    /// The final save of `fold`, and the store told that its fold caught up.
    fn last(&self, fold: &mut LaneFold, position: Position) -> Result<(), ViewError> {
        self.start(fold, position)?;
        self.wait(fold)?;
        self.runtime
            .block_on(self.checkpoints.caught_up(fold.fold.name()))?;
        Ok(())
    }
}

/// One fold thread: folds every page it is sent into its projections, saving as `saving`
/// says. Ends without a final save when the reader goes away without [`Message::End`]
/// (it failed, or stopped at `stop_after` as a crash would: it cut the last page there).
fn fold_lane<K: CheckpointStore>(
    mut folds: Vec<LaneFold>,
    mut pages: mpsc::Receiver<Message>,
    saving: Option<Saving<K>>,
) -> Result<LaneEnd, ViewError> {
    let every = saving
        .as_ref()
        .map_or(u64::MAX, |s| s.how.checkpoint_every.max(1));
    let mut position = Position::ORIGIN;
    let mut folded = 0u64;
    while let Some(message) = pages.blocking_recv() {
        let page = match message {
            Message::Page(page) => page,
            Message::End => {
                if let Some(saving) = &saving {
                    for fold in &mut folds {
                        saving.wait(fold)?;
                        if folded > 0 {
                            saving.last(fold, position)?;
                        }
                    }
                }
                return Ok(LaneEnd {
                    folds,
                    finished: true,
                });
            }
        };
        for decoded in page.iter() {
            for fold in &mut folds {
                fold.fold.fold(decoded.position, &decoded.event);
            }
            position = decoded.position;
            folded += 1;
            if folded.is_multiple_of(every) {
                if let Some(saving) = &saving {
                    for fold in &mut folds {
                        saving.if_due(fold, position)?;
                    }
                }
            }
        }
    }
    // The reader went away (it failed, or stopped as a crash would): saves in flight are
    // awaited, none is started.
    if let Some(saving) = &saving {
        for fold in &mut folds {
            saving.wait(fold)?;
        }
    }
    Ok(LaneEnd {
        folds,
        finished: false,
    })
}

/// Splits `folds` over at most `threads` lanes, round robin in the order given.
fn lanes(folds: Vec<Box<dyn Folding>>, threads: usize) -> Vec<Vec<LaneFold>> {
    let threads = threads.clamp(1, folds.len().max(1));
    let mut lanes: Vec<Vec<LaneFold>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, fold) in folds.into_iter().enumerate() {
        lanes[index % threads].push(LaneFold {
            index,
            fold,
            pending: None,
            last_save: Instant::now(),
        });
    }
    lanes
}

#[allow(clippy::too_many_arguments)]
async fn fan_out<S: EventStore, K: CheckpointStore>(
    store: &S,
    folds: Vec<Box<dyn Folding>>,
    threads: usize,
    saving: Option<Saving<K>>,
    how: CatchUp,
    mut ends_before: impl FnMut(Position, &Event) -> bool,
    mut progress: impl FnMut(Progress),
) -> Result<FoldedTogether, ViewError> {
    let count = folds.len();
    let mut senders = Vec::new();
    let mut running = Vec::new();
    for lane in lanes(folds, threads) {
        let (send, receive) = mpsc::channel(PAGES_AHEAD);
        let saving = saving.clone();
        senders.push(send);
        running.push(tokio::task::spawn_blocking(move || {
            fold_lane(lane, receive, saving)
        }));
    }

    // The reader, on this task: each page read once, decoded once, shared by every lane.
    let read = async {
        let mut pages = LogPages::new(store, Position::ORIGIN).await?;
        let head = pages.head();
        let mut position = Position::ORIGIN;
        let mut folded = 0u64;
        let mut reported = 0u64;
        'log: while let Some(page) = pages.next_page().await? {
            let mut decoded = Vec::with_capacity(page.len());
            let mut ended = false;
            for recorded in &page {
                let event = decode_event(recorded)?;
                if ends_before(recorded.position, &event) {
                    ended = true;
                    break;
                }
                decoded.push(Decoded {
                    position: recorded.position,
                    event,
                });
                position = recorded.position;
                folded += 1;
                if how.stop_after == Some(folded) {
                    ended = true;
                    break;
                }
            }
            let decoded = Arc::new(decoded);
            for lane in &senders {
                if lane
                    .send(Message::Page(Arc::clone(&decoded)))
                    .await
                    .is_err()
                {
                    // A lane ended early: its own answer says why.
                    break 'log;
                }
            }
            if folded - reported >= how.checkpoint_every.max(1) || ended {
                reported = folded;
                progress(Progress {
                    position,
                    head,
                    events: folded,
                });
            }
            if ended {
                break;
            }
        }
        Ok::<_, ViewError>((position, folded))
    }
    .await;

    let crashed = how.stop_after.is_some_and(|stop| {
        read.as_ref()
            .is_ok_and(|&(_, folded)| folded >= stop && folded > 0)
    });
    if read.is_ok() && !crashed {
        for lane in &senders {
            // A lane that already ended answers below.
            let _ = lane.send(Message::End).await;
        }
    }
    drop(senders);

    let mut ended: Vec<Option<Box<dyn Folding>>> = (0..count).map(|_| None).collect();
    let mut failure = None;
    let mut all_finished = true;
    for lane in running {
        match lane.await {
            Ok(Ok(end)) => {
                all_finished &= end.finished;
                for fold in end.folds {
                    ended[fold.index] = Some(fold.fold);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(ViewError::Store(StoreError::Backend(format!(
                    "a fold thread failed to run: {e}"
                ))));
            }
        }
    }
    let (position, folded) = read?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !all_finished && !crashed {
        return Err(ViewError::Store(StoreError::Backend(
            "a fold thread ended before the log did".into(),
        )));
    }
    Ok(FoldedTogether {
        folds: ended.into_iter().flatten().collect(),
        position,
        folded,
        crashed,
    })
}
