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

use std::time::{Duration, Instant};

use dealreg_clock::Clock;
use dealreg_domain::command::ReleaseRegistration;
use dealreg_domain::{Actor, Command, Event};
use dealreg_events::{EventStore, LogPages, Position, StoreError};
use dealreg_views::{Checkpoint, CheckpointStore, ViewsError};

use crate::runner::{FOLD_EVERY, SAVE_EVERY};
use crate::tail::LogTail;
use dealreg_engine::codec::decode_event;
use dealreg_engine::engine::{Engine, EngineError, Executed};
use dealreg_engine::envelope::CommandEnvelope;

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
    Views(#[from] ViewsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What one run of the reactor did.
#[derive(Debug, Default)]
pub struct Reacted {
    /// The log position the reactor has handled up to.
    pub position: Position,
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

async fn saved_position<K: CheckpointStore>(checkpoints: &K) -> Result<Position, ViewsError> {
    Ok(match checkpoints.load(CHECKPOINT).await? {
        Some(saved) if saved.version == VERSION => saved.position,
        _ => Position::ORIGIN,
    })
}

async fn save<K: CheckpointStore>(checkpoints: &K, position: Position) -> Result<(), ViewsError> {
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

/// How far the reactor of this views file got.
pub async fn position<K: CheckpointStore>(checkpoints: &K) -> Result<Position, ViewsError> {
    saved_position(checkpoints).await
}

/// Moves the reactor's checkpoint on to `position` when it is behind: another process of
/// the deployment handled the log up to there ([`dealreg_views::SharedDuties`]).
pub async fn skip_to<K: CheckpointStore>(
    checkpoints: &K,
    position: Position,
) -> Result<(), ViewsError> {
    if saved_position(checkpoints).await? < position {
        save(checkpoints, position).await?;
    }
    Ok(())
}

/// Issues the follow-ups `event` implies and answers them (empty when it implies none).
async fn react<S: EventStore + Clone, C: Clock>(
    engine: &Engine<S, C>,
    event: &Event,
) -> Result<Vec<Executed>, ReactorError> {
    let mut issued = Vec::new();
    for envelope in follow_ups(event) {
        let executed = engine.execute(envelope).await?;
        if !executed.reply.ok {
            // Closed since (won, withdrawn...): nothing left to release.
            tracing::info!(error = ?executed.reply.error, "a follow-up was refused; the fact it follows is already settled");
        }
        issued.push(executed);
    }
    Ok(issued)
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
    let mut pages = LogPages::new(engine.store(), start).await?;
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            reacted.events += 1;
            let issued = react(engine, &decode_event(recorded)?).await?;
            let acted = !issued.is_empty();
            reacted.issued.extend(issued);
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
/// processes' appends) until `stop` resolves, reading through the process's shared
/// `tail`. The position is saved once every follow-up of an event was answered, and
/// otherwise at most every [`SAVE_EVERY`](crate::runner::SAVE_EVERY) while it moves (a
/// restart from an older position only reads again: every follow-up is idempotent).
pub async fn follow<S: EventStore + Clone, C: Clock, K: CheckpointStore>(
    engine: &Engine<S, C>,
    checkpoints: &K,
    tail: &LogTail<S>,
    poll: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Position, ReactorError> {
    let mut head = tail.newest();
    let mut stop = std::pin::pin!(stop);
    let mut position = saved_position(checkpoints).await?;
    let mut saved = position;
    let mut last_save = Instant::now();
    loop {
        let _ = *head.borrow_and_update();
        loop {
            let page = tail.read_after(position, 1024).await?;
            if page.is_empty() {
                break;
            }
            for decoded in &page {
                let acted = !react(engine, &decoded.event).await?.is_empty();
                position = decoded.position;
                if acted {
                    save(checkpoints, position).await?;
                    saved = position;
                }
            }
        }
        if saved != position && last_save.elapsed() >= SAVE_EVERY {
            save(checkpoints, position).await?;
            (saved, last_save) = (position, Instant::now());
        }
        let wait = if saved == position {
            poll
        } else {
            SAVE_EVERY.saturating_sub(last_save.elapsed())
        };
        let caught_at = Instant::now();
        tokio::select! {
            _ = &mut stop => {
                if saved != position {
                    save(checkpoints, position).await?;
                }
                return Ok(position);
            }
            _ = head.changed() => {
                // One read of the tail for a burst of appends.
                tokio::time::sleep(FOLD_EVERY.saturating_sub(caught_at.elapsed())).await;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl From<dealreg_engine::codec::DecodeError> for ReactorError {
    fn from(e: dealreg_engine::codec::DecodeError) -> Self {
        ReactorError::Engine(EngineError::Decode(e))
    }
}
