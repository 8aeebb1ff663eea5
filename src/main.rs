//! The `dealreg` command line.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use dealreg::cli;
use dealreg::clock::{ControlledClock, SharedClock, SystemClock};
use dealreg::domain::Policy;
use dealreg::projector::{catch_up, ViewStore};
use dealreg::store::sqlite::SqliteStore;
use dealreg::store::{EventStore, GlobalPosition};
use dealreg::Engine;
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::deadlines::Deadlines;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::Projection;

#[derive(Parser)]
#[command(
    name = "dealreg",
    version,
    about = "Event-sourced deal registration for partner programs"
)]
struct Cli {
    /// The embedded event store (a SQLite file; created when missing).
    #[arg(long, global = true, default_value = "./dealreg.db")]
    store: PathBuf,
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
    },
    /// Print the log as JSON lines in global order.
    Events {
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only events of this stream (e.g. `account-acme.com`).
        #[arg(long)]
        stream: Option<String>,
    },
    /// Check every stream's hash chain; exits non-zero when any chain is broken.
    Verify,
    /// Issue the system commands whose deadlines have fallen due (approval SLA breaches,
    /// expiry reminders, expiries, inactivity), once; run it from cron or a service loop.
    Timekeeper {
        /// Decide at this UTC time (RFC 3339) instead of the system clock.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Rebuild projections from the log (all, or the one named), with a progress bar.
    Rebuild {
        /// `pipeline` or `ledger`; all when left out.
        projection: Option<String>,
    },
    /// Show a read model.
    View {
        #[command(subcommand)]
        what: ViewKind,
    },
}

