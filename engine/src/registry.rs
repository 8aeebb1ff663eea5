//! The one registry of projections: every read model the engine maintains, by name.
//!
//! Why one list: rebuilding "all" projections, validating a name given on the command
//! line, following every projection in a service and listing them in docs must never
//! disagree. [`projections`] is the only place that names the projection types; each entry
//! carries its operations as function pointers instantiated for the caller's backends.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dealreg_events::{EventStore, Position};
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::deadlines::Deadlines;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::program::Program;
use dealreg_projections::{Projection, Published};
use dealreg_views::CheckpointStore;

use crate::parallel::Folding;
use crate::runner::{self, CatchUp, Progress, ViewError};
use crate::tail::LogTail;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, ViewError>> + Send + 'a>>;
/// A progress callback a run reports to.
pub type ProgressSink<'a> = &'a mut (dyn FnMut(Progress) + Send);
/// A future that ends a follower when it resolves.
pub type Stop<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Run<S, K> = for<'a> fn(&'a S, &'a K, CatchUp, ProgressSink<'a>) -> Boxed<'a, RunReport>;
/// Where a follower announces each position it saved.
pub type SavedWatch = tokio::sync::watch::Sender<Position>;
type Follow<S, K> =
    for<'a> fn(&'a LogTail<S>, &'a K, Duration, Stop<'a>, &'a SavedWatch) -> Boxed<'a, Position>;

/// What a generic run over one projection reports (its typed state stays inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub name: &'static str,
    pub position: Position,
    pub folded: u64,
    pub rebuilt: Option<String>,
}

/// One registered projection and what can be done with it on backends `S` and `K`.
pub struct Registered<S, K> {
    pub name: &'static str,
    pub version: u32,
    /// The tables whose row changes the feeds publish, with their partner-safe forms.
    pub published: &'static [Published],
    catch_up: Run<S, K>,
    rebuild: Run<S, K>,
    fresh: fn() -> Box<dyn Folding>,
    follow: Follow<S, K>,
}

impl<S, K> Registered<S, K> {
    /// Brings the projection up to the log's head from its checkpoint.
    pub fn catch_up<'a>(
        &self,
        store: &'a S,
        checkpoints: &'a K,
        how: CatchUp,
        progress: ProgressSink<'a>,
    ) -> Boxed<'a, RunReport> {
        (self.catch_up)(store, checkpoints, how, progress)
    }

    /// Forgets the checkpoint and folds the whole log again.
    pub fn rebuild<'a>(
        &self,
        store: &'a S,
        checkpoints: &'a K,
        how: CatchUp,
        progress: ProgressSink<'a>,
    ) -> Boxed<'a, RunReport> {
        (self.rebuild)(store, checkpoints, how, progress)
    }

    /// The projection's empty state, to be folded with others ([`crate::parallel`]).
    pub fn fresh(&self) -> Box<dyn Folding> {
        (self.fresh)()
    }

    /// Keeps the projection current until `stop` resolves (see [`runner::follow`]),
    /// announcing every position it saved on `saved`.
    pub fn follow<'a>(
        &self,
        tail: &'a LogTail<S>,
        checkpoints: &'a K,
        poll: Duration,
        stop: Stop<'a>,
        saved: &'a SavedWatch,
    ) -> Boxed<'a, Position> {
        (self.follow)(tail, checkpoints, poll, stop, saved)
    }
}

fn report<P>(caught: runner::CaughtUp<P>, name: &'static str) -> RunReport {
    RunReport {
        name,
        position: caught.position,
        folded: caught.folded,
        rebuilt: caught.rebuilt,
    }
}

fn entry<P: Projection, S: EventStore, K: CheckpointStore>() -> Registered<S, K> {
    Registered {
        name: P::NAME,
        version: P::VERSION,
        published: P::PUBLISHED,
        fresh: || Box::new(P::default()),
        catch_up: |store, checkpoints, how, progress| {
            Box::pin(async move {
                let caught = runner::catch_up::<P, S, K>(store, checkpoints, how, progress).await?;
                Ok(report(caught, P::NAME))
            })
        },
        rebuild: |store, checkpoints, how, progress| {
            Box::pin(async move {
                let caught = runner::rebuild::<P, S, K>(store, checkpoints, how, progress).await?;
                Ok(report(caught, P::NAME))
            })
        },
        follow: |tail, checkpoints, poll, stop, saved| {
            Box::pin(runner::follow::<P, S, K>(
                tail,
                checkpoints,
                poll,
                stop,
                move |position| {
                    saved.send_replace(position);
                },
            ))
        },
    }
}

/// Every projection the engine maintains.
pub fn projections<S: EventStore, K: CheckpointStore>() -> [Registered<S, K>; 6] {
    [
        entry::<Pipeline, S, K>(),
        entry::<Ledger, S, K>(),
        entry::<ConflictFlags, S, K>(),
        entry::<Deadlines, S, K>(),
        entry::<ProgramMetrics, S, K>(),
        entry::<Program, S, K>(),
    ]
}

/// The names of every registered projection, in registry order.
pub fn names<S: EventStore, K: CheckpointStore>() -> Vec<&'static str> {
    projections::<S, K>().iter().map(|p| p.name).collect()
}

/// The published table `table` of view `view`, if the view publishes it.
pub fn published(view: &str, table: &str) -> Option<Published> {
    use dealreg_events::memory::MemoryStore;
    use dealreg_views::MemoryCheckpoints;
    projections::<MemoryStore, MemoryCheckpoints>()
        .iter()
        .find(|p| p.name == view)
        .and_then(|p| dealreg_projections::published(p.published, table).copied())
}
