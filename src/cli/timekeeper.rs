//! `dealreg timekeeper [--at T]`: one tick of the timekeeper on the deadlines projection,
//! brought up to date from its checkpoint.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use dealreg_engine::Engine;
use dealreg_host::runner::{self, CatchUp};
use dealreg_host::{reactor, timekeeper};
use dealreg_projections::deadlines::Deadlines;

pub async fn run(
    spec: &super::store::StoreSpec,
    at: Option<DateTime<Utc>>,
) -> Result<ExitCode, String> {
    let (store, checkpoints) = super::store::open_existing_to_append(spec).await?;
    let engine = Engine::open(store.clone(), super::store::clock(at), None)
        .await
        .map_err(|e| e.to_string())?
        .with_vault(super::store::vault(spec, dealreg_vault::KeyMaterial::Random).await?);
    // A run of the timekeeper also finishes follow-ups a crashed process left.
    reactor::catch_up(&engine, &checkpoints)
        .await
        .map_err(|e| format!("the follow-up reactor stopped: {e}"))?;
    let deadlines =
        runner::catch_up::<Deadlines, _, _>(&store, &checkpoints, CatchUp::default(), |_| {})
            .await
            .map_err(|e| e.to_string())?;
    let done = timekeeper::tick(&engine, &deadlines.state)
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
