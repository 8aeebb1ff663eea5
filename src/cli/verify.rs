//! `dealreg verify`: walks the whole log and checks every stream's hash chain, with the
//! store's one chain check ([`dealreg_events::chain::verify_log`]).

use std::path::Path;
use std::process::ExitCode;

use dealreg_events::chain::verify_log;

pub async fn run(path: &Path) -> Result<ExitCode, String> {
    let store = super::store::open_read(path)?;
    let report = verify_log(&store).await.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(if report.breaks.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
