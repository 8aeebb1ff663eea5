//! `dealreg serve`: the engine on NATS (see `adapters/nats` and docs/NATS.md), on the
//! embedded SQLite store.
//!
//! Several `serve` processes on one host may share one store file: they form one queue
//! group for commands and queries, and one of them at a time (the holder of the views
//! lease) folds the views, publishes the feeds and runs the timekeeper. Processes on
//! different hosts need a distributed store, not a shared SQLite file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dealreg_clock::{SharedClock, SystemClock};
use dealreg_domain::Policy;
use dealreg_engine::Engine;
use dealreg_host::host::Duty;
use dealreg_nats::metrics::Metrics;
use dealreg_nats::service::{holder_name, ServeOptions, Stores};

#[derive(Args)]
pub struct ServeArgs {
    /// The NATS server(s), comma-separated.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "DEALREG_NATS_URL"
    )]
    nats_url: String,
    // Credentials and TLS: the global --nats-* options (cli/nats_access.rs), which every
    // NATS connection of the job uses, the store's and the key vault's too.
    /// Serve Prometheus metrics, /healthz and /readyz here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Seconds between timekeeper ticks.
    #[arg(long, default_value_t = 60)]
    tick_secs: u64,
    /// Policy TOML adopted when the store has no policy yet (default: the built-in one).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Memory for folded accounts and partners kept between commands, in MiB.
    #[arg(long, default_value_t = 256)]
    state_cache_mib: usize,
    /// Sign the log's head with this key (from `dealreg audit keygen`) every
    /// --sign-every seconds, appending each signed checkpoint to --checkpoints.
    #[arg(long, requires = "checkpoints")]
    signing_key: Option<PathBuf>,
    /// The auditor's checkpoint file the signed checkpoints are appended to.
    #[arg(long, requires = "signing_key")]
    checkpoints: Option<PathBuf>,
    #[arg(long, default_value_t = 300)]
    sign_every: u64,
    /// Answer commands and queries only: never take the views lease, so this process
    /// folds no view, publishes no feed and runs no reactor or timekeeper. Another
    /// `serve` of the same store (without this flag) keeps the views; until one does,
    /// queries answer from the views as last saved, and a query for "at least position P"
    /// times out.
    #[arg(long, conflicts_with = "views_only")]
    no_views: bool,
    /// Keep the views only: answer no command and no query; take the views lease, fold
    /// the views, publish the feeds, run the reactor and the timekeeper. Run it beside
    /// `serve --no-views` processes on the same store, so that folding never takes CPU
    /// from the command path (docs/DEPLOYMENT.md).
    #[arg(long)]
    views_only: bool,
    /// Replicas of the feed stream DEALREG_FEED (1 to 5). Default: the store's replicas
    /// for a JetStream log (`replicas=3` on a cluster), else 1.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    feed_replicas: Option<u8>,
    /// Keep this CRM (salesforce or hubspot) in step with the feed this deployment
    /// publishes (docs/CRM.md), every --crm-every seconds. Configure it on one process of
    /// the deployment. Credentials come from the environment, as for `dealreg crm sync`.
    #[arg(long)]
    crm_target: Option<dealreg_crm::Target>,
    /// The CRM mapping (default: the built-in one).
    #[arg(long, requires = "crm_target")]
    crm_config: Option<PathBuf>,
    /// The CRM adapter's state file (default: `<store>.crm.db` beside a SQLite store).
    #[arg(long, requires = "crm_target")]
    crm_state: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    crm_every: u64,
    /// Send alerts by e-mail and Slack as these settings say (docs/NOTIFICATIONS.md): a
    /// duty of the deployment, run by the process holding its duties.
    #[arg(long)]
    notify_config: Option<PathBuf>,
    /// Seconds between the notifier's rounds.
    #[arg(long, default_value_t = 2, requires = "notify_config")]
    notify_every: u64,
    /// Serve the pages here (e.g. 127.0.0.1:8080; docs/PAGES.md): the channel team's
    /// dashboard, partners' pages and registration form, and, with --notify-config, the
    /// alerts' signed action links (the notifier's `links_base` is how people reach it).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The users file of the pages (`dealreg users add`); partner links are signed with
    /// `<FILE>.key`, created beside it when missing.
    #[arg(long, requires = "http")]
    users: Option<PathBuf>,
    /// Mark the pages' cookies `Secure` (the pages are reached over HTTPS via a proxy).
    #[arg(long, requires = "http")]
    secure_cookies: bool,
    /// Receive e-mail replies to alerts here (SMTP; e.g. 127.0.0.1:2525, behind the MX of
    /// the notifier's `reply_domain`): each becomes a note on its registration.
    #[arg(long, requires = "notify_config")]
    smtp_inbound: Option<SocketAddr>,
    /// Seconds a drain (after SIGTERM) may take: answering the requests received,
    /// publishing the feed, releasing the lease. Past it the process exits with 1, naming
    /// what was left (a NATS server gone during the drain cannot take the rest).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_secs: u64,
}

