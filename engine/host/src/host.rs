//! The views host: the projection followers of a views file, and the deployment's duties
//! beside them (the follow-up reactor, the timekeeper, the feed publisher), fed by one log
//! pump; whatever transport the process serves (NATS today, a CRM adapter, none).
//!
//! Why a lease: every process of a deployment answers commands (the store's exact
//! expected versions keep concurrent writers correct) and queries (from the stored
//! views), but a view must be folded and saved by one process at a time, and a row change
//! published by one. The holder writes its saves through a fenced views handle, so a
//! holder that lost the lease (paused, partitioned) cannot save any more: the save is
//! refused in its own transaction.
//!
//! Two roles. The *views* role folds the views into this views file: the holder of the
//! file's lease has it. The *duties* (publishing the feeds, reacting, keeping time) are
//! the deployment's: with one views file (a SQLite log) the same holder has them; when
//! every host keeps its own views file beside a shared log, one process of the deployment
//! has them, by a second lease kept beside the log ([`SharedDuties`]), and marks there how
//! far each got. The other hosts fold their views all the same (their queries answer from
//! them) and drop from their outbox what the duties' holder marked published.
//!
//! The deployment's further duties ([`Duty`]: the CRM sync, checkpoint signing) run
//! under the same lease: started by the process that takes the duties, stopped when it
//! loses them, so however many processes were given them, one runs each at a time.
//!
//! Why one log pump ([`LogTail`]): the followers and the reactor read each new event once,
//! decoded once, from one subscription to the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::Clock;
use dealreg_events::{EventStore, Position};
use dealreg_projections::deadlines::Deadlines;
use dealreg_views::{CheckpointStore, Leases, SharedDuties, Unshared};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::feed::{self, FeedSink};
use crate::tail::LogTail;
use crate::{reactor, registry, runner, timekeeper};
use dealreg_engine::Engine;

/// The lease the process folding the views holds.
pub const VIEWS_LEASE: &str = "views";

/// The lease of the deployment's duties when several views files share a log.
pub const DUTIES_LEASE: &str = "duties";

/// The mark of the reactor's progress among the shared duties.
pub const REACTOR_MARK: &str = "reactor";

/// The mark of view `view`'s published outbox among the shared duties.
pub fn feed_mark(view: &str) -> String {
    format!("feed/{view}")
}

/// A background job of the deployment beyond the built-in ones (the CRM sync, checkpoint
/// signing, the coming alerts): run only by the process that holds the deployment's
/// duties, started when it takes them and stopped when it loses them or drains. Given the
/// future that resolves when it must stop; it returns once it stopped.
#[derive(Clone)]
pub struct Duty {
    pub name: &'static str,
    pub run: Arc<dyn Fn(DutyStop) -> DutyRun + Send + Sync>,
}

/// The future a [`Duty`] must stop at.
pub type DutyStop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
/// A running [`Duty`].
pub type DutyRun = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Duty {
    pub fn new<F, Fut>(name: &'static str, run: F) -> Duty
    where
        F: Fn(DutyStop) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Duty {
            name,
            run: Arc::new(move |stop| Box::pin(run(stop))),
        }
    }
}

impl std::fmt::Debug for Duty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duty").field("name", &self.name).finish()
    }
}

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Who this process is, in the lease table and the logs.
    pub holder: String,
    /// How often the timekeeper issues what fell due.
    pub tick: Duration,
    /// How often followers look for events when the pump brought none.
    pub poll: Duration,
    /// How long the views lease lasts unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
    /// The deployment's further duties, run beside the built-in ones by their holder.
    pub duties: Vec<Duty>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            holder: format!("host-{}", std::process::id()),
            tick: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(6),
            duties: Vec::new(),
        }
    }
}

/// What the host tells whoever watches it (a service's metrics). Every method has a
/// default that ignores it.
pub trait HostObserver: Send + Sync + 'static {
    /// Whether this process holds the views lease now.
    fn holds_views(&self, _held: bool) {}
    /// How far a view's saved state is behind the log: whether it is, and for how long.
    fn view_lag(&self, _view: &'static str, _behind: bool, _seconds: f64) {}
    /// A view saved its state at `position`.
    fn view_saved(&self, _view: &'static str, _position: Position) {}
    /// The timekeeper issued this many commands in a tick.
    fn timekeeper_ran(&self, _issued: u64) {}
    /// This many outbox entries were published.
    fn feed_published(&self, _entries: u64) {}
}

/// An observer that ignores everything.
pub struct Unobserved;

impl HostObserver for Unobserved {}

/// The stores the host works on: the log, the views as every process reads them, the
/// same views through a handle fenced by the views lease (what the holder saves with),
/// the leases of the views file, and the deployment's shared duties when several views
/// files share the log (`None`: this file is the only one).
pub struct HostStores<S, K, L, D = Unshared> {
    pub log: S,
    pub views: K,
    pub fenced: K,
    pub leases: L,
    pub shared: Option<D>,
}

fn stop_signal(
    stop: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Tasks running while a role is held, and how to stop them.
struct Running {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn acquire(leases: &impl Leases, lease: &str, options: &HostOptions) -> bool {
    match leases
        .try_acquire(
            lease,
            &options.holder,
            chrono::Utc::now(),
            options.lease_ttl,
        )
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, lease, "a lease cannot be read; trying again");
            false
        }
    }
}

