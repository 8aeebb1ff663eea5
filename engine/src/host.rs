//! The views host: in the one process that holds the views lease, the projection
//! followers, the follow-up reactor, the timekeeper and the feed publisher, fed by one log
//! pump; whatever transport the process serves (NATS today, a CRM adapter, none).
//!
//! Why a lease: every process of a deployment answers commands (the store's exact
//! expected versions keep concurrent writers correct) and queries (from the stored
//! views), but a view must be folded and saved by one process at a time, and a row change
//! published by one. The holder writes its saves through a fenced views handle, so a
//! holder that lost the lease (paused, partitioned) cannot save any more: the save is
//! refused in its own transaction. When the log is remote, each host may keep its own
//! views file; the lease is then per views file, and only one process should publish the
//! feeds (see docs/DEPLOYMENT.md).
//!
//! Why one log pump ([`LogTail`]): the followers and the reactor read each new event once,
//! decoded once, from one subscription to the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::Clock;
use dealreg_events::{EventStore, Position};
use dealreg_projections::deadlines::Deadlines;
use dealreg_views::{CheckpointStore, Leases};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::feed::{self, FeedSink};
use crate::tail::LogTail;
use crate::{reactor, registry, runner, timekeeper, Engine};

/// The lease the process folding the views holds.
pub const VIEWS_LEASE: &str = "views";

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
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            holder: format!("host-{}", std::process::id()),
            tick: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(6),
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
/// and the leases.
pub struct HostStores<S, K, L> {
    pub log: S,
    pub views: K,
    pub fenced: K,
    pub leases: L,
}

fn stop_signal(
    stop: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Takes and renews the views lease; while it holds it, runs the followers, the reactor,
/// the timekeeper and (with a sink) the feed publisher. Returns once `stop` is set, after
/// they stopped, the outbox was published and the lease released.
pub async fn hold_views<S, C, K, L>(
    engine: Arc<Engine<S, C>>,
    stores: HostStores<S, K, L>,
    options: HostOptions,
    observer: Arc<dyn HostObserver>,
    sink: Option<Arc<dyn FeedSink>>,
    stop: watch::Receiver<bool>,
) where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    L: Leases,
{
    let mut writers: Option<(watch::Sender<bool>, JoinSet<()>)> = None;
    let renew = options.lease_ttl / 3;
    loop {
        let held = match stores
            .leases
            .try_acquire(
                VIEWS_LEASE,
                &options.holder,
                chrono::Utc::now(),
                options.lease_ttl,
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "the views lease cannot be read; trying again");
                false
            }
        };
        observer.holds_views(held);
        match (held, writers.is_some()) {
            (true, false) => {
                tracing::info!(holder = %options.holder, "took the views lease: folding views, publishing feeds, running the timekeeper");
                let (writer_stop, writer_rx) = watch::channel(false);
                match start_writers(&engine, &stores, &options, &observer, &sink, &writer_rx).await
                {
                    Ok(tasks) => writers = Some((writer_stop, tasks)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the views cannot start: the log cannot be read; trying again")
                    }
                }
            }
            (false, true) => {
                tracing::warn!(holder = %options.holder, "lost the views lease: another process writes the views now");
                if let Some((writer_stop, mut tasks)) = writers.take() {
                    let _ = writer_stop.send(true);
                    while tasks.join_next().await.is_some() {}
                }
            }
            _ => {}
        }
        let mut stop_now = stop.clone();
        tokio::select! {
            _ = stop_now.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(renew) => {}
        }
    }
    if let Some((writer_stop, mut tasks)) = writers.take() {
        let _ = writer_stop.send(true);
        while tasks.join_next().await.is_some() {}
        // What the followers saved last is published before the process goes.
        if let Some(sink) = &sink {
            loop {
                match feed::publish_pending(&stores.fenced, sink.as_ref()).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the feed could not be flushed; the next holder publishes it");
                        break;
                    }
                }
            }
        }
        if let Err(e) = stores.leases.release(VIEWS_LEASE, &options.holder).await {
            tracing::warn!(error = %e, "the views lease could not be released; it expires by itself");
        }
    }
}

/// Spawns the followers, the reactor, the timekeeper and the feed publisher, all reading
/// one log pump.
async fn start_writers<S, C, K, L>(
    engine: &Arc<Engine<S, C>>,
    stores: &HostStores<S, K, L>,
    options: &HostOptions,
    observer: &Arc<dyn HostObserver>,
    sink: &Option<Arc<dyn FeedSink>>,
    stop: &watch::Receiver<bool>,
) -> Result<JoinSet<()>, crate::EngineError>
where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
{
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
    {
        let (engine, fenced, stop) = (Arc::clone(engine), stores.fenced.clone(), stop.clone());
        let (tail, poll) = (Arc::clone(&tail), options.poll);
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
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                let wait = match feed::publish_pending(&fenced, sink.as_ref()).await {
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
    Ok(tasks)
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
