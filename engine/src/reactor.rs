//! The follow-up reactor: commands that follow from recorded facts, issued from the log
//! rather than inside the request that recorded the fact.
//!
//! Today one fact has follow-ups: an offboarded partner's open registrations are released
//! on their accounts. The offboarding's reply does not wait on those other accounts; the
//! reactor reads the log from its own checkpoint, issues each release as a system command
//! with an idempotency key derived from the registration, and moves its checkpoint past an
//! event only once every command the event implies has been answered. A crash anywhere is
//! finished on restart: commands issued before the crash replay (same key), the rest run,
//! so each release happens once.

use std::time::Duration;

use dealreg_clock::Clock;
use dealreg_domain::command::ReleaseRegistration;
use dealreg_domain::{Actor, Command, Event};
use dealreg_store::{
    Checkpoint, CheckpointStore, EventStore, GlobalPosition, LogPages, StoreError,
};

use crate::codec::decode_event;
use crate::engine::{Engine, EngineError, Executed};
use crate::envelope::CommandEnvelope;

/// The reactor's checkpoint name (beside the projections' checkpoints).
pub const CHECKPOINT: &str = "reactor/follow-ups";

/// The version of what the reactor reacts to; a checkpoint of another version restarts it
/// from the origin (safe: every follow-up is idempotent).
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What one run of the reactor did.
#[derive(Debug, Default)]
pub struct Reacted {
    /// The log position the reactor has handled up to.
    pub position: GlobalPosition,
    /// Events read.
    pub events: u64,
    /// Follow-up commands issued, with their replies (a replay means a crashed run had
    /// already issued it).
    pub issued: Vec<Executed>,
}

/// The commands an event implies, each with its idempotency key.
pub fn follow_ups(event: &Event) -> Vec<CommandEnvelope> {
    match event {
        Event::PartnerOffboarded {
            open_registrations,
            reason,
            ..
        } => open_registrations
            .iter()
            .map(|slot| CommandEnvelope {
                idempotency_key: Some(format!("offboarding-release/{}", slot.registration_id)),
                actor: Actor::System {
                    component: "offboarding".into(),
                },
                command: Command::ReleaseRegistration(ReleaseRegistration {
                    account: slot.account.0.clone(),
                    registration_id: slot.registration_id,
                    reason: format!("partner offboarded: {reason}"),
                }),
            })
            .collect(),
        _ => Vec::new(),
    }
}

async fn saved_position<K: CheckpointStore>(checkpoints: &K) -> Result<GlobalPosition, StoreError> {
    Ok(match checkpoints.load(CHECKPOINT).await? {
        Some(saved) if saved.version == VERSION => saved.position,
        _ => GlobalPosition::ORIGIN,
    })
}

async fn save<K: CheckpointStore>(
    checkpoints: &K,
    position: GlobalPosition,
) -> Result<(), StoreError> {
    checkpoints
        .save(
            CHECKPOINT,
            Checkpoint {
                position,
                version: VERSION,
                state: Vec::new(),
            },
        )
        .await
}

/// Handles every event after the reactor's checkpoint, up to the log's head.
pub async fn catch_up<S: EventStore + Clone, C: Clock, K: CheckpointStore>(
    engine: &Engine<S, C>,
    checkpoints: &K,
) -> Result<Reacted, ReactorError> {
    let start = saved_position(checkpoints).await?;
    let mut reacted = Reacted {
        position: start,
        ..Reacted::default()
    };
    let mut pages = LogPages::new(engine.store(), start, 1024);
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            reacted.events += 1;
            let commands = follow_ups(&decode_event(recorded)?);
            let acted = !commands.is_empty();
            for envelope in commands {
                let executed = engine.execute(envelope).await?;
                if !executed.reply.ok {
                    // Closed since (won, withdrawn...): nothing left to release.
                    tracing::info!(error = ?executed.reply.error, "a follow-up was refused; the fact it follows is already settled");
                }
                reacted.issued.push(executed);
            }
            reacted.position = recorded.position;
            if acted {
                save(checkpoints, reacted.position).await?;
            }
        }
        save(checkpoints, reacted.position).await?;
    }
    Ok(reacted)
}

/// Keeps reacting as events arrive (the store's head watch, or `poll` for other
/// processes' appends) until `stop` resolves.
pub async fn follow<S: EventStore + Clone, C: Clock, K: CheckpointStore>(
    engine: &Engine<S, C>,
    checkpoints: &K,
    poll: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<GlobalPosition, ReactorError> {
    let mut head = engine.store().head();
    let mut stop = std::pin::pin!(stop);
    loop {
        let _ = *head.borrow_and_update();
        let reacted = catch_up(engine, checkpoints).await?;
        let caught_at = std::time::Instant::now();
        tokio::select! {
            _ = &mut stop => return Ok(reacted.position),
            _ = head.changed() => {
                // One catch-up (and one checkpoint save) for a burst of appends.
                tokio::time::sleep(crate::runner::FOLD_EVERY.saturating_sub(caught_at.elapsed())).await;
            }
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