/// Takes and renews the views lease (and the shared duties' lease, if any); while it holds
/// them, runs the followers, and the reactor, the timekeeper and (with a sink) the feed
/// publisher. Returns once `stop` is set, after they stopped, the outbox was published
/// and the leases released.
pub async fn hold_views<S, C, K, L, D>(
    engine: Arc<Engine<S, C>>,
    stores: HostStores<S, K, L, D>,
    options: HostOptions,
    observer: Arc<dyn HostObserver>,
    sink: Option<Arc<dyn FeedSink>>,
    stop: watch::Receiver<bool>,
) where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    L: Leases,
    D: SharedDuties,
{
    let mut views: Option<(Running, Arc<LogTail<S>>)> = None;
    let mut duties: Option<Running> = None;
    let renew = options.lease_ttl / 3;
    loop {
        let views_held = acquire(&stores.leases, VIEWS_LEASE, &options).await;
        observer.holds_views(views_held);
        let duties_held = views_held
            && match &stores.shared {
                None => true,
                Some(shared) => acquire(shared, DUTIES_LEASE, &options).await,
            };
        if !duties_held {
            if let Some(running) = duties.take() {
                tracing::warn!(holder = %options.holder, "lost the deployment's duties: another process publishes the feeds and keeps time now");
                running.stop().await;
            }
        }
        if !views_held {
            if let Some((running, _)) = views.take() {
                tracing::warn!(holder = %options.holder, "lost the views lease: another process writes the views now");
                running.stop().await;
            }
        }
        if views_held && views.is_none() {
            match start_views(&stores, &options, &observer).await {
                Ok(started) => {
                    tracing::info!(holder = %options.holder, "took the views lease: folding views");
                    views = Some(started);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the views cannot start: the log cannot be read; trying again")
                }
            }
        }
        if duties_held && duties.is_none() {
            if let Some((_, tail)) = &views {
                match start_duties(&engine, &stores, &options, &observer, &sink, tail).await {
                    Ok(started) => {
                        tracing::info!(holder = %options.holder, "took the deployment's duties: publishing feeds, reacting, running the timekeeper");
                        duties = Some(started);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the duties cannot start; trying again")
                    }
                }
            }
        }
        let mut stop_now = stop.clone();
        tokio::select! {
            _ = stop_now.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(renew) => {}
        }
    }
    if let Some(running) = duties.take() {
        running.stop().await;
        // What the followers saved last is published before the process goes.
        if let Some(sink) = &sink {
            loop {
                match publish_and_mark(&stores.fenced, sink.as_ref(), &stores.shared, true).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the feed could not be flushed; the next holder publishes it");
                        break;
                    }
                }
            }
        }
        if let Some(shared) = &stores.shared {
            mark_reactor(shared, &stores.views).await;
            if let Err(e) = shared.release(DUTIES_LEASE, &options.holder).await {
                tracing::warn!(error = %e, "the duties' lease could not be released; it expires by itself");
            }
        }
    }
    if let Some((running, _)) = views.take() {
        running.stop().await;
        if let Err(e) = stores.leases.release(VIEWS_LEASE, &options.holder).await {
            tracing::warn!(error = %e, "the views lease could not be released; it expires by itself");
        }
    }
}

/// Publishes one batch of the outbox and marks for the other hosts how far the feed is
/// published: each view through the newest entry handed over; when the outbox was empty
/// (and `idle` asks for it), each view through its saved position, read before the
/// outbox was found empty (a save after that read has a newer position). Returns how many
/// entries left the outbox.
async fn publish_and_mark<K: CheckpointStore, D: SharedDuties>(
    fenced: &K,
    sink: &dyn FeedSink,
    shared: &Option<D>,
    idle: bool,
) -> Result<usize, feed::FeedError> {
    let mut saved = Vec::new();
    if let (Some(_), true) = (shared, idle) {
        for view in registry::names::<dealreg_events::memory::MemoryStore, K>() {
            if let Some(checkpoint) = fenced.load(view).await? {
                saved.push((view.to_string(), checkpoint.position));
            }
        }
    }
    let handed = feed::publish_pending(fenced, sink).await?;
    let Some(shared) = shared else {
        return Ok(handed.entries);
    };
    let through = if handed.entries == 0 {
        saved
    } else {
        handed.through.into_iter().collect()
    };
    for (view, position) in &through {
        if let Err(e) = shared.mark_done(&feed_mark(view), *position).await {
            tracing::warn!(error = %e, view, "the feed's mark could not be written; the other hosts keep those changes in their outbox a while longer");
        }
    }
    Ok(handed.entries)
}

