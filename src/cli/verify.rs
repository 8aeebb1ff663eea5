//! `dealreg verify`: the auditor's walk of the whole log on any backend (every stream's
//! chain, the positions' order and gaps, and the records the backend keeps beside the
//! events), without signed checkpoints: the same check as `dealreg audit verify`, whose
//! checkpoints add the proof against a log regenerated whole.

use std::process::ExitCode;

pub async fn run(spec: &super::store::StoreSpec) -> Result<ExitCode, String> {
    let report = super::audit::verify(spec, &[], None).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::audit::EXIT_FINDINGS)
    })
}