/// Signs the log's head every `every` while it moves, appending each signature to `out`,
/// until `stop`. The signer walks only what was appended since its last signature. A duty
/// of the deployment: only the holder of the duties signs.
async fn sign_on_interval<S: dealreg_events::EventStore>(
    store: S,
    key: ed25519_dalek::SigningKey,
    out: PathBuf,
    every: Duration,
    mut stop: dealreg_host::host::DutyStop,
) {
    use std::io::Write;
    let mut signer = dealreg_events::audit::HeadSigner::new();
    let mut signed_events = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        let checkpoint = match signer.sign(&store, &key, chrono::Utc::now()).await {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!(error = %e, "the log's head could not be signed; trying again at the next interval");
                continue;
            }
        };
        if signed_events == Some(checkpoint.events) {
            continue;
        }
        let out = out.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            let line = serde_json::to_string(&checkpoint).map_err(|e| e.to_string())?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .map_err(|e| format!("cannot open {}: {e}", out.display()))?;
            writeln!(file, "{line}")
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(checkpoint.events)
        })
        .await;
        match written {
            Ok(Ok(events)) => signed_events = Some(events),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the signed checkpoint could not be written; trying again at the next interval")
            }
            Err(e) => tracing::warn!(error = %e, "writing the signed checkpoint failed to run"),
        }
    }
}

/// The notifier as a duty of the deployment, and the listeners people act through (the
/// link pages, the reply inbox), which every process serves.
async fn alerts_beside_serve<S: dealreg_events::EventStore, C: dealreg_clock::Clock>(
    spec: &super::store::StoreSpec,
    config_path: &std::path::Path,
    engine: Arc<Engine<S, C>>,
    every: Duration,
    links: Option<tokio::net::TcpListener>,
    smtp_inbound: Option<SocketAddr>,
) -> Result<Duty, String> {
    use super::notifier::{Notifier, NotifyConfig};
    let config = NotifyConfig::read(config_path)?;
    let state_path = config.state_path(spec.sqlite_path())?;
    let vault = super::store::vault(spec, dealreg_vault::KeyMaterial::Random).await?;
    let store = super::store::open_read(spec).await?;
    let notifier = Notifier::new(store, Arc::clone(&vault), config, &state_path).await?;
    let key = notifier.link_key();
    let state = Arc::clone(&notifier.state);
    let clock: dealreg_actions::Clock = Arc::new(chrono::Utc::now);
    if let Some(listener) = links {
        let runner = Arc::new(super::actions::LinkActions {
            engine: Arc::clone(&engine),
        });
        tokio::spawn(dealreg_actions::serve_links(
            listener,
            Arc::clone(&key),
            runner,
            Arc::clone(&clock),
            std::future::pending::<()>(),
        ));
    }
    if let Some(addr) = smtp_inbound {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--smtp-inbound {addr}: {e}"))?;
        let domain = notifier
            .reply_domain()
            .ok_or("--smtp-inbound needs `reply_domain` in the notifier settings")?;
        let receiver = Arc::new(super::actions::ReplyNotes {
            engine: Arc::clone(&engine),
            vault,
            state: Arc::clone(&state),
            aside: dealreg_actions::Aside::new(super::actions::aside_dir(&state_path)),
        });
        tokio::spawn(dealreg_actions::serve_inbound(
            listener,
            dealreg_actions::InboundSettings::new(domain),
            key,
            receiver,
            clock,
            std::future::pending::<()>(),
        ));
        eprintln!("dealreg serve: e-mail replies on smtp://{addr}");
    }
    let notifier = Arc::new(tokio::sync::Mutex::new(notifier));
    Ok(Duty::new("alerts", move |stop| {
        super::notifier::run(Arc::clone(&notifier), every, stop)
    }))
}