#[derive(Subcommand)]
enum ViewKind {
    /// Registrations grouped by motion and stage: a partner's own (safe fields only), or
    /// the vendor's full view.
    Pipeline {
        /// Show this partner's view (its own registrations, no pricing or notes).
        #[arg(long, conflicts_with = "vendor", required_unless_present = "vendor")]
        partner: Option<uuid::Uuid>,
        /// Show the vendor's full view.
        #[arg(long)]
        vendor: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Conflict flags per account (with SLA clocks) and likely duplicate accounts.
    Conflicts {
        /// Only this account (any spelling of its domain).
        #[arg(long)]
        account: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Program metrics: sourced and influenced amounts, win rate and cycle time by motion,
    /// approval SLA compliance, conflicts by kind and time to resolution.
    Metrics {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The commission ledger: accruals and clawbacks with balances, for one partner or all.
    Ledger {
        #[arg(long)]
        partner: Option<uuid::Uuid>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.job {
        Job::Demo { force } => cli::demo::run(&cli.store, force).await,
        Job::Apply { file, policy, at } => {
            let policy = match policy {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read policy {}: {e}", path.display()))?;
                    Some(
                        Policy::from_toml(&text)
                            .map_err(|e| format!("policy {}: {e}", path.display()))?,
                    )
                }
                None => None,
            };
            let clock = match at {
                Some(at) => SharedClock::new(ControlledClock::starting_at(at)),
                None => SharedClock::new(SystemClock),
            };
            let store = open_store(&cli.store)?;
            let engine = Engine::open(store, clock, policy)
                .await
                .map_err(|e| e.to_string())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let summary = if file.as_os_str() == "-" {
                cli::apply::apply(&engine, std::io::stdin().lock(), &mut out).await
            } else {
                let input = File::open(&file)
                    .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
                cli::apply::apply(&engine, BufReader::new(input), &mut out).await
            }
            .map_err(|e| format!("apply stopped on an I/O error: {e}"))?;
            eprintln!(
                "{} lines: {} applied, {} rejected by the rules, {} refused as unreadable, {} replayed; store {}",
                summary.lines,
                summary.applied,
                summary.rejected,
                summary.refused,
                summary.replayed,
                cli.store.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Job::Events { after, stream } => {
            let store = open_store(&cli.store)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            cli::events::print_events(&store, GlobalPosition(after), stream.as_deref(), &mut out)
                .await
                .map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Job::View {
            what:
                ViewKind::Pipeline {
                    partner,
                    vendor: _,
                    json,
                },
        } => {
            let store = open_store(&cli.store)?;
            let pipeline = cli::view::fold_pipeline(&store)
                .await
                .map_err(|e| e.to_string())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let written = match partner {
                Some(id) => {
                    let view = pipeline.partner_view(dealreg::domain::PartnerId(id));
                    if json {
                        serde_json::to_writer_pretty(&mut out, &view).map_err(std::io::Error::from)
                    } else {
                        cli::view::print_partner_table(&mut out, &view)
                    }
                }
                None => {
                    let view = pipeline.vendor_view();
                    if json {
                        serde_json::to_writer_pretty(&mut out, &view).map_err(std::io::Error::from)
                    } else {
                        cli::view::print_vendor_table(&mut out, &view)
                    }
                }
            };
            written
                .and_then(|()| writeln!(out))
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Job::Rebuild { projection } => {
            let known = [
                Pipeline::NAME,
                Ledger::NAME,
                ConflictFlags::NAME,
                Deadlines::NAME,
                ProgramMetrics::NAME,
            ];
            if let Some(name) = projection.as_deref().filter(|n| !known.contains(n)) {
                return Err(format!(
                    "there is no projection `{name}`; known: {}",
                    known.join(", ")
                ));
            }
            let store = open_store(&cli.store)?;
            let views = ViewStore::open(&cli.store).map_err(|e| e.to_string())?;
            let wanted = |name: &str| projection.as_deref().is_none_or(|p| p == name);
            if wanted(Pipeline::NAME) {
                rebuild::<Pipeline>(&store, &views).await?;
            }
            if wanted(Ledger::NAME) {
                rebuild::<Ledger>(&store, &views).await?;
            }
            if wanted(ConflictFlags::NAME) {
                rebuild::<ConflictFlags>(&store, &views).await?;
            }
            if wanted(Deadlines::NAME) {
                rebuild::<Deadlines>(&store, &views).await?;
            }
            if wanted(ProgramMetrics::NAME) {
                rebuild::<ProgramMetrics>(&store, &views).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Job::View {
            what: ViewKind::Conflicts { account, json },
        } => {
            let account = account
                .map(|a| dealreg::domain::AccountKey::from_domain(&a).map_err(|e| e.message))
                .transpose()?;
            let store = open_store(&cli.store)?;
            let views = ViewStore::open(&cli.store).map_err(|e| e.to_string())?;
            let (_, flags) = catch_up::<ConflictFlags, _>(&store, &views, 10_000, None, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            let conflicts: Vec<_> = flags
                .all()
                .filter(|(k, _)| account.as_ref().is_none_or(|a| a == *k))
                .collect();
            let duplicates: Vec<_> = flags
                .duplicates()
                .filter(|d| account.as_ref().is_none_or(|a| d.accounts.contains(a)))
                .collect();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({ "conflicts": conflicts, "likely_duplicates": duplicates }),
                )
                .map_err(|e| e.to_string())?;
                writeln!(out).map_err(|e| e.to_string())?;
            } else {
                cli::view::print_conflicts(&mut out, &conflicts, &duplicates)
                    .map_err(|e| e.to_string())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Job::View {
            what: ViewKind::Metrics { json },
        } => {
            let store = open_store(&cli.store)?;
            let views = ViewStore::open(&cli.store).map_err(|e| e.to_string())?;
            let (_, metrics) = catch_up::<ProgramMetrics, _>(&store, &views, 10_000, None, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &metrics).map_err(|e| e.to_string())?;
                writeln!(out).map_err(|e| e.to_string())?;
            } else {
                cli::view::print_metrics(&mut out, &metrics).map_err(|e| e.to_string())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Job::View {
            what: ViewKind::Ledger { partner, json },
        } => {
            let store = open_store(&cli.store)?;
            let views = ViewStore::open(&cli.store).map_err(|e| e.to_string())?;
            let (_, ledger) = catch_up::<Ledger, _>(&store, &views, 10_000, None, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let partner = partner.map(dealreg::domain::PartnerId);
            if json {
                let entries: Vec<_> = ledger
                    .entries()
                    .iter()
                    .filter(|e| partner.is_none_or(|p| p == e.partner_id))
                    .collect();
                let balances: Vec<_> = ledger
                    .balances()
                    .iter()
                    .filter(|(p, _)| partner.is_none_or(|q| q == **p))
                    .collect();
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({ "entries": entries, "balances": balances }),
                )
                .map_err(|e| e.to_string())?;
                writeln!(out).map_err(|e| e.to_string())?;
            } else {
                cli::view::print_ledger(&mut out, &ledger, partner).map_err(|e| e.to_string())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Job::Timekeeper { at } => {
            let clock = match at {
                Some(at) => SharedClock::new(ControlledClock::starting_at(at)),
                None => SharedClock::new(SystemClock),
            };
            let store = open_store(&cli.store)?;
            let views = ViewStore::open(&cli.store).map_err(|e| e.to_string())?;
            let engine = Engine::open(store.clone(), clock, None)
                .await
                .map_err(|e| e.to_string())?;
            let (_, deadlines) = catch_up::<Deadlines, _>(&store, &views, 10_000, None, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            let done = dealreg::timekeeper::tick(&engine, &deadlines)
                .await
                .map_err(|e| e.to_string())?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for (deadline, executed) in &done.issued {
                let line = serde_json::json!({ "deadline": deadline, "reply": executed.reply, "replayed": executed.replayed });
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            eprintln!("{} deadlines were due", done.issued.len());
            Ok(ExitCode::SUCCESS)
        }
        Job::Verify => {
            let store = open_store(&cli.store)?;
            let report = cli::verify::verify_chains(&store)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
            if report.breaks.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(2))
            }
        }
    }
}

/// Rebuilds one projection from the origin with a progress bar and its throughput.
async fn rebuild<P: Projection>(store: &SqliteStore, views: &ViewStore) -> Result<(), String> {
    views.reset::<P>().map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    catch_up::<P, _>(store, views, 50_000, None, |p| {
        cli::view::progress_bar(P::NAME, p)
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    let events = store.head().borrow().0;
    eprintln!(
        "rebuilt {} from {events} events in {seconds:.2} s ({:.0} events/s)",
        P::NAME,
        events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn open_store(path: &std::path::Path) -> Result<SqliteStore, String> {
    SqliteStore::open(path).map_err(|e| format!("cannot open the store {}: {e}", path.display()))
}
