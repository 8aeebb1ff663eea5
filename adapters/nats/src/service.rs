//! `serve`: the command and query endpoints, and the views host
//! ([`dealreg_host::host`]) with the JetStream feeds as its sink: in the one process
//! that holds the views lease, the projection followers, the follow-up reactor, the
//! timekeeper and the feed publisher.
//!
//! Drain: on shutdown the endpoints unsubscribe, the requests already received are
//! answered, the followers stop, the feed outbox is published, the lease is released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt;
use async_nats::{jetstream, Client};
use dealreg_clock::Clock;
use dealreg_engine::Engine;
use dealreg_events::EventStore;
use dealreg_host::host::{self, HostOptions, HostStores};
use dealreg_views::{CheckpointStore, Leases, SharedDuties, Unshared};
use futures_util::{future, stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::{command, feed, query, subject};

pub use dealreg_host::host::VIEWS_LEASE;
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
    /// Whether this process answers commands and queries. `false` (`serve --views-only`):
    /// it registers no endpoint and only keeps the views (it takes the lease like any
    /// other), so the processes answering requests (`--no-views`) never fold.
    pub requests: bool,
    /// Replicas of the feed stream (3 on a cluster, so the feed survives a node).
    pub feed_replicas: usize,
    /// How long the drain after shutdown may take. Past it, `serve` returns
    /// [`ServeError::DrainUnfinished`] naming what was left, rather than waiting for a
    /// server that may never come back.
    pub drain_deadline: Duration,
    /// The deployment's further duties (the CRM sync, checkpoint signing): run by the
    /// process holding the duties' lease only, whichever processes were given them.
    pub duties: Vec<host::Duty>,
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
            requests: true,
            feed_replicas: 1,
            drain_deadline: Duration::from_secs(30),
            duties: Vec::new(),
        }
    }
}

/// The stores `serve` works on: the log, the views as every process reads them, the same
/// views through a handle fenced by the views lease (what the holder saves with), the
/// leases of the views file, and the deployment's shared duties when every host keeps its
/// own views file beside a shared log (`None`: one views file).
pub struct Stores<S, K, L, D = Unshared> {
    pub log: S,
    pub views: K,
    pub fenced: K,
    pub leases: L,
    pub shared: Option<D>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the NATS micro service could not start: {0}; check the user's permission to subscribe to dealreg.> and $SRV.>")]
    Service(String),
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
    /// The drain did not finish by its deadline (the NATS server went away during it, say).
    #[error("the drain did not finish within {after:?}: {left}; restart `serve` (or another process of the deployment takes over): an unanswered request is retried by its client with the same idempotency key, and feed changes not yet published stay in the views outbox for the next holder of the views lease")]
    DrainUnfinished { after: Duration, left: String },
}

