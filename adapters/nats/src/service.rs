//! `serve`: the command and query endpoints, and, in the one process that holds the views
//! lease, the projection followers, the follow-up reactor, the timekeeper and the feed
//! publisher.
//!
//! Why a lease: every process of the queue group answers commands (the store's exact
//! expected versions keep concurrent writers correct) and queries (from the stored
//! views), but a view must be folded and saved by one process at a time, and a row change
//! published by one. The holder writes its saves through a fenced checkpoint handle, so a
//! holder that lost the lease (paused, partitioned) cannot save any more: the save is
//! refused in its own transaction.
//!
//! Drain: on shutdown the endpoints unsubscribe, the requests already received are
//! answered, the followers stop, the feed outbox is published, the lease is released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt;
use async_nats::{jetstream, Client};
use dealreg_clock::Clock;
use dealreg_engine::registry;
use dealreg_engine::runner;
use dealreg_engine::tail::LogTail;
use dealreg_engine::{reactor, timekeeper, Engine};
use dealreg_events::{EventStore, GlobalPosition};
use dealreg_projections::deadlines::Deadlines;
use dealreg_views::{CheckpointStore, Leases};
use futures_util::{future, stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::{Metrics, ViewLag};
use crate::{command, feed, query, subject};

/// The lease the process folding the views holds.
pub const VIEWS_LEASE: &str = "views";
/// The micro service's name, and its queue group.
pub const SERVICE_NAME: &str = "dealreg";

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Who this process is, in the lease table and the logs.
    pub holder: String,
    /// How often the timekeeper issues what fell due.
    pub tick: Duration,
    /// How often followers look for appends of other processes.
    pub poll: Duration,
    /// How long the views lease lasts unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
    /// Whether the lease holder publishes the views' row changes to JetStream (the outbox
    /// keeps them when not, for a later holder that does).
    pub feeds: bool,
    /// Whether this process may take the views lease: fold the views, publish the feeds,
    /// run the reactor and the timekeeper. `false` (`serve --no-views`): it answers
    /// commands and queries only, from the views another `serve` of the store keeps, so
    /// folding never takes CPU from its command path.
    pub views: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            holder: format!("serve-{}", std::process::id()),
            tick: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(6),
            feeds: true,
            views: true,
        }
    }
}

/// The stores `serve` works on: the log, the views as every process reads them, the same
/// views through a handle fenced by the views lease (what the holder saves with), and
/// the leases.
pub struct Stores<S, K, L> {
    pub log: S,
    pub views: K,
    pub fenced: K,
    pub leases: L,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the NATS micro service could not start: {0}; check the user's permission to subscribe to dealreg.> and $SRV.>")]
    Service(String),
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
}

