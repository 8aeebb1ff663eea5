//! `dealreg export` and `dealreg import`: the log as portable JSON lines, and back into an
//! empty store ([`dealreg_events::portable`]).
//!
//! Why an import is checked against the export's signed checkpoints before it is kept:
//! a file whose events were forged and rechained consistently reads back fine, and only a
//! checkpoint signed on the original log can tell. An import that a checkpoint in its own
//! file contradicts is refused, and what it wrote is removed (the store was empty and
//! created by the import).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

/// `dealreg import FILE`: into an empty store only.
pub async fn import(spec: &super::store::StoreSpec, file: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let read = portable::read_export(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let existed = spec.sqlite_path().is_none_or(Path::exists);
    let (store, _) = super::store::create_or_open(spec).await?;
    let imported = portable::import(&store, &read)
        .await
        .map_err(|e| format!("{spec}: {e}"))?;
    drop(store);
    let report = super::audit::verify(spec, &read.checkpoints, None).await?;
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        let _ = writeln!(out, "{finding}");
    }
    if !report.findings.is_empty() {
        let contradicted = report
            .findings
            .iter()
            .filter_map(|f| f.checkpoint)
            .collect::<std::collections::BTreeSet<_>>();
        if let (false, Some(path)) = (existed, spec.sqlite_path()) {
            super::store::remove_store_files(path);
        }
        eprintln!(
            "not imported: {} finding(s){}; {}",
            report.findings.len(),
            if contradicted.is_empty() {
                String::new()
            } else {
                format!(
                    ", checkpoint(s) {} of the file do not match its events",
                    contradicted
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if existed {
                "the store held the imported events before verifying; delete it"
            } else {
                "nothing was left in the store"
            }
        );
        return Ok(ExitCode::from(super::audit::EXIT_FINDINGS));
    }
    eprintln!(
        "imported {} events in {} appends; {} checkpoints verified",
        imported.events,
        imported.appends,
        read.checkpoints.len()
    );
    Ok(ExitCode::SUCCESS)
}