/// Runs the service on `client` until `shutdown` resolves, then drains.
pub async fn serve<S, C, K, L, D>(
    client: Client,
    engine: Arc<Engine<S, C>>,
    stores: Stores<S, K, L, D>,
    options: ServeOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError>
where
    S: EventStore + Clone,
    C: Clock + Clone,
    K: CheckpointStore,
    L: Leases + Clone,
    D: SharedDuties,
{
    let js = jetstream::new(client.clone());
    feed::ensure_stream(&js, options.feed_replicas).await?;
    let (service, mut requests) = if options.requests {
        let (service, requests) = endpoints(&client).await?;
        (Some(service), requests)
    } else {
        tracing::info!(holder = %options.holder, "answers no request (--views-only): keeps the views only");
        (None, stream::select_all(Vec::new()))
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = if options.views {
        let sink: Option<Arc<dyn dealreg_host::feed::FeedSink>> = options
            .feeds
            .then(|| Arc::new(feed::JetStreamFeed::new(js.clone())) as _);
        tokio::spawn(host::hold_views(
            Arc::clone(&engine),
            HostStores {
                log: stores.log.clone(),
                views: stores.views.clone(),
                fenced: stores.fenced.clone(),
                leases: stores.leases.clone(),
                shared: stores.shared.clone(),
            },
            HostOptions {
                holder: options.holder.clone(),
                tick: options.tick,
                poll: options.poll,
                lease_ttl: options.lease_ttl,
                duties: options.duties.clone(),
            },
            Arc::clone(&metrics) as Arc<dyn host::HostObserver>,
            sink,
            stop_rx.clone(),
        ))
    } else {
        tracing::info!(holder = %options.holder, "never takes the views lease (--no-views): commands and queries only");
        tokio::spawn(async {})
    };
    metrics.set_ready(true);
    tracing::info!(holder = %options.holder, "serving");

    let mut in_flight = JoinSet::new();
    // One way a received request is answered, while serving and during the drain.
    let answer =
        |in_flight: &mut JoinSet<()>, route: Route, request: async_nats::service::Request| {
            if route == Route::Query {
                let (log, views) = (stores.log.clone(), stores.views.clone());
                let (metrics, client) = (Arc::clone(&metrics), client.clone());
                let vault = Arc::clone(engine.vault());
                in_flight.spawn(async move {
                    answer_query(&client, &log, &views, &*vault, &metrics, request).await;
                });
            } else {
                command::spawn_answer(
                    in_flight,
                    Arc::clone(&engine),
                    client.clone(),
                    Arc::clone(&metrics),
                    request,
                    route == Route::Command,
                );
            }
        };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("draining: no new requests, answering those received");
                metrics.set_ready(false);
                break;
            }
            next = requests.next(), if options.requests => {
                let Some((route, request)) = next else { break };
                answer(&mut in_flight, route, request);
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Everything below runs against one deadline: a server gone during the drain must not
    // keep the process waiting for it.
    let deadline = tokio::time::Instant::now() + options.drain_deadline;
    let mut left: Vec<String> = Vec::new();
    // Unsubscribe every endpoint, then answer what had arrived before the unsubscribe
    // (each endpoint's stream ends once its unsubscribe went out).
    if let Some(service) = service {
        match tokio::time::timeout_at(deadline, service.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the micro service did not stop cleanly"),
            Err(_) => left.push("the endpoints could not be unsubscribed".into()),
        }
    }
    let grace = tokio::time::sleep_until(
        deadline.min(tokio::time::Instant::now() + Duration::from_secs(2)),
    );
    let mut grace = std::pin::pin!(grace);
    loop {
        tokio::select! {
            next = requests.next() => {
                let Some((route, request)) = next else { break };
                answer(&mut in_flight, route, request);
            }
            _ = &mut grace => break,
        }
    }
    let answered = tokio::time::timeout_at(deadline, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if answered.is_err() {
        left.push(format!(
            "{} request(s) received were not answered",
            in_flight.len()
        ));
        in_flight.abort_all();
    }
    let _ = stop_tx.send(true);
    let mut writer = writer;
    match tokio::time::timeout_at(deadline, &mut writer).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the views writer failed to stop cleanly"),
        Err(_) => {
            writer.abort();
            left.push("the views writer had not stopped (feed changes unpublished, the views lease left to expire)".into());
        }
    }
    match tokio::time::timeout_at(deadline, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing the NATS connection failed"),
        Err(_) => left.push("replies and feed messages already sent to the NATS client were not flushed to the server".into()),
    }
    if !left.is_empty() {
        let left = left.join("; ");
        tracing::error!(%left, deadline_ms = options.drain_deadline.as_millis() as u64, "the drain did not finish in time");
        return Err(ServeError::DrainUnfinished {
            after: options.drain_deadline,
            left,
        });
    }
    tracing::info!("drained");
    Ok(())
}

/// The requests `serve` answers, one stream over every endpoint.
type Requests = stream::SelectAll<
    futures_util::stream::BoxStream<'static, (Route, async_nats::service::Request)>,
>;

/// Starts the micro service and its endpoints: every command, the unknown-command
/// catch-all, the partner and vendor queries.
async fn endpoints(
    client: &Client,
) -> Result<(async_nats::service::Service, Requests), ServeError> {
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
    Ok((service, stream::select_all(endpoints)))
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
    let max_payload = client.server_info().max_payload;
    let mut reply = match subject::query_address(&message.subject) {
        Some((asker, view)) => {
            query::answer(
                log,
                views,
                vault,
                &asker,
                &view,
                &message.payload,
                max_payload,
            )
            .await
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
    let mut body = serde_json::to_vec(&reply).unwrap_or_default();
    // The pages are cut to fit; this is the last guard, so that a reply the server would
    // drop (leaving the asker with no answer at all) is a coded refusal instead.
    if body.len() > max_payload {
        reply = query::too_large(body.len(), max_payload);
        body = serde_json::to_vec(&reply).unwrap_or_default();
    }
    let view = message.subject.rsplit('.').next().unwrap_or_default();
    let outcome = reply.refusal().map_or("ok", |e| e.code.as_str());
    metrics.query_done(view, outcome, started.elapsed());
    let Some(to) = message.reply.clone() else {
        return;
    };
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

/// A unique holder name for this process on this host.
pub fn holder_name() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}
