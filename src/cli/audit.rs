//! `dealreg audit ...`: what an auditor runs, on the store file or a read-only copy of it.
//!
//! - `keygen`: an Ed25519 signing key for checkpoints, to be kept away from the store.
//! - `checkpoint`: signs the log's head (position and log hash) and appends it to the
//!   auditor's checkpoint file.
//! - `verify`: both chains, the records beside the events, and the checkpoints; names
//!   every finding (what damage, which stream, revision, position, checkpoint) and exits
//!   with 2 when there is one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use dealreg_events::audit::{self, SignedCheckpoint};

#[derive(Subcommand)]
pub enum AuditJob {
    /// Writes a new signing key (64 hex digits) to FILE, readable by its owner only, and
    /// prints its public key. Keep it outside the store's machine if you can.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Signs the log's head with KEY and appends the signed checkpoint (one JSON line) to
    /// OUT, where the auditor keeps them.
    Checkpoint {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// The history of one registration, account or partner, as a person reads it: time,
    /// actor, command, what happened (refusals with their codes and messages), the reason
    /// given, the policy version applied.
    History {
        #[arg(long, conflicts_with_all = ["account", "partner"], required_unless_present_any = ["account", "partner"])]
        registration: Option<uuid::Uuid>,
        /// Any spelling of the account's domain.
        #[arg(long, conflicts_with = "partner")]
        account: Option<String>,
        #[arg(long)]
        partner: Option<uuid::Uuid>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Checks the chains over every stream and over the global order, the stream tips,
    /// the highest position assigned, the idempotency keys, and every signed checkpoint.
    /// Reads the file read-only. Exit codes: 0 nothing wrong, 2 something is, 1 error.
    Verify {
        /// The auditor's checkpoint file (JSON lines from `dealreg audit checkpoint`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The public key the checkpoints must be signed with (64 hex digits); without it
        /// each checkpoint is checked against the key it names.
        #[arg(long)]
        public_key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The exit code of a verify that found something wrong.
pub const EXIT_FINDINGS: u8 = 2;

fn read_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
    audit::signing_key(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn read_checkpoints(path: &Path) -> Result<Vec<SignedCheckpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the checkpoints {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| {
                format!(
                    "{} line {}: not a signed checkpoint ({e}); the file holds the lines `dealreg audit checkpoint` appends",
                    path.display(),
                    n + 1
                )
            })
        })
        .collect()
}

/// The key every checkpoint must be signed with, from `--public-key HEX` (`audit verify`,
/// `import`).
pub(super) fn pinned_key(
    public_key: Option<&str>,
) -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
    public_key
        .map(audit::verifying_key)
        .transpose()
        .map_err(|e| format!("--public-key: {e}"))
}

pub async fn run(spec: &super::store::StoreSpec, job: AuditJob) -> Result<ExitCode, String> {
    match job {
        AuditJob::History {
            registration,
            account,
            partner,
            json,
        } => {
            use super::history::{self, Subject};
            let subject = match (registration, account, partner) {
                (Some(id), _, _) => Subject::Registration(id),
                (_, Some(domain), _) => Subject::Account(
                    dealreg_domain::AccountKey::from_domain(&domain).map_err(|e| e.message)?,
                ),
                (_, _, Some(id)) => Subject::Partner(id),
                _ => return Err("name a --registration, an --account or a --partner".into()),
            };
            history::run(spec, subject, json).await
        }
        AuditJob::Keygen { out } => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map_err(|e| format!("the system has no randomness to make a key: {e}"))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                file.mode(0o600);
            }
            let mut file = file.open(&out).map_err(|e| {
                format!(
                    "cannot create {} ({e}); a key file is never overwritten, choose a new path",
                    out.display()
                )
            })?;
            writeln!(file, "{hex}").map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!("{}", audit::public_hex(&key));
            eprintln!(
                "signing key written to {}; its public key is above",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditJob::Checkpoint { key, out } => {
            let key = read_key(&key)?;
            let log = super::store::open_read(spec).await?;
            let signed = audit::HeadSigner::new()
                .sign(&log, &key, chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            let line = serde_json::to_string(&signed).map_err(|e| e.to_string())?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .map_err(|e| format!("cannot open {}: {e}", out.display()))?;
            writeln!(file, "{line}")
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        AuditJob::Verify {
            checkpoints,
            public_key,
            json,
        } => {
            let checkpoints = match &checkpoints {
                Some(path) => read_checkpoints(path)?,
                None => Vec::new(),
            };
            let pinned = pinned_key(public_key.as_deref())?;
            let report = verify(spec, &checkpoints, pinned.as_ref()).await?;
            if json {
                let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                for finding in &report.findings {
                    println!("{finding}");
                }
                println!(
                    "{} events in {} streams, head position {} (log hash {}), {} checkpoints: {}",
                    report.events,
                    report.streams,
                    report.head_position,
                    report.head_log_hash,
                    report.checkpoints,
                    if report.findings.is_empty() {
                        "nothing wrong".to_string()
                    } else {
                        format!("{} findings", report.findings.len())
                    }
                );
                if checkpoints.is_empty() {
                    eprintln!("note: no --checkpoints: a file regenerated with fresh chains cannot be told from the original without signed checkpoints");
                }
            }
            Ok(if report.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FINDINGS)
            })
        }
    }
}

/// The auditor's walk of the log on any backend, with what the backend keeps beside the
/// events (SQLite: stream tips, the highest position assigned) held against it.
pub(super) async fn verify(
    spec: &super::store::StoreSpec,
    checkpoints: &[SignedCheckpoint],
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<audit::Report, String> {
    let log = super::store::open_read(spec).await?;
    let mut report = audit::verify(&log, checkpoints, pinned)
        .await
        .map_err(|e| e.to_string())?;
    drop(log);
    if let Some(path) = spec.sqlite_path() {
        let records =
            dealreg_store_sqlite::audit::records(path, &report).map_err(|e| e.to_string())?;
        report.findings.extend(records);
    }
    Ok(report)
}
