//! `dealreg crm ...`: the CRM adapters (adapters/crm) on this store: outbound sync from the
//! views, the dead-letter list, and the HubSpot webhook endpoint.
//!
//! The changes come from the views file in-process: the published views (the catalogue's
//! views with published tables, in the order the mapping first names them) are brought
//! up to date from their checkpoints, and their rows are handed to the sync in pages; the cursor is the views' log position and the page. A
//! record whose fields are as the adapter last wrote them is not sent, so a pass over
//! rows that did not change costs reads, not CRM requests.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use dealreg_clock::SystemClock;
use dealreg_crm::hubspot::HubspotClient;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::sync::{ChangeSource, Outbound, SyncError, SyncReport};
use dealreg_crm::webhook::{CommandSink, HubspotInbound};
use dealreg_crm::{CrmConfig, SyncState, Target, ViewChange};
use dealreg_engine::Engine;
use dealreg_host::feed::{self, Audience};
use dealreg_host::registry::Catalogue;
use dealreg_host::runner::CatchUp;
use dealreg_views::{CheckpointStore, FeedEntry};

use super::store::{Log, StoreSpec};

#[derive(Subcommand)]
pub enum CrmJob {
    /// Upsert what changed in the views into the CRM, from where this adapter stopped;
    /// with --follow, keep doing so every --every seconds until interrupted.
    Sync {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Changes per batch (the CRM's own batches are 200 for Salesforce, 100 for HubSpot).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Read the view changes from the JetStream feed `dealreg serve` publishes
        /// (DEALREG_FEED) on these servers (nats://host:port[,...]) instead of the views
        /// file: for a deployment whose views live in another process or host.
        #[arg(long)]
        feed: Option<String>,
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 5)]
        every: u64,
    },
    /// The adapter's cursor, the records it wrote, its dead-letter list with the CRM's
    /// errors, and the latest bad input a CRM sent.
    Status {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Send the dead-letter list again (after fixing the CRM or crm.toml); records the CRM
    /// now accepts leave the list.
    Retry {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Poll Salesforce Opportunities changed since the last poll (by SystemModstamp):
    /// closed won / lost with a registration id become mark_won / mark_lost, those without
    /// one become record_direct_opportunity. With --follow, every --every seconds.
    Poll {
        #[command(flatten)]
        adapter: AdapterArgs,
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 60)]
        every: u64,
    },
    /// Describe every object and field the mapping needs in the CRM and name each one that
    /// is missing, mistyped or not writable (exit 2); nothing is written. `crm sync` and
    /// `crm poll` run it first.
    Check {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Show what the CRM needs for the mapping (fields, objects, access for the
    /// integration user, and the steps no API takes); with --apply, create it. Running it
    /// again creates nothing.
    Setup {
        #[command(flatten)]
        adapter: AdapterArgs,
        #[arg(long)]
        apply: bool,
    },
    /// Serve the HubSpot webhook endpoint (v3 signatures) until interrupted: deal stage
    /// changes become mark_won / mark_lost, deals direct sales created become
    /// record_direct_opportunity (legacy deal.* and generic object.* subscriptions). A
    /// delivery is answered at once and its events processed from the state file.
    Webhook {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Where to listen, e.g. 127.0.0.1:8787.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The URL HubSpot calls, without the path (https://hooks.example.com): the
        /// signature covers it.
        #[arg(long)]
        public_url: String,
    },
}

#[derive(clap::Args)]
pub struct AdapterArgs {
    /// salesforce or hubspot.
    #[arg(long)]
    target: Target,
    /// The mapping (docs/CRM.md); the default mapping when left out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The adapter's state file (cursor, written records, dead letters); default: beside
    /// the store, `<store>.crm.db`.
    #[arg(long)]
    state: Option<PathBuf>,
}

impl AdapterArgs {
    fn config(&self) -> Result<CrmConfig, String> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                CrmConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            None => CrmConfig::default_mapping().map_err(|e| e.to_string()),
        }
    }

    fn state(&self, spec: &StoreSpec) -> Result<Arc<SyncState>, String> {
        let path = match (&self.state, spec.sqlite_path()) {
            (Some(path), _) => path.clone(),
            (None, Some(store)) => {
                let mut name = store.as_os_str().to_owned();
                name.push(".crm.db");
                PathBuf::from(name)
            }
            (None, None) => {
                return Err("a store that is not a SQLite file has no default CRM state file; pass --state PATH".into());
            }
        };
        SyncState::open(&path)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

fn env(name: &str, what: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set: {what}"))
}

fn salesforce(config: &CrmConfig) -> Result<SalesforceClient, String> {
    let settings = config.salesforce.clone();
    let id = env(&settings.client_id_env, "the connected app's consumer key")?;
    let secret = env(
        &settings.client_secret_env,
        "the connected app's consumer secret",
    )?;
    SalesforceClient::new(settings, id, secret).map_err(|e| e.to_string())
}

fn hubspot(config: &CrmConfig) -> Result<HubspotClient, String> {
    let token = env(&config.hubspot.token_env, "the private app's access token")?;
    let mut client =
        HubspotClient::new(&config.hubspot.base_url, token).map_err(|e| e.to_string())?;
    // A spent daily limit pauses until the account's midnight (`crm status` says so).
    client.daily_reset_utc_offset_minutes = config.hubspot.daily_reset_utc_offset_minutes;
    Ok(client)
}

pub async fn run(spec: &StoreSpec, job: CrmJob) -> Result<ExitCode, String> {
    match job {
        CrmJob::Sync {
            adapter,
            batch,
            feed,
            follow,
            every,
        } => {
            let config = adapter.config()?;
            let state = adapter.state(spec)?;
            let feed = match feed {
                Some(urls) => Some(Feed::connect(&urls).await?),
                None => None,
            };
            let source = feed.as_ref().map_or("views", |_| "feed");
            match adapter.target {
                Target::Salesforce => {
                    let client = salesforce(&config)?;
                    // The pre-flight check: an org without a mapped field would refuse
                    // every batch; nothing is sent.
                    if let Some(refused) = salesforce_check(&config, &client).await? {
                        return Ok(refused);
                    }
                    let outbound = outbound(adapter.target, source, client, config, state);
                    sync(spec, feed, outbound, batch, follow, every).await
                }
                Target::Hubspot => {
                    let client = hubspot(&config)?;
                    // The same pre-flight check for HubSpot: properties and the board.
                    if let Some(refused) = hubspot_check(&config, &client).await? {
                        return Ok(refused);
                    }
                    let outbound = outbound(adapter.target, source, client, config, state);
                    sync(spec, feed, outbound, batch, follow, every).await
                }
            }
        }
        CrmJob::Status { adapter } => status(spec, &adapter),
        CrmJob::Check { adapter } => {
            let config = adapter.config()?;
            if adapter.target == Target::Hubspot {
                let client = hubspot(&config)?;
                return Ok(match hubspot_check(&config, &client).await? {
                    None => {
                        println!(
                            "check: the portal has every property and the board the mapping needs"
                        );
                        ExitCode::SUCCESS
                    }
                    Some(refused) => refused,
                });
            }
            let client = salesforce(&config)?;
            Ok(match salesforce_check(&config, &client).await? {
                None => {
                    println!("check: the org has every object and field the mapping needs");
                    ExitCode::SUCCESS
                }
                Some(refused) => refused,
            })
        }
        CrmJob::Setup { adapter, apply } => {
            let config = adapter.config()?;
            if adapter.target == Target::Hubspot {
                let client = hubspot(&config)?;
                return setup_hubspot(&config, &client, apply).await;
            }
            let client = salesforce(&config)?;
            setup_salesforce(&config, &client, apply).await
        }
        CrmJob::Retry { adapter } => {
            let config = adapter.config()?;
            let state = adapter.state(spec)?;
            let report = match adapter.target {
                Target::Salesforce => {
                    let client = salesforce(&config)?;
                    outbound(adapter.target, "views", client, config, state)
                        .retry_dead_letters()
                        .await
                }
                Target::Hubspot => {
                    let client = hubspot(&config)?;
                    outbound(adapter.target, "views", client, config, state)
                        .retry_dead_letters()
                        .await
                }
            }
            .map_err(|e| e.to_string())?;
            print_report("retried", &report);
            Ok(if report.dead_lettered == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        CrmJob::Webhook {
            adapter,
            listen,
            public_url,
        } => webhook(spec, &adapter, listen, public_url).await,
        CrmJob::Poll {
            adapter,
            follow,
            every,
        } => poll(spec, &adapter, follow, every).await,
    }
}

/// The HubSpot check (properties of each mapped object, the board): `None` when the
/// portal has what the mapping needs; otherwise each finding is printed and the exit code
/// to end with (2).
async fn hubspot_check(
    config: &CrmConfig,
    client: &HubspotClient,
) -> Result<Option<ExitCode>, String> {
    use dealreg_crm::setup_hubspot as hs;
    let requirements = hs::requirements(config);
    let findings = hs::check(client, config, &requirements)
        .await
        .map_err(|e| format!("crm check: {e}"))?;
    Ok(refused_by_check("the HubSpot portal", "hubspot", &findings))
}

/// The marker lines around the crm.toml lines `crm setup --target hubspot` prints.
pub const BOARD_TOML_BEGIN: &str = "# --- crm.toml, [hubspot] section: the board's ids ---";
pub const BOARD_TOML_END: &str = "# --- end ---";

async fn setup_hubspot(
    config: &CrmConfig,
    client: &HubspotClient,
    apply: bool,
) -> Result<ExitCode, String> {
    use dealreg_crm::setup_hubspot as hs;
    let requirements = hs::requirements(config);
    let findings = hs::check(client, config, &requirements)
        .await
        .map_err(|e| format!("crm setup: {e}"))?;
    let steps = hs::plan(&findings);
    let automatic = steps.iter().filter(|(_, a)| a.is_some()).count();
    if !apply {
        println!("setup would take {} steps:", steps.len());
        for (step, _) in &steps {
            println!("  {step}");
        }
        if automatic > 0 {
            println!("run again with --apply to take the {automatic} steps that are not by hand");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let applied = hs::apply(client, &steps)
        .await
        .map_err(|e| format!("crm setup --apply: {e}"))?;
    println!("setup: {} done", applied.done.len());
    for line in &applied.done {
        println!("  {line}");
    }
    for (step, _) in steps.iter().filter(|(s, _)| s.by_hand) {
        println!("  still to do {step}");
    }
    if let Some(board) = &applied.board {
        println!("HubSpot gave the board and its stages their own ids; put them in crm.toml (replacing [hubspot] pipeline):");
        println!("{BOARD_TOML_BEGIN}");
        print!("{}", hs::board_toml(board));
        println!("{BOARD_TOML_END}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The Salesforce check: `None` when the org has what the mapping needs; otherwise each
/// finding is printed and the exit code to end with (2).
async fn salesforce_check(
    config: &CrmConfig,
    client: &SalesforceClient,
) -> Result<Option<ExitCode>, String> {
    let requirements = dealreg_crm::setup_salesforce::requirements(config);
    let findings = dealreg_crm::setup_salesforce::check(client, &requirements)
        .await
        .map_err(|e| format!("crm check: {e}"))?;
    Ok(refused_by_check(
        "the Salesforce org",
        "salesforce",
        &findings,
    ))
}

/// What `crm check` found missing in `crm` (a portal, an org), printed with the setup
/// that fixes it: exit 2, nothing sent; `None` when nothing is missing.
fn refused_by_check(
    crm: &str,
    target: &str,
    findings: &[impl std::fmt::Display],
) -> Option<ExitCode> {
    if findings.is_empty() {
        return None;
    }
    eprintln!(
        "crm check: {crm} lacks what the mapping needs ({} findings); nothing was sent:",
        findings.len()
    );
    for finding in findings {
        eprintln!("  {finding}");
    }
    eprintln!("`dealreg crm setup --target {target}` shows what would fix it; --apply does it");
    Some(ExitCode::from(2))
}

async fn setup_salesforce(
    config: &CrmConfig,
    client: &SalesforceClient,
    apply: bool,
) -> Result<ExitCode, String> {
    use dealreg_crm::setup_salesforce as sf;
    let requirements = sf::requirements(config);
    let findings = sf::check(client, &requirements)
        .await
        .map_err(|e| format!("crm setup: {e}"))?;
    let steps = sf::plan(config, &requirements, &findings);
    let automatic = steps.iter().filter(|(_, a)| a.is_some()).count();
    if !apply {
        println!("setup would take {} steps:", steps.len());
        for (step, _) in &steps {
            println!("  {step}");
        }
        if automatic > 0 {
            println!("run again with --apply to take the {automatic} steps that are not by hand");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let done = sf::apply(client, &steps)
        .await
        .map_err(|e| format!("crm setup --apply: {e}"))?;
    println!("setup: {} done", done.len());
    for line in &done {
        println!("  {line}");
    }
    for (step, _) in steps.iter().filter(|(s, _)| s.by_hand) {
        println!("  still to do {step}");
    }
    Ok(ExitCode::SUCCESS)
}

fn outbound<C: dealreg_crm::CrmClient>(
    target: Target,
    source: &str,
    client: C,
    config: CrmConfig,
    state: Arc<SyncState>,
) -> Outbound<C> {
    Outbound {
        config,
        target,
        client,
        state,
        clock: Arc::new(SystemClock),
        adapter: format!("{}/{source}", target.name()),
        backoff: Duration::from_millis(500),
    }
}

fn print_report(what: &str, r: &SyncReport) {
    println!(
        "{what}: {} changes, {} records: {} written ({} created), {} unchanged, {} dead-lettered; {} requests, {} throttled",
        r.changes, r.records, r.written, r.created, r.unchanged, r.dead_lettered, r.requests, r.throttled
    );
}

async fn sync<C: dealreg_crm::CrmClient>(
    spec: &StoreSpec,
    mut feed: Option<Feed>,
    outbound: Outbound<C>,
    batch: usize,
    follow: bool,
    every: u64,
) -> Result<ExitCode, String> {
    let mut total = SyncReport::default();
    loop {
        let report = match feed.as_mut() {
            Some(feed) => outbound.run_once(feed, batch.max(1)).await,
            None => {
                outbound
                    .run_once(&mut ViewsFile::new(spec, &outbound.config), batch.max(1))
                    .await
            }
        }
        .map_err(|e| e.to_string())?;
        if report.changes > 0 || !follow {
            print_report("synced", &report);
        }
        if let Some(paused) = &report.paused {
            println!("{paused}");
        }
        total.dead_lettered += report.dead_lettered;
        if !follow {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(every.max(1))) => {}
        }
    }
    Ok(if total.dead_lettered == 0 {
        ExitCode::SUCCESS
    } else {
        // Some records are on the dead-letter list: `dealreg crm status` shows why.
        ExitCode::from(2)
    })
}

fn status(spec: &StoreSpec, adapter: &AdapterArgs) -> Result<ExitCode, String> {
    let state = adapter.state(spec)?;
    let target = adapter.target.name();
    let views = state
        .cursor(&format!("{target}/views"))
        .map_err(|e| e.to_string())?;
    let feed = state
        .cursor(&format!("{target}/feed"))
        .map_err(|e| e.to_string())?;
    let written = state.record_count(target).map_err(|e| e.to_string())?;
    let letters = state.dead_letters(target).map_err(|e| e.to_string())?;
    let inbound = state.inbound_errors(20).map_err(|e| e.to_string())?;
    println!(
        "crm {target}: views cursor {}, feed cursor {}",
        views.as_deref().unwrap_or("(not started)"),
        feed.as_deref().unwrap_or("(not started)")
    );
    // The daily API limit spent: nothing is sent before the pause ends.
    if let Some(paused) = dealreg_crm::sync::paused(&state, adapter.target, chrono::Utc::now())
        .map_err(|e| e.to_string())?
    {
        println!("{paused}");
    }
    println!("records written: {written}");
    println!("dead letters: {}", letters.len());
    for l in &letters {
        println!(
            "  {} {} = {} ({}): {} {} [attempts {}, at {}]",
            l.object,
            l.external_id_field,
            l.external_id,
            l.mapping,
            l.code,
            l.message,
            l.attempts,
            l.at
        );
    }
    println!("inbound errors (latest {}):", inbound.len());
    for e in &inbound {
        println!("  {} {} {}: {}", e.at, e.source, e.code, e.error);
    }
    Ok(if letters.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The published views of the views file, brought up to date, as pages of changes.
struct ViewsFile<'a> {
    spec: &'a StoreSpec,
    /// The views the mapping names, in the order it first names them.
    mapped: Vec<String>,
    loaded: Option<(String, Vec<ViewChange>)>,
}

impl<'a> ViewsFile<'a> {
    fn new(spec: &'a StoreSpec, config: &CrmConfig) -> Self {
        let mut mapped: Vec<String> = Vec::new();
        for object in &config.objects {
            if !mapped.contains(&object.view) {
                mapped.push(object.view.clone());
            }
        }
        ViewsFile {
            spec,
            mapped,
            loaded: None,
        }
    }

    async fn load(&mut self) -> Result<(String, Vec<ViewChange>), SyncError> {
        if let Some(loaded) = &self.loaded {
            return Ok(loaded.clone());
        }
        let source = |e: String| SyncError::Source(e);
        let (store, checkpoints) = super::store::open_existing(self.spec)
            .await
            .map_err(source)?;
        // Every view the catalogue publishes, brought up to date; a pass hands them over
        // in the order the mapping first names them (those it does not name last), so
        // the mapping's author decides which records are written first.
        let catalogue = Catalogue::<Log, dealreg_store_sqlite::SqliteCheckpoints>::standard();
        let mut publishing: Vec<_> = catalogue.publishing().collect();
        publishing.sort_by_key(|v| {
            self.mapped
                .iter()
                .position(|m| m == v.name)
                .unwrap_or(usize::MAX)
        });
        let mut head = dealreg_events::Position::ORIGIN;
        for view in &publishing {
            let caught = view
                .catch_up(&store, &checkpoints, CatchUp::default(), &mut |_| {})
                .await
                .map_err(|e| source(e.to_string()))?;
            head = head.max(caught.position);
        }
        let mut changes = Vec::new();
        for view in &publishing {
            let rows = checkpoints
                .load_rows(view.name)
                .await
                .map_err(|e| source(e.to_string()))?;
            for (key, bytes) in rows {
                let Some(published) = catalogue.published(view.name, feed::table_of(&key)) else {
                    continue;
                };
                let Ok(row) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                    continue;
                };
                // The views file keeps no row's scope beside it: a published row that a
                // partner may see names its partner (`partner_id`), its scope.
                let scope = published.for_partners.map(|_| {
                    row.get("partner_id")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("partner")
                        .to_string()
                });
                let entry = FeedEntry {
                    seq: 0,
                    view: view.name.to_string(),
                    key,
                    scope,
                    previous_scope: None,
                    position: head,
                };
                // The feed's changes of the row (the vendor's first), the partner's
                // handed over first, as this source always has.
                let (vendor, partners): (Vec<_>, Vec<_>) =
                    feed::row_changes(&published, &entry, Some(&row))
                        .into_iter()
                        .partition(|c| c.audience == Audience::Vendor);
                changes.extend(partners.into_iter().chain(vendor).map(view_change));
            }
        }
        let loaded = (head.to_string(), changes);
        self.loaded = Some(loaded.clone());
        Ok(loaded)
    }
}

/// A feed's row change as the CRM adapters read it.
fn view_change(change: feed::RowChange) -> ViewChange {
    ViewChange {
        view: change.view,
        table: change.table,
        key: change.key,
        position: change.position.to_string(),
        partner: match change.audience {
            Audience::Vendor => None,
            Audience::Partner(partner) => Some(partner),
        },
        row: change.row,
    }
}

impl ChangeSource for ViewsFile<'_> {
    async fn changes_after(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<(Vec<ViewChange>, String)>, SyncError> {
        let (position, changes) = self.load().await?;
        // The cursor is `<views position>#<rows done>`: a pass over the rows as they
        // stood at that position. Views that moved on start a new pass.
        let done = match cursor.and_then(|c| c.split_once('#')) {
            Some((at, done)) if at == position => done.parse::<usize>().unwrap_or(0),
            _ => 0,
        };
        if done >= changes.len() {
            return Ok(None);
        }
        let end = (done + limit).min(changes.len());
        Ok(Some((
            changes[done..end].to_vec(),
            format!("{position}#{end}"),
        )))
    }
}

/// The JetStream feed `dealreg serve` publishes, read in stream order. The cursor is the
/// stream sequence of the last change applied.
struct Feed {
    stream: async_nats::jetstream::stream::Stream,
}

impl Feed {
    async fn connect(urls: &str) -> Result<Feed, String> {
        let client = dealreg_nats_connect::connect(
            &[urls.to_string()],
            &super::nats_access::access(),
            &format!("dealreg-crm-{}", std::process::id()),
            super::nats_access::liveness(),
        )
        .await
        .map_err(|e| format!("the feed (--feed): {e}"))?
        .client;
        let urls = &dealreg_nats_connect::redact(urls);
        Feed::open(client, urls).await
    }

    async fn open(client: async_nats::Client, urls: &str) -> Result<Feed, String> {
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(dealreg_nats::subject::FEED_STREAM).await.map_err(|e| {
            format!(
                "the feed stream {} cannot be read on {urls}: {e}; is `dealreg serve` publishing there?",
                dealreg_nats::subject::FEED_STREAM
            )
        })?;
        Ok(Feed { stream })
    }
}

/// What `serve --crm-target` runs as a duty of the deployment: the outbound sync from the
/// feed this deployment publishes, every `every`, while this process holds the
/// deployment's duties (so one process syncs however many were given the flags). The
/// mapping and the credentials are read before it starts (a bad one stops `serve` at
/// once); a failed round is logged and tried again next round, from the same cursor.
pub async fn sync_beside_serve(
    spec: &StoreSpec,
    client: async_nats::Client,
    target: Target,
    config: Option<PathBuf>,
    state: Option<PathBuf>,
    every: Duration,
) -> Result<dealreg_host::host::Duty, String> {
    let adapter = AdapterArgs {
        target,
        config,
        state,
    };
    let config = adapter.config()?;
    let state = adapter.state(spec)?;
    use dealreg_host::host::Duty;
    const NAME: &str = "CRM sync";
    Ok(match target {
        Target::Salesforce => {
            let outbound = Arc::new(outbound(
                target,
                "feed",
                salesforce(&config)?,
                config,
                state,
            ));
            Duty::new(NAME, move |stop| {
                follow_feed(client.clone(), Arc::clone(&outbound), every, stop)
            })
        }
        Target::Hubspot => {
            let outbound = Arc::new(outbound(target, "feed", hubspot(&config)?, config, state));
            Duty::new(NAME, move |stop| {
                follow_feed(client.clone(), Arc::clone(&outbound), every, stop)
            })
        }
    })
}

async fn follow_feed<C: dealreg_crm::CrmClient>(
    client: async_nats::Client,
    outbound: Arc<Outbound<C>>,
    every: Duration,
    mut stop: dealreg_host::host::DutyStop,
) {
    let mut feed = None;
    loop {
        if feed.is_none() {
            // The feed stream appears once serve set it up.
            feed = Feed::open(client.clone(), "this deployment's servers")
                .await
                .ok();
        }
        if let Some(feed) = feed.as_mut() {
            match outbound.run_once(feed, 1000).await {
                Ok(report) if report.changes > 0 => tracing::info!(
                    crm = outbound.target.name(),
                    changes = report.changes,
                    written = report.written,
                    dead_lettered = report.dead_lettered,
                    "CRM sync"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(crm = outbound.target.name(), %e, "CRM sync failed; trying again next round")
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

impl ChangeSource for Feed {
    async fn changes_after(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<(Vec<ViewChange>, String)>, SyncError> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        use futures_util::StreamExt;
        let source = |e: String| SyncError::Source(e);
        let after: u64 = match cursor {
            Some(c) => c
                .parse()
                .map_err(|_| source(format!("the feed cursor {c:?} is not a stream sequence")))?,
            None => 0,
        };
        let info = self
            .stream
            .info()
            .await
            .map_err(|e| source(e.to_string()))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if last <= after {
            return Ok(None);
        }
        if after > 0 && first > after + 1 {
            return Err(source(format!(
                "the feed no longer holds the changes after {after} (it starts at {first}); run `dealreg crm sync` without --feed on the host that holds the views, once, to catch the CRM up"
            )));
        }
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| source(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| source(e.to_string()))?;
        let wanted = usize::try_from(last - after)
            .unwrap_or(usize::MAX)
            .min(limit.max(1));
        let mut changes = Vec::with_capacity(wanted);
        let mut through = after;
        while changes.len() < wanted {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| source("the feed stopped answering".into()))?;
            let Some(message) = next else { break };
            let message = message.map_err(|e| source(e.to_string()))?;
            let sequence = message
                .info()
                .map_err(|e| source(e.to_string()))?
                .stream_sequence;
            through = sequence;
            let body: serde_json::Value = serde_json::from_slice(&message.payload)
                .map_err(|e| source(format!("feed message {sequence} is not JSON: {e}")))?;
            let text = |name: &str| {
                body.get(name)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let partner = message
                .subject
                .as_str()
                .split_once(".partner.")
                .map(|(_, id)| id.to_string());
            changes.push(ViewChange {
                view: text("view"),
                table: text("table"),
                key: text("key"),
                position: body
                    .get("position")
                    .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                    .unwrap_or_default(),
                partner,
                row: body.get("row").cloned().filter(|r| !r.is_null()),
            });
        }
        Ok(Some((changes, through.to_string())))
    }
}

/// Commands from the webhook, executed by the engine on this store.
struct EngineCommands(Arc<Engine<Log, dealreg_clock::SharedClock>>);

impl CommandSink for EngineCommands {
    async fn execute(&self, envelope: Vec<u8>) -> serde_json::Value {
        let reply = self.0.execute_line(&envelope).await;
        serde_json::to_value(&reply).unwrap_or(serde_json::Value::Null)
    }
}

/// The engine on this store, for the commands CRM facts become.
async fn engine(spec: &StoreSpec) -> Result<EngineCommands, String> {
    let (store, _checkpoints) = super::store::open_existing(spec).await?;
    let engine = Engine::open(store, super::store::clock(None), None)
        .await
        .map_err(|e| e.to_string())?
        .with_vault(super::store::vault(spec, dealreg_vault::KeyMaterial::Random).await?);
    Ok(EngineCommands(Arc::new(engine)))
}

async fn poll(
    spec: &StoreSpec,
    adapter: &AdapterArgs,
    follow: bool,
    every: u64,
) -> Result<ExitCode, String> {
    if adapter.target != Target::Salesforce {
        return Err(
            "polling is Salesforce's; HubSpot facts come as webhooks (dealreg crm webhook)".into(),
        );
    }
    let config = adapter.config()?;
    let state = adapter.state(spec)?;
    let client = salesforce(&config)?;
    if let Some(refused) = salesforce_check(&config, &client).await? {
        return Ok(refused);
    }
    let poll = dealreg_crm::poll::SalesforcePoll {
        config,
        client,
        state,
        clock: Arc::new(SystemClock),
        commands: engine(spec).await?,
    };
    let mut errors = 0;
    loop {
        let report = poll.poll_once().await.map_err(|e| e.to_string())?;
        println!(
            "polled: {} opportunities, {} commands ({} refused), {} bad records; watermark {}",
            report.records,
            report.commands,
            report.refused,
            report.errors,
            report.watermark.as_deref().unwrap_or("unchanged")
        );
        if let Some(paused) = &report.paused {
            println!("{paused}");
        }
        errors += report.errors + report.refused;
        // Approvals made in Salesforce ([salesforce] approvals).
        let decisions = poll.poll_decisions().await.map_err(|e| e.to_string())?;
        if decisions.records > 0 {
            println!(
                "decisions: {} sent ({} refused, written back to the record), {} not sent (crm status says why)",
                decisions.commands, decisions.refused, decisions.errors
            );
        }
        errors += decisions.errors + decisions.refused;
        if !follow {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(every.max(1))) => {}
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        // Recorded for `dealreg crm status`.
        ExitCode::from(2)
    })
}

async fn webhook(
    spec: &StoreSpec,
    adapter: &AdapterArgs,
    listen: std::net::SocketAddr,
    public_url: String,
) -> Result<ExitCode, String> {
    if adapter.target != Target::Hubspot {
        return Err(
            "webhooks are HubSpot's; Salesforce facts come back by polling (docs/CRM.md)".into(),
        );
    }
    let config = adapter.config()?;
    let state = adapter.state(spec)?;
    let secret = env(
        &config.hubspot.app_secret_env,
        "the app's client secret, which signs webhooks",
    )?;
    let client = hubspot(&config)?;
    let inbound = Arc::new(HubspotInbound {
        config,
        app_secret: secret.into_bytes(),
        public_base: public_url,
        client,
        state,
        clock: Arc::new(SystemClock),
        commands: engine(spec).await?,
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    dealreg_crm::webhook::serve(listener, inbound, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(ExitCode::SUCCESS)
}
