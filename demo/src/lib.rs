//! `dealreg demo`: a realistic 120-day partner program, driven through the real engine.
//!
//! The demo is a client like any other: it sends JSON commands through the engine with a
//! controllable clock, acting as eight partners, the channel manager, direct sales and
//! RevOps, while the real timekeeper issues what falls due each simulated day. It reads
//! state through the engine and the projections, and at the end prints what a channel
//! manager wants to see, from the projections and the decoded log.
//!
//! Everything random comes from one seed: the engine's command and event ids, the ids the
//! clients choose, and the story's choices. The same seed gives a byte-identical log,
//! hashes included.

mod commands;
mod story;
mod summary;

use chrono::{TimeZone, Utc};
use dealreg_clock::{ControlledClock, SeededIds};
use dealreg_domain::Policy;
use dealreg_engine::{Engine, EngineError};
use dealreg_events::chain::verify_log;
use dealreg_events::{EventStore, StoreError};
use dealreg_host::reactor::ReactorError;
use dealreg_host::runner::ViewError;
use dealreg_vault::{KeyMaterial, KeyVault, MemoryVault};
use dealreg_views::CheckpointStore;
use std::sync::Arc;

pub use story::{Observer, StoryReport, DAYS};

/// The component name the demo writes as; a store whose first event carries it may be
/// replaced by the next demo run without `--force`.
pub const DEMO_MARK: &str = "dealreg-demo";

/// The seed of `dealreg demo` when none is given.
pub const DEFAULT_SEED: u64 = 0x5EED_DEA1_2026_0105;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reactor(#[from] ReactorError),
    #[error("the demo built a command the engine cannot read ({0}); this is a bug in the demo")]
    Unreadable(String),
    #[error("the demo's setup was refused ({0}); this is a bug in the demo")]
    Refused(String),
}

/// What a demo run did, and its report as text.
#[derive(Debug)]
pub struct DemoRun {
    pub story: StoryReport,
    /// The closing report a channel manager reads.
    pub text: String,
    /// Whether every hash chain verified at the end.
    pub chains_intact: bool,
}

/// Plays the story on `store` (which should be empty) with `seed`, keeping projections
/// in `checkpoints`.
pub async fn run<S: EventStore + Clone, K: CheckpointStore>(
    store: S,
    checkpoints: &K,
    seed: u64,
) -> Result<DemoRun, DemoError> {
    let vault = Arc::new(MemoryVault::new(KeyMaterial::Seeded(seed)));
    run_observed(store, checkpoints, seed, vault, &mut |_, _| {}).await
}

/// [`run`], sealing contacts with the keys of `vault` (the CLI's is the store's file).
pub async fn run_in<S: EventStore + Clone, K: CheckpointStore>(
    store: S,
    checkpoints: &K,
    seed: u64,
    vault: Arc<dyn KeyVault>,
) -> Result<DemoRun, DemoError> {
    run_observed(store, checkpoints, seed, vault, &mut |_, _| {}).await
}

/// [`run`], showing `observer` every reply a client of the demo got (a partner's is the
/// partner-safe form): the leak tests read them all.
pub async fn run_observed<S: EventStore + Clone, K: CheckpointStore>(
    store: S,
    checkpoints: &K,
    seed: u64,
    vault: Arc<dyn KeyVault>,
    observer: Observer<'_>,
) -> Result<DemoRun, DemoError> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .ok_or_else(|| DemoError::Refused("the start date is invalid".into()))?;
    let clock = ControlledClock::starting_at(start);
    let engine = Engine::open_with(
        store.clone(),
        clock.clone(),
        SeededIds::new(seed),
        Some(Policy::default_program()),
        DEMO_MARK,
    )
    .await?
    .with_vault(vault);
    let report = story::play(&engine, &clock, checkpoints, seed, start, observer).await?;
    let chains = verify_log(&store).await?;
    let text = summary::render(&store, checkpoints, &report, &chains).await?;
    Ok(DemoRun {
        story: report,
        text,
        chains_intact: chains.breaks.is_empty(),
    })
}