/// Marks the reactor done through where this views file's reactor got.
async fn mark_reactor<D: SharedDuties, K: CheckpointStore>(shared: &D, views: &K) {
    match reactor::position(views).await {
        Ok(position) if position > Position::ORIGIN => {
            if let Err(e) = shared.mark_done(REACTOR_MARK, position).await {
                tracing::warn!(error = %e, "the reactor's mark could not be written; a process taking over reads those events again (each follow-up is idempotent)");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the reactor's checkpoint cannot be read"),
    }
}

/// Spawns the followers (one log pump for all), and with shared duties the task that drops
/// from this file's outbox what the duties' holder published.
async fn start_views<S, K, L, D>(
    stores: &HostStores<S, K, L, D>,
    options: &HostOptions,
    observer: &Arc<dyn HostObserver>,
) -> Result<(Running, Arc<LogTail<S>>), dealreg_engine::EngineError>
where
    S: EventStore + Clone,
    K: CheckpointStore,
    D: SharedDuties,
{
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let tail = Arc::new(LogTail::new(stores.log.clone()).await?);
    let count = registry::projections::<S, K>().len();
    for index in 0..count {
        let (tail, fenced, stop, observer) = (
            Arc::clone(&tail),
            stores.fenced.clone(),
            stop.clone(),
            Arc::clone(observer),
        );
        let poll = options.poll;
        tasks.spawn(async move {
            let projections = registry::projections::<S, K>();
            let projection = &projections[index];
            let name = projection.name;
            let (saved, seen) = watch::channel(Position::ORIGIN);
            let lag = watch_lag(name, &tail, seen, &observer, stop.clone());
            let follow = async {
                while !*stop.borrow() {
                    match projection
                        .follow(&tail, &fenced, poll, Box::pin(stop_signal(&stop)), &saved)
                        .await
                    {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::error!(view = name, error = %e, "a view follower stopped; it resumes from its checkpoint");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            };
            tokio::join!(follow, lag);
        });
    }
    if let Some(shared) = &stores.shared {
        let (shared, fenced, stop) = (shared.clone(), stores.fenced.clone(), stop.clone());
        let every = options.lease_ttl / 3;
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                drop_published_elsewhere::<S, K, D>(&shared, &fenced).await;
                tokio::select! {
                    _ = stop_now.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
    Ok((
        Running {
            stop: stop_tx,
            tasks,
        },
        tail,
    ))
}

/// Drops from this views file's outbox the changes the duties' holder marked published.
async fn drop_published_elsewhere<S: EventStore, K: CheckpointStore, D: SharedDuties>(
    shared: &D,
    fenced: &K,
) {
    for view in registry::names::<S, K>() {
        let dropped = match shared.done_through(&feed_mark(view)).await {
            Ok(Some(position)) => fenced.feed_published_elsewhere(view, position).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = dropped {
            tracing::warn!(error = %e, view, "the outbox could not drop what was published elsewhere; trying again");
        }
    }
}

/// Drops the outbox entries at or below each view's floor, and keeps the floors of the
/// views whose saved position has not reached them yet.
async fn pass_floors<K: CheckpointStore>(
    fenced: &K,
    floors: Vec<(&'static str, Position)>,
) -> Vec<(&'static str, Position)> {
    let mut left = Vec::new();
    for (view, floor) in floors {
        // The saved position first: every save up to it wrote its entries already, so
        // once it reached the floor, this drop is the last one needed.
        let reached = matches!(fenced.load(view).await, Ok(Some(saved)) if saved.position >= floor);
        if let Err(e) = fenced.feed_published_elsewhere(view, floor).await {
            tracing::warn!(error = %e, view, "the outbox could not drop what was published before; trying again");
            left.push((view, floor));
        } else if !reached {
            left.push((view, floor));
        }
    }
    left
}

/// Spawns the reactor, the timekeeper and the feed publisher on the views role's `tail`.
/// With shared duties they start where the previous holder marked, not where this file's
/// checkpoints are.
async fn start_duties<S, C, K, L, D>(
    engine: &Arc<Engine<S, C>>,
    stores: &HostStores<S, K, L, D>,
    options: &HostOptions,
    observer: &Arc<dyn HostObserver>,
    sink: &Option<Arc<dyn FeedSink>>,
    tail: &Arc<LogTail<S>>,
) -> Result<Running, dealreg_views::ViewsError>
where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    D: SharedDuties,
{
    if let Some(shared) = &stores.shared {
        if let Some(position) = shared.done_through(REACTOR_MARK).await? {
            reactor::skip_to(&stores.fenced, position).await?;
        }
        drop_published_elsewhere::<S, K, D>(shared, &stores.fenced).await;
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    {
        let (engine, fenced, stop) = (Arc::clone(engine), stores.fenced.clone(), stop.clone());
        let (tail, poll) = (Arc::clone(tail), options.poll);
        tasks.spawn(async move {
            while !*stop.borrow() {
                match reactor::follow(&engine, &fenced, &tail, poll, stop_signal(&stop)).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "the follow-up reactor stopped; it resumes from its checkpoint");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    if let Some(shared) = &stores.shared {
        let (shared, views, stop) = (shared.clone(), stores.views.clone(), stop.clone());
        let every = options.lease_ttl / 3;
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                tokio::select! {
                    _ = stop_now.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(every) => {}
                }
                mark_reactor(&shared, &views).await;
            }
        });
    }
    {
        let (engine, views, observer, stop) = (
            Arc::clone(engine),
            stores.views.clone(),
            Arc::clone(observer),
            stop.clone(),
        );
        let tick = options.tick;
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                match runner::load::<Deadlines, K>(&views).await {
                    Ok((_, deadlines, _)) => match timekeeper::tick(&engine, &deadlines).await {
                        Ok(done) => observer.timekeeper_ran(done.issued.len() as u64),
                        Err(e) => tracing::warn!(error = %e, "a timekeeper tick failed; the next one issues what is still due"),
                    },
                    Err(e) => tracing::warn!(error = %e, "the deadlines view cannot be read; the timekeeper waits for the next tick"),
                }
                tokio::select! {
                    _ = stop_now.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        });
    }
    if let Some(sink) = sink {
        let (sink, fenced, observer, stop) = (
            Arc::clone(sink),
            stores.fenced.clone(),
            Arc::clone(observer),
            stop.clone(),
        );
        let shared = stores.shared.clone();
        // What the previous holder published: this file's views may still be behind it,
        // and the changes they save up to there must not go out a second time.
        let mut floors: Vec<(&'static str, Position)> = Vec::new();
        if let Some(shared) = &shared {
            for view in registry::names::<S, K>() {
                if let Some(position) = shared.done_through(&feed_mark(view)).await? {
                    floors.push((view, position));
                }
            }
        }
        let every = options.lease_ttl / 3;
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            let mut idle_marked = Instant::now();
            loop {
                if !floors.is_empty() {
                    floors = pass_floors(&fenced, floors).await;
                }
                let mark_idle = shared.is_some() && idle_marked.elapsed() >= every;
                if mark_idle {
                    idle_marked = Instant::now();
                }
                let wait = match publish_and_mark(&fenced, sink.as_ref(), &shared, mark_idle).await
                {
                    Ok(0) => {
                        observer.feed_published(0);
                        Duration::from_millis(20)
                    }
                    Ok(n) => {
                        observer.feed_published(n as u64);
                        Duration::ZERO
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "publishing the feed failed; retrying");
                        Duration::from_millis(500)
                    }
                };
                tokio::select! {
                    _ = stop_now.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
    for duty in &options.duties {
        tracing::info!(duty = duty.name, holder = %options.holder, "running a duty of the deployment");
        tasks.spawn((duty.run)(Box::pin(stop_signal(&stop))));
    }
    Ok(Running {
        stop: stop_tx,
        tasks,
    })
}

/// Reports every half second whether view `name`'s saved position is behind the newest
/// event the pump has seen, and since when.
async fn watch_lag<S: EventStore>(
    name: &'static str,
    tail: &LogTail<S>,
    mut seen: watch::Receiver<Position>,
    observer: &Arc<dyn HostObserver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut behind_since: Option<Instant> = None;
    loop {
        let position = *seen.borrow_and_update();
        observer.view_saved(name, position);
        let behind = *tail.newest().borrow() > position;
        let since = if behind {
            Some(*behind_since.get_or_insert_with(Instant::now))
        } else {
            None
        };
        behind_since = since;
        observer.view_lag(
            name,
            behind,
            since.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        );
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