fn stop_signal(
    stop: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Runs the service on `client` until `shutdown` resolves, then drains.
pub async fn serve<S, C, K, L>(
    client: Client,
    engine: Arc<Engine<S, C>>,
    stores: Stores<S, K, L>,
    options: ServeOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError>
where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    L: Leases + Clone,
{
    let js = jetstream::new(client.clone());
    feed::ensure_stream(&js).await?;
    let service = client
        .service_builder()
        .description("dealreg: deal registration commands and queries; see docs/NATS.md")
        .queue_group(SERVICE_NAME)
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| ServeError::Service(e.to_string()))?;
    let service_error = |e: async_nats::Error| ServeError::Service(e.to_string());
    let mut endpoints = Vec::new();
    for name in dealreg_domain::Command::NAMES {
        let endpoint = service
            .endpoint_builder()
            .name(*name)
            .add(subject::command_endpoint(name))
            .await
            .map_err(service_error)?;
        endpoints.push(endpoint.map(|r| (Route::Command, r)).boxed());
    }
    // Every command subject, in a queue group of its own: it answers the names no endpoint
    // takes, and lets the others pass.
    let unknown = service
        .endpoint_builder()
        .name("unknown_command")
        .queue_group(format!("{SERVICE_NAME}-unknown"))
        .add(subject::ANY_COMMAND)
        .await
        .map_err(service_error)?;
    endpoints.push(
        unknown
            .filter(|r| {
                let name = r.message.subject.rsplit('.').next().unwrap_or_default();
                future::ready(!dealreg_domain::Command::NAMES.contains(&name))
            })
            .map(|r| (Route::UnknownCommand, r))
            .boxed(),
    );
    for (name, filter) in [
        ("partner_query", "dealreg.partner.*.query.*"),
        ("vendor_query", "dealreg.vendor.query.*"),
    ] {
        let endpoint = service
            .endpoint_builder()
            .name(name)
            .add(filter)
            .await
            .map_err(service_error)?;
        endpoints.push(endpoint.map(|r| (Route::Query, r)).boxed());
    }
    let mut requests = stream::select_all(endpoints);

    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = if options.views {
        tokio::spawn(hold_views(
            client.clone(),
            Arc::clone(&engine),
            stores.log.clone(),
            stores.views.clone(),
            stores.fenced.clone(),
            stores.leases.clone(),
            options.clone(),
            Arc::clone(&metrics),
            stop_rx.clone(),
        ))
    } else {
        tracing::info!(holder = %options.holder, "never takes the views lease (--no-views): commands and queries only");
        tokio::spawn(async {})
    };
    metrics.set_ready(true);
    tracing::info!(holder = %options.holder, "serving");

    let mut in_flight = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("draining: no new requests, answering those received");
                metrics.set_ready(false);
                break;
            }
            next = requests.next() => {
                let Some((route, request)) = next else { break };
                match route {
                    Route::Command | Route::UnknownCommand => command::spawn_answer(
                        &mut in_flight,
                        Arc::clone(&engine),
                        client.clone(),
                        Arc::clone(&metrics),
                        request,
                        route == Route::Command,
                    ),
                    Route::Query => {
                        let log = stores.log.clone();
                        let views = stores.views.clone();
                        let metrics = Arc::clone(&metrics);
                        let client = client.clone();
                        let vault = Arc::clone(engine.vault());
                        in_flight.spawn(async move {
                            answer_query(&client, &log, &views, &*vault, &metrics, request).await;
                        });
                    }
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Unsubscribe every endpoint, then answer what had arrived before the unsubscribe
    // (each endpoint's stream ends once its unsubscribe went out).
    if let Err(e) = service.stop().await {
        tracing::warn!(error = %e, "the micro service did not stop cleanly");
    }
    let grace = tokio::time::sleep(Duration::from_secs(2));
    let mut grace = std::pin::pin!(grace);
    loop {
        tokio::select! {
            next = requests.next() => {
                let Some((route, request)) = next else { break };
                if route == Route::Query {
                    let (log, views, metrics, client) = (stores.log.clone(), stores.views.clone(), Arc::clone(&metrics), client.clone());
                    let vault = Arc::clone(engine.vault());
                    in_flight.spawn(async move { answer_query(&client, &log, &views, &*vault, &metrics, request).await });
                } else {
                    command::spawn_answer(&mut in_flight, Arc::clone(&engine), client.clone(), Arc::clone(&metrics), request, route == Route::Command);
                }
            }
            _ = &mut grace => break,
        }
    }
    while in_flight.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    match writer.await {
        Ok(()) => {}
        Err(e) => tracing::error!(error = %e, "the views writer failed to stop cleanly"),
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flushing the NATS connection failed");
    }
    tracing::info!("drained");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Command,
    UnknownCommand,
    Query,
}

async fn answer_query<S: EventStore, K: CheckpointStore>(
    client: &Client,
    log: &S,
    views: &K,
    vault: &dyn dealreg_vault::KeyVault,
    metrics: &Metrics,
    request: async_nats::service::Request,
) {
    let started = Instant::now();
    let message = &request.message;
    let reply = match subject::query_address(&message.subject) {
        Some((asker, view)) => {
            query::answer(log, views, vault, &asker, &view, &message.payload).await
        }
        None => query::QueryReply::Refused {
            ok: false,
            error: dealreg_engine::RefusalBody {
                code: "unknown_view".into(),
                message: format!(
                    "`{}` is not a query subject; see docs/NATS.md",
                    message.subject
                ),
                details: serde_json::Value::Null,
            },
        },
    };
    let view = message.subject.rsplit('.').next().unwrap_or_default();
    let outcome = reply.refusal().map_or("ok", |e| e.code.as_str());
    metrics.query_done(view, outcome, started.elapsed());
    let Some(to) = message.reply.clone() else {
        return;
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    let sent = match reply.refusal() {
        None => request.respond(Ok(body.into())).await,
        Some(e) => {
            client
                .publish_with_headers(to, command::error_headers(&e.code, &e.message), body.into())
                .await
        }
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "a query reply could not be published");
    }
}

/// Takes and renews the views lease; while held, runs the writers. Returns once `stop`
/// is set, after the writers stopped, the feed was flushed and the lease released.
#[allow(clippy::too_many_arguments)]
async fn hold_views<S, C, K, L>(
    client: Client,
    engine: Arc<Engine<S, C>>,
    log: S,
    views: K,
    fenced: K,
    leases: L,
    options: ServeOptions,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    L: Leases,
{
    let js = jetstream::new(client);
    let mut writers: Option<(watch::Sender<bool>, JoinSet<()>)> = None;
    let renew = options.lease_ttl / 3;
    loop {
        let held = match leases
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
        metrics.set_holds_views(held);
        match (held, writers.is_some()) {
            (true, false) => {
                tracing::info!(holder = %options.holder, "took the views lease: folding views, publishing feeds, running the timekeeper");
                let (writer_stop, writer_rx) = watch::channel(false);
                let tasks = start_writers(
                    &js, &engine, &log, &views, &fenced, &options, &metrics, &writer_rx,
                );
                writers = Some((writer_stop, tasks));
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
        loop {
            match feed::publish_pending(&js, &fenced).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the feed could not be flushed; the next holder publishes it");
                    break;
                }
            }
        }
        if let Err(e) = leases.release(VIEWS_LEASE, &options.holder).await {
            tracing::warn!(error = %e, "the views lease could not be released; it expires by itself");
        }
    }
}

/// Spawns the followers, the reactor, the timekeeper and the feed publisher.
#[allow(clippy::too_many_arguments)]
fn start_writers<S, C, K>(
    js: &jetstream::Context,
    engine: &Arc<Engine<S, C>>,
    log: &S,
    views: &K,
    fenced: &K,
    options: &ServeOptions,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> JoinSet<()>
where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
{
    let mut tasks = JoinSet::new();
    // One read and one decode of each new event for every follower and the reactor.
    let tail = Arc::new(LogTail::new(log.clone()));
    let count = registry::projections::<S, K>().len();
    for index in 0..count {
        let (log, tail, fenced, stop, metrics) = (
            log.clone(),
            Arc::clone(&tail),
            fenced.clone(),
            stop.clone(),
            Arc::clone(metrics),
        );
        let poll = options.poll;
        tasks.spawn(async move {
            let projections = registry::projections::<S, K>();
            let projection = &projections[index];
            let (saved, mut seen) = watch::channel(GlobalPosition::ORIGIN);
            let name = projection.name;
            let lag = {
                let log = log.clone();
                let metrics = Arc::clone(&metrics);
                let stop = stop.clone();
                async move {
                    let mut behind_since: Option<Instant> = None;
                    let mut stop = stop;
                    loop {
                        let position = *seen.borrow_and_update();
                        let head = *log.head().borrow();
                        let events = head.0.saturating_sub(position.0);
                        let since = if events == 0 { None } else { Some(*behind_since.get_or_insert_with(Instant::now)) };
                        behind_since = since;
                        metrics.view_lag(name, ViewLag { events, seconds: since.map_or(0.0, |s| s.elapsed().as_secs_f64()) });
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                }
            };
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
        let (engine, fenced, stop) = (Arc::clone(engine), fenced.clone(), stop.clone());
        let poll = options.poll;
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
        let (engine, views, metrics, stop) = (
            Arc::clone(engine),
            views.clone(),
            Arc::clone(metrics),
            stop.clone(),
        );
        let tick = options.tick;
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                match runner::load::<Deadlines, K>(&views).await {
                    Ok((_, deadlines, _)) => match timekeeper::tick(&engine, &deadlines).await {
                        Ok(done) => metrics.timekeeper_ran(done.issued.len() as u64),
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
    if options.feeds {
        let (js, fenced, metrics, stop) = (
            js.clone(),
            fenced.clone(),
            Arc::clone(metrics),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut stop_now = stop.clone();
            loop {
                let wait = match feed::publish_pending(&js, &fenced).await {
                    Ok(0) => {
                        metrics.feed_published(0);
                        Duration::from_millis(20)
                    }
                    Ok(n) => {
                        metrics.feed_published(n as u64);
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
    tasks
}

/// A unique holder name for this process on this host.
pub fn holder_name() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}