/// The service's connection: the servers of `--nats-url`, the job's credentials, a probe
/// that moves to another server when this one goes silent. Returns at once; the first
/// request waits for the server.
async fn connect(args: &ServeArgs) -> Result<async_nats::Client, String> {
    // Several servers, comma-separated: dealreg-nats-connect splits them.
    dealreg_nats_connect::connect_retrying(
        std::slice::from_ref(&args.nats_url),
        &super::nats_access::access(),
        &format!("dealreg-serve-{}", std::process::id()),
        super::nats_access::liveness(),
    )
    .await
    .map(|connection| connection.client)
    .map_err(|e| format!("--nats-url: {e}"))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be caught; Ctrl-C still drains");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn run(spec: &super::store::StoreSpec, args: ServeArgs) -> Result<ExitCode, String> {
    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read policy {}: {e}", path.display()))?;
            Some(Policy::from_toml(&text).map_err(|e| format!("policy {}: {e}", path.display()))?)
        }
        None => None,
    };
    let (store, checkpoints) = super::store::create_or_open(spec).await?;
    let holder = holder_name();
    let fenced = checkpoints.fenced(dealreg_nats::service::VIEWS_LEASE, &holder);
    let engine = Arc::new(
        Engine::open(store.clone(), SharedClock::new(SystemClock), policy)
            .await
            .map_err(|e| e.to_string())?
            .with_cache_limit(args.state_cache_mib << 20)
            .with_vault(super::store::vault(spec, dealreg_vault::KeyMaterial::Random).await?),
    );
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
        tokio::spawn(dealreg_nats::metrics::serve_http(
            listener,
            Arc::clone(&metrics),
        ));
        // The SQLite writer's figures; other backends have no writer of their own here.
        if let Some(sqlite) = store.sqlite().cloned() {
            let (store, metrics) = (sqlite, Arc::clone(&metrics));
            tokio::spawn(async move {
                loop {
                    let s = store.stats();
                    let per_commit = if s.commits == 0 {
                        0.0
                    } else {
                        s.jobs as f64 / s.commits as f64
                    };
                    metrics.set_store(vec![
                        (
                            "dealreg_store_commits".into(),
                            "Group commits of the SQLite writer (each one fsync of the WAL)."
                                .into(),
                            s.commits as f64,
                        ),
                        (
                            "dealreg_store_appends".into(),
                            "Appends the SQLite writer answered.".into(),
                            s.jobs as f64,
                        ),
                        (
                            "dealreg_store_failed_groups".into(),
                            "Groups that did not commit (full disk, I/O error).".into(),
                            s.failed_groups as f64,
                        ),
                        (
                            "dealreg_store_appends_per_commit".into(),
                            "Mean group-commit size since start.".into(),
                            per_commit,
                        ),
                    ]);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    }
    // The deployment's further duties: run by the process that holds its duties only.
    let mut duties = Vec::new();
    if let (Some(key), Some(out)) = (&args.signing_key, &args.checkpoints) {
        let text = std::fs::read_to_string(key)
            .map_err(|e| format!("cannot read the signing key {}: {e}", key.display()))?;
        let key = dealreg_events::audit::signing_key(&text)
            .map_err(|e| format!("{}: {e}", key.display()))?;
        let (store, out) = (super::store::open_read(spec).await?, out.clone());
        let every = Duration::from_secs(args.sign_every.max(1));
        duties.push(Duty::new("checkpoint signing", move |stop| {
            sign_on_interval(store.clone(), key.clone(), out.clone(), every, stop)
        }));
    }
    // The pages' listener; the action links' own server listens on loopback behind it
    // (the pages hand it `/a/...`), so one address serves both.
    let pages_listener = match args.http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--http {addr}: {e}"))?,
        ),
        None => None,
    };
    let (links_listener, links_addr) = match (&pages_listener, &args.notify_config) {
        (Some(_), Some(_)) => {
            let inner = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot listen for the action links on loopback: {e}"))?;
            let addr = inner.local_addr().map_err(|e| e.to_string())?;
            (Some(inner), Some(addr))
        }
        _ => (None, None),
    };
    if let (Some(listener), Some(addr)) = (pages_listener, args.http) {
        let pages = super::pages::Pages::new(
            Arc::clone(&engine),
            spec.clone(),
            args.users.clone(),
            args.secure_cookies,
            links_addr,
        )?;
        tokio::spawn(super::pages::serve_pages(
            listener,
            Arc::new(pages),
            std::future::pending::<()>(),
        ));
        eprintln!("dealreg serve: pages on http://{addr}");
        if links_addr.is_some() {
            eprintln!("dealreg serve: action links on http://{addr}");
        }
    }
    if let Some(path) = &args.notify_config {
        duties.push(
            alerts_beside_serve(
                spec,
                path,
                Arc::clone(&engine),
                Duration::from_secs(args.notify_every.max(1)),
                links_listener,
                args.smtp_inbound,
            )
            .await?,
        );
    }
    let client = connect(&args).await?;
    if let Some(target) = args.crm_target {
        duties.push(
            super::crm::sync_beside_serve(
                spec,
                client.clone(),
                target,
                args.crm_config.clone(),
                args.crm_state.clone(),
                Duration::from_secs(args.crm_every.max(1)),
            )
            .await?,
        );
    }
    let options = ServeOptions {
        holder,
        tick: Duration::from_secs(args.tick_secs.max(1)),
        views: !args.no_views,
        requests: !args.views_only,
        feed_replicas: match (args.feed_replicas, spec) {
            (Some(n), _) => usize::from(n),
            (None, super::store::StoreSpec::JetStream(js)) => js.replicas,
            (None, _) => 1,
        },
        drain_deadline: Duration::from_secs(args.drain_secs),
        duties,
        ..ServeOptions::default()
    };
    eprintln!(
        "dealreg serve: {} on NATS {} (store {})",
        options.holder,
        dealreg_nats_connect::redact(&args.nats_url),
        spec
    );
    // A log several hosts share: each host folds its own views file, and one process of
    // the deployment publishes the feeds, reacts and keeps time, by a lease kept on
    // JetStream beside the log (docs/DEPLOYMENT.md).
    let shared = match spec {
        super::store::StoreSpec::Sqlite(_) => None,
        super::store::StoreSpec::JetStream(_) | super::store::StoreSpec::Kurrent(_) => Some(
            dealreg_nats::duties::JetStreamDuties::open(client.clone(), options.feed_replicas)
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    dealreg_nats::serve(
        client,
        engine,
        Stores {
            log: store,
            views: checkpoints.clone(),
            fenced,
            leases: checkpoints.clone(),
            shared,
        },
        options,
        metrics,
        shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!("dealreg serve: drained, exiting");
    Ok(ExitCode::SUCCESS)
}
