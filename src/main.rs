//! The `dealreg` command line: one module per subcommand under `cli/`, each a thin layer
//! over the engine crate on the embedded SQLite store.

mod allocator;
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dealreg",
    version,
    about = "Event-sourced deal registration for partner programs"
)]
struct Cli {
    /// The event store: a path (the embedded SQLite file; also `sqlite:PATH`),
    /// `jetstream:URL[,URL...]` or `kurrentdb:URL` (docs/STORES.md). Only `demo`, `apply`,
    /// `import` and `serve` create a store; the other jobs refuse a missing, empty or
    /// foreign one.
    #[arg(long, global = true, default_value = "./dealreg.db")]
    store: cli::store::StoreSpec,
    #[command(flatten)]
    nats: cli::nats_access::NatsAccessArgs,
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Run a realistic 120-day partner program on a fresh store and show what a channel
    /// manager wants to see.
    Demo {
        /// Replace an existing store file instead of refusing.
        #[arg(long)]
        force: bool,
        /// The seed of every id and choice in the story: the same seed gives the same log.
        #[arg(long, default_value_t = dealreg_demo::DEFAULT_SEED)]
        seed: u64,
    },
    /// Apply commands from a file (one JSON command a line; `-` for stdin) and print one
    /// JSON reply a line.
    Apply {
        file: PathBuf,
        /// Policy TOML adopted when the store has no policy yet (default: the built-in one).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Decide every command at this fixed UTC time (RFC 3339) instead of the system
        /// clock: for replays and repeatable runs.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Memory for folded accounts and partners kept between commands, in MiB; the
        /// least recently used are dropped beyond it (and read again when needed).
        #[arg(long, default_value_t = 256)]
        state_cache_mib: usize,
    },
    /// The notifier's state (docs/NOTIFICATIONS.md): messages waiting, sent, and the dead
    /// letters a person must look at, as JSON.
    Alerts {
        /// The notifier settings `serve --notify-config` runs with.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the log as JSON lines in global order.
    Events {
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only events of this stream (e.g. `account-acme.com`).
        #[arg(long)]
        stream: Option<String>,
        /// Show contacts opened with the store's key vault (or `erased` where the key was
        /// destroyed) instead of as stored (sealed).
        #[arg(long)]
        reveal: bool,
    },
    /// Erase a person's contact data (name, e-mail, phone): destroys their key in the
    /// store's key vault (`<store>-keys`), so every sealed copy in the log, its exports
    /// and backups becomes unreadable while the hash chains still verify. On a replicated
    /// JetStream vault the servers' replication logs keep the key until they compact them
    /// (minutes): the report says whether the erasure is complete or pending, and until
    /// when. Exit codes: 0 done (complete or pending, as reported), 1 the address also
    /// appears in contacts recorded in clear (before schema 3); with `--status`: 0
    /// complete, 3 pending or the key still held.
    Forget {
        /// The address to forget.
        #[arg(long, required_unless_present = "status")]
        email: Option<String>,
        /// After forgetting, wait until the erasure is complete on every replica (as far
        /// as the vault can tell) instead of answering that it is pending.
        #[arg(long, conflicts_with = "status")]
        wait: bool,
        /// Forget nothing: say whether the erasure of a forgotten person's key is complete
        /// (the person id `forget` printed).
        #[arg(long, requires = "person")]
        status: bool,
        /// The person id, with `--status`.
        #[arg(long, requires = "status")]
        person: Option<uuid::Uuid>,
    },
    /// Check the whole log: every stream's hash chain, the order and gaps of positions, and
    /// the records the store keeps beside the events (a cut tail, a deleted stream); prints
    /// a JSON report and exits with 2 when anything is wrong. `audit verify` does the same
    /// and also holds the log against signed checkpoints.
    Verify,
    /// Write the log as portable JSON lines (positions, hashes, metadata, idempotency
    /// records, signed checkpoints) to stdout or FILE. Reads the store read-only.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
        /// Signed checkpoints to carry along (from `dealreg audit checkpoint`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Load a portable log into an empty store (created when missing). Everything is
    /// checked before anything is written: every line and both hash chains, and the
    /// signed checkpoints. With --public-key (or the auditor's --checkpoints) the file
    /// must carry or match a checkpoint signed with the auditor's key; without either its
    /// authenticity is not checked, and the job says so. Exit codes: 0 imported, 2 refused
    /// for a checkpoint that is missing, does not match or is signed by another key
    /// (nothing written), 1 refused (damaged file, non-empty store, bad key).
    Import {
        file: PathBuf,
        /// The auditor's public key (64 hex digits, as `audit keygen` printed it): every
        /// checkpoint must be signed with it, and at least one must be there.
        #[arg(long)]
        public_key: Option<String>,
        /// The auditor's checkpoint file (JSON lines from `dealreg audit checkpoint`), held
        /// against the imported log like the file's own; without --public-key its one key
        /// is the auditor's.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// The auditor's tools: signing keys, signed checkpoints, the full verify.
    Audit {
        #[command(subcommand)]
        job: cli::audit::AuditJob,
    },
    /// Issue the system commands whose deadlines have fallen due (approval SLA breaches,
    /// expiry reminders, expiries, inactivity, conflict SLAs, renewal reviews), once; run
    /// it from cron or a service loop.
    Timekeeper {
        /// Decide at this UTC time (RFC 3339) instead of the system clock.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Rebuild projections from the log (all, or the one named), with a progress bar: the
    /// log is read and decoded once, the projections folded on separate threads.
    Rebuild {
        /// The projection to rebuild; all when left out.
        projection: Option<String>,
        /// Threads folding the projections (default: one per core but one, which the
        /// log's reader and the views file's writer use; at most one per projection).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        fold_threads: Option<u16>,
    },
    /// The CRM adapters (docs/CRM.md): sync the views into Salesforce or HubSpot, show
    /// and retry the dead-letter list, serve HubSpot's webhooks.
    Crm {
        #[command(subcommand)]
        job: cli::crm::CrmJob,
    },
    /// Serve commands, queries and view feeds over NATS (see docs/NATS.md) until SIGTERM,
    /// then drain. The store is created when missing.
    Serve(Box<cli::serve::ServeArgs>),
    /// The users of the pages (`serve --http --users FILE`) and partners' signed page
    /// links (docs/PAGES.md).
    Users {
        #[command(subcommand)]
        job: cli::users::UsersJob,
    },
    /// Show a read model, brought up to date from its checkpoint first (or as it stood
    /// at `--as-of`, folded from the log in memory).
    View {
        /// A log position or an RFC 3339 time: the view as it stood then.
        #[arg(long, global = true)]
        as_of: Option<cli::view::AsOf>,
        #[command(subcommand)]
        what: cli::view::ViewKind,
    },
    /// The recorded history decided again under a draft policy, in a scratch store
    /// (nothing is written to this one): what would have come out otherwise
    /// (docs/WHAT-IF.md).
    WhatIf(cli::what_if::WhatIfArgs),
    /// Every view as it stood at a position or a time, folded from the log in memory
    /// (nothing is written): one view with --view, all of them as one JSON document else.
    Replay {
        /// A log position (e.g. 1200) or an RFC 3339 time (e.g. 2026-03-02T09:00:00Z).
        #[arg(long)]
        as_of: cli::view::AsOf,
        /// pipeline (the vendor's), ledger, conflicts, metrics or program.
        #[arg(long)]
        view: Option<String>,
        /// Write the JSON here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service logs JSON lines (with the span fields: command, command_id, subject) for
    // log collectors; the one-shot jobs log text for a person. DEALREG_LOG_FORMAT=text|json
    // overrides.
    let serving = matches!(cli.job, Job::Serve(_));
    // A job that prints for a reader (`dealreg events | head -1`) ends quietly when the
    // reader goes away, as Unix tools do: SIGPIPE's default action. Not for the long-lived
    // services (serve, the CRM webhook and followers), whose stdout is not their output.
    if !serving && !matches!(cli.job, Job::Crm { .. }) {
        // SAFETY: restoring a signal's default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = match std::env::var("DEALREG_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => serving,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if serving { "info" } else { "warn" })
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    // After the logs are set up, so a kernel that refuses says so (the switch covers
    // memory mapped before it, so nothing is lost by waiting this long).
    allocator::tune();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(message) = cli::nats_access::set(&cli.nats) {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let store = cli.store;
    let urls = store.nats_urls();
    let outcome = runtime.block_on(async move {
        match cli.job {
            Job::Demo { force, seed } => cli::demo::run(&store, force, seed).await,
            Job::Apply {
                file,
                policy,
                at,
                state_cache_mib,
            } => cli::apply::run(&store, &file, policy, at, state_cache_mib << 20).await,
            Job::Alerts { config } => cli::notifier::status(&store, &config),
            Job::Events {
                after,
                stream,
                reveal,
            } => cli::events::run(&store, after, stream, reveal).await,
            Job::Forget {
                email,
                wait,
                status,
                person,
            } => match (status, person, email) {
                (true, Some(person), _) => cli::forget::status(&store, person).await,
                (_, _, Some(email)) => cli::forget::run(&store, &email, wait).await,
                _ => Err("pass --email ADDRESS, or --status --person ID".into()),
            },
            Job::Verify => cli::verify::run(&store).await,
            Job::Audit { job } => cli::audit::run(&store, job).await,
            Job::Export { out, checkpoints } => {
                cli::portable::export(&store, out, checkpoints).await
            }
            Job::Import {
                file,
                public_key,
                checkpoints,
            } => cli::portable::import(&store, &file, public_key, checkpoints).await,
            Job::Timekeeper { at } => cli::timekeeper::run(&store, at).await,
            Job::Rebuild {
                projection,
                fold_threads,
            } => cli::rebuild::run(&store, projection, fold_threads.map(usize::from)).await,
            Job::View { what, as_of } => {
                cli::view::run(&store, what, as_of.unwrap_or(cli::view::AsOf::Now)).await
            }
            Job::Replay { as_of, view, out } => cli::replay::run(&store, as_of, view, out).await,
            Job::WhatIf(args) => cli::what_if::run(&store, args).await,
            Job::Serve(args) => cli::serve::run(&store, *args).await,
            Job::Crm { job } => cli::crm::run(&store, job).await,
            Job::Users { job } => cli::users::run(job),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(message) => {
            // The last guard: no secret given to this job is ever printed.
            let message = dealreg_nats_connect::scrub(&message, &cli::nats_access::access(), &urls);
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
