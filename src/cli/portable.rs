//! `dealreg export` and `dealreg import`: the log as portable JSON lines, and back into an
//! empty store ([`dealreg_events::portable`]).
//!
//! Why an import is checked against signed checkpoints before anything is written: a file
//! whose events were forged and rechained consistently reads back fine, and only a
//! checkpoint signed on the original log can tell. The file's events are first imported
//! into memory and walked by the auditor's own check (`dealreg_events::audit::verify`,
//! what `audit verify` runs), so a refused import writes nothing and creates no store.
//!
//! Why a checkpoint in the file proves nothing by itself: it names the key it was signed
//! with, and whoever forged the events can sign them with a key of their own, or strip the
//! checkpoints. Only the auditor's key, given from outside the file (`--public-key`, or the
//! auditor's checkpoints file, `--checkpoints`), ties the events to the log the auditor
//! signed; with it every checkpoint must be signed with that key and at least one must be
//! there. Without it the import checks the chains and the file's checkpoints against the
//! keys they name, and says plainly that the file's authenticity was not checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dealreg_events::audit::{self, Damage, Finding, SignedCheckpoint};
use dealreg_events::memory::MemoryStore;
use dealreg_events::portable;

/// `dealreg export [--out FILE] [--checkpoints FILE]`.
pub async fn export(
    spec: &super::store::StoreSpec,
    out: Option<PathBuf>,
    checkpoints: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let checkpoints = match &checkpoints {
        Some(file) => super::audit::read_checkpoints(file)?,
        None => Vec::new(),
    };
    let store = super::store::open_read(spec).await?;
    let now = chrono::Utc::now();
    let events = match &out {
        Some(file) => {
            let mut writer = std::io::BufWriter::new(
                std::fs::File::create(file)
                    .map_err(|e| format!("cannot create {}: {e}", file.display()))?,
            );
            let events = portable::export(&store, &checkpoints, now, &mut writer)
                .await
                .map_err(|e| e.to_string())?;
            writer
                .into_inner()
                .map_err(|e| e.to_string())?
                .sync_all()
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            events
        }
        None => {
            let stdout = std::io::stdout();
            let mut writer = std::io::BufWriter::new(stdout.lock());
            portable::export(&store, &checkpoints, now, &mut writer)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    eprintln!("exported {events} events");
    Ok(ExitCode::SUCCESS)
}

/// What a job without the auditor's key says instead of "verified".
pub const UNAUTHENTICATED: &str =
    "authenticity not checked: no public key given (pass --public-key or --checkpoints)";

/// The auditor's key an import holds every checkpoint against, and where it came from.
struct Pinned {
    key: ed25519_dalek::VerifyingKey,
    hex: String,
    /// The auditor's checkpoints file it was read from, when `--public-key` was not given.
    from: Option<PathBuf>,
}

fn key_hex(key: &ed25519_dalek::VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// `--public-key`, or else the one key that signed the auditor's checkpoints file.
fn pinned(
    public_key: Option<&str>,
    auditor: Option<&(PathBuf, Vec<SignedCheckpoint>)>,
) -> Result<Option<Pinned>, String> {
    if let Some(key) = super::audit::pinned_key(public_key)? {
        return Ok(Some(Pinned {
            hex: key_hex(&key),
            key,
            from: None,
        }));
    }
    let Some((path, checkpoints)) = auditor else {
        return Ok(None);
    };
    let keys: std::collections::BTreeSet<String> = checkpoints
        .iter()
        .map(|c| c.public_key.trim().to_ascii_lowercase())
        .collect();
    let mut keys = keys.into_iter();
    match (keys.next(), keys.len()) {
        (None, _) => Err(format!(
            "{} holds no signed checkpoint; pass the auditor's --public-key, or the file `dealreg audit checkpoint` appends to",
            path.display()
        )),
        (Some(hex), 0) => {
            let key = audit::verifying_key(&hex)
                .map_err(|e| format!("{}: the checkpoints' key: {e}", path.display()))?;
            Ok(Some(Pinned {
                hex: key_hex(&key),
                key,
                from: Some(path.clone()),
            }))
        }
        (Some(_), more) => Err(format!(
            "the checkpoints in {} are signed with {} keys; pass --public-key HEX to name the auditor's",
            path.display(),
            more + 1
        )),
    }
}

/// Names the checkpoints of `whose` that `findings` contradict, by what is wrong with
/// them, into `parts`; what the auditor should do about it into `advice`.
fn describe(
    findings: &[Finding],
    checkpoints: &[SignedCheckpoint],
    whose: &str,
    pinned: Option<&Pinned>,
    parts: &mut Vec<String>,
    advice: &mut std::collections::BTreeSet<&'static str>,
) {
    let (mut other_key, mut altered, mut unmatched) = (Vec::new(), Vec::new(), Vec::new());
    for finding in findings {
        let Some(n) = finding.checkpoint else {
            continue;
        };
        let signer = checkpoints
            .get(n - 1)
            .and_then(|c| audit::verifying_key(&c.public_key).ok());
        match finding.damage {
            Damage::Signature if pinned.is_some_and(|p| signer.is_some_and(|s| s != p.key)) => {
                other_key.push(n)
            }
            Damage::Signature => altered.push(n),
            _ => unmatched.push(n),
        }
    }
    let list = |numbers: &[usize]| {
        numbers
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let (false, Some(pinned)) = (other_key.is_empty(), pinned) {
        parts.push(format!(
            "checkpoint(s) {} of {whose} are signed by another key than {}",
            list(&other_key),
            pinned.hex
        ));
        advice.insert(
            "The file was signed by someone else (re-signed, or not the log you checkpointed): get the export again from the store you checkpointed, and check that the key given is the public key `dealreg audit keygen` printed for you.",
        );
    }
    if !altered.is_empty() {
        parts.push(format!(
            "checkpoint(s) {} of {whose} have a signature that does not verify",
            list(&altered)
        ));
        advice.insert("A checkpoint was edited after it was signed: do not use the file.");
    }
    if !unmatched.is_empty() {
        parts.push(format!(
            "checkpoint(s) {} of {whose} do not match {} events",
            list(&unmatched),
            if whose == "the file" {
                "its"
            } else {
                "the file's"
            }
        ));
        advice.insert(
            "The file's events are not the log that was signed: do not use it; export again from the original store.",
        );
    }
}

/// `dealreg import FILE [--public-key HEX] [--checkpoints FILE]`: into an empty store only,
/// and only after the file was checked whole.
pub async fn import(
    spec: &super::store::StoreSpec,
    file: &Path,
    public_key: Option<String>,
    checkpoints: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let auditor = match checkpoints {
        Some(path) => {
            let read = super::audit::read_checkpoints(&path)?;
            Some((path, read))
        }
        None => None,
    };
    let pinned = pinned(public_key.as_deref(), auditor.as_ref())?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let read = portable::read_export(&text).map_err(|e| format!("{}: {e}", file.display()))?;

    // Every check before the first write: the file's events imported into memory and
    // walked against the file's checkpoints and the auditor's.
    let memory = MemoryStore::new();
    portable::import(&memory, &read).await.map_err(|e| {
        format!(
            "{}: the export cannot be imported ({e}); nothing was written",
            file.display()
        )
    })?;
    let pin = pinned.as_ref().map(|p| &p.key);
    let own = audit::verify(&memory, &read.checkpoints, pin)
        .await
        .map_err(|e| e.to_string())?;
    let theirs = match &auditor {
        Some((_, checkpoints)) => Some(
            audit::verify(&memory, checkpoints, pin)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    drop(memory);
    let mut out = std::io::stdout().lock();
    let mut parts = Vec::new();
    let mut advice = std::collections::BTreeSet::new();
    let mut findings = own.findings.len();
    for finding in &own.findings {
        let _ = writeln!(out, "{finding}");
    }
    describe(
        &own.findings,
        &read.checkpoints,
        "the file",
        pinned.as_ref(),
        &mut parts,
        &mut advice,
    );
    if let (Some(report), Some((path, checkpoints))) = (&theirs, &auditor) {
        // The events were walked above; only what the auditor's checkpoints add counts.
        let contradicted: Vec<Finding> = report
            .findings
            .iter()
            .filter(|f| f.checkpoint.is_some())
            .cloned()
            .collect();
        for finding in &contradicted {
            let _ = writeln!(out, "{}: {finding}", path.display());
        }
        findings += contradicted.len();
        describe(
            &contradicted,
            checkpoints,
            &path.display().to_string(),
            pinned.as_ref(),
            &mut parts,
            &mut advice,
        );
    }
    if findings > 0 {
        eprintln!(
            "not imported: {findings} finding(s){}; nothing was written, nothing was left in the store. {}",
            parts.iter().map(|p| format!("; {p}")).collect::<String>(),
            advice.into_iter().collect::<Vec<_>>().join(" ")
        );
        return Ok(ExitCode::from(super::audit::EXIT_FINDINGS));
    }
    let auditors = auditor.as_ref().map_or(&[][..], |(_, c)| c.as_slice());
    if let (Some(pinned), true) = (&pinned, read.checkpoints.is_empty() && auditors.is_empty()) {
        eprintln!(
            "not imported: the file carries no signed checkpoint{}, so nothing ties its events to public key {}: it was exported without --checkpoints, or its checkpoints were stripped; nothing was written, nothing was left in the store. Ask for an export made with `dealreg export --checkpoints FILE` from the store you checkpointed, or pass your own checkpoints of this log with --checkpoints FILE.",
            auditor
                .as_ref()
                .map(|(path, _)| format!(" and {} holds none", path.display()))
                .unwrap_or_default(),
            pinned.hex
        );
        return Ok(ExitCode::from(super::audit::EXIT_FINDINGS));
    }
    drop(out);

    let existed = spec.sqlite_path().is_none_or(Path::exists);
    let (store, _) = super::store::create_or_open(spec).await?;
    let imported = portable::import(&store, &read)
        .await
        .map_err(|e| format!("{spec}: {e}"))?;
    drop(store);
    // What the store wrote, and the records it keeps beside the events, walked again.
    let report = super::audit::verify(spec, &read.checkpoints, pin).await?;
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        let _ = writeln!(out, "{finding}");
    }
    if !report.findings.is_empty() {
        let mut parts = Vec::new();
        let mut advice = std::collections::BTreeSet::new();
        describe(
            &report.findings,
            &read.checkpoints,
            "the file",
            pinned.as_ref(),
            &mut parts,
            &mut advice,
        );
        if let (false, Some(path)) = (existed, spec.sqlite_path()) {
            super::store::remove_store_files(path);
        }
        eprintln!(
            "not imported: {} finding(s) in the store after writing{}; {}",
            report.findings.len(),
            parts.iter().map(|p| format!("; {p}")).collect::<String>(),
            if existed {
                "the store held the imported events before this check; delete it"
            } else {
                "nothing was left in the store"
            }
        );
        return Ok(ExitCode::from(super::audit::EXIT_FINDINGS));
    }
    let imported = format!(
        "imported {} events in {} appends",
        imported.events, imported.appends
    );
    match &pinned {
        Some(pinned) => {
            let signed: std::collections::BTreeSet<(u64, &str)> = read
                .checkpoints
                .iter()
                .chain(auditors)
                .map(|c| (c.events, c.signature.as_str()))
                .collect();
            let covered = signed.iter().map(|(events, _)| *events).max().unwrap_or(0);
            eprintln!(
                "{imported}; authenticity verified against public key {}{}: {} checkpoint(s) signed with it match the log, the last after event {covered} of {}{}",
                pinned.hex,
                pinned
                    .from
                    .as_ref()
                    .map(|path| format!(" (the key of {})", path.display()))
                    .unwrap_or_default(),
                signed.len(),
                read.events.len(),
                match read.events.len() as u64 - covered.min(read.events.len() as u64) {
                    0 => String::new(),
                    after => format!(
                        "; the {after} events after it are covered by no signed checkpoint (sign the log again and export it again to cover them)"
                    ),
                }
            );
        }
        None => {
            eprintln!(
                "{imported}; the hash chains are intact{}",
                if read.checkpoints.is_empty() {
                    "; the file carries no signed checkpoint".to_string()
                } else {
                    format!(
                        " and the file's {} checkpoint(s) match its events, each signature checked against the key it names (a key the file itself supplies)",
                        read.checkpoints.len()
                    )
                }
            );
            eprintln!("{UNAUTHENTICATED}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
