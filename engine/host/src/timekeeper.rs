//! The timekeeper: issues the system commands whose deadlines have fallen due.
//!
//! Why restarts are safe: each command's idempotency key is derived from what it is for
//! (`timekeeper/<kind>/<registration or conflict>/<due time>`), so a command re-issued
//! after a crash replays the first reply instead of acting twice; and the domain itself
//! refuses what is not due or already recorded.

use chrono::{DateTime, Utc};
use dealreg_clock::Clock;
use dealreg_domain::command::*;
use dealreg_domain::{Actor, Command, ConflictSla};
use dealreg_events::EventStore;
use dealreg_projections::deadlines::{Deadline, DeadlineKind, Deadlines};

use dealreg_engine::engine::{Engine, EngineError, Executed};
use dealreg_engine::envelope::CommandEnvelope;

/// What one tick did.
#[derive(Debug, Default)]
pub struct Tick {
    pub issued: Vec<(Deadline, Executed)>,
}

/// The system command that answers a deadline.
fn command(deadline: &Deadline) -> Option<Command> {
    let account = deadline.account.0.clone();
    let conflict = |sla| {
        deadline.conflict_id.clone().map(|conflict_id| {
            Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
                account: account.clone(),
                conflict_id,
                sla,
            })
        })
    };
    let registration = deadline.registration_id;
    Some(match deadline.kind {
        DeadlineKind::ApprovalSla => Command::FlagApprovalSlaBreached(FlagApprovalSlaBreached {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::ReferralSla => Command::FlagReferralSlaBreached(FlagReferralSlaBreached {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::ExpiryReminder => Command::SendExpiryReminder(SendExpiryReminder {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::ProtectionExpiry => Command::ExpireProtection(ExpireProtection {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::Inactivity => Command::FlagInactive(FlagInactive {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::ConflictAcknowledgement => conflict(ConflictSla::Acknowledgement)?,
        DeadlineKind::ConflictResolutionPlan => conflict(ConflictSla::ResolutionPlan)?,
        DeadlineKind::RenewalOwnershipReview => {
            Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
                account: account.clone(),
                product_line: deadline.product_line.clone()?,
            })
        }
        DeadlineKind::NextStepOverdue => Command::FlagNextStepOverdue(FlagNextStepOverdue {
            account,
            registration_id: registration?,
        }),
        DeadlineKind::AnnouncementChase => {
            let (partner_id, announcement_id) = deadline.announcement?;
            Command::ChaseAnnouncement(ChaseAnnouncement {
                partner_id,
                announcement_id,
            })
        }
        DeadlineKind::UnbackedSlot => {
            let (partner_id, slot) = deadline.slot?;
            Command::LapseCapacitySlot(LapseCapacitySlot {
                account,
                registration_id: registration?,
                partner_id,
                slot,
            })
        }
    })
}

/// Issues every command due at the clock's `now` according to `deadlines`.
pub async fn tick<S: EventStore + Clone, C: Clock>(
    engine: &Engine<S, C>,
    deadlines: &Deadlines,
) -> Result<Tick, EngineError> {
    let now: DateTime<Utc> = engine.clock().now();
    let mut tick = Tick::default();
    for deadline in deadlines.due(now) {
        let Some(command) = command(&deadline) else {
            continue;
        };
        let subject = match (
            &deadline.registration_id,
            &deadline.conflict_id,
            &deadline.product_line,
        ) {
            (Some(r), _, _) => match deadline.slot {
                Some((partner, slot)) => format!("{r}/{partner}/{slot}"),
                None => r.to_string(),
            },
            (None, Some(c), _) => c.to_string(),
            (None, None, Some(line)) => line.clone(),
            (None, None, None) => match deadline.announcement {
                Some((partner, announcement)) => format!("{announcement}/{partner}"),
                None => continue,
            },
        };
        let envelope = CommandEnvelope {
            idempotency_key: Some(format!(
                "timekeeper/{:?}/{subject}/{}",
                deadline.kind,
                deadline.due_at.timestamp()
            )),
            actor: Actor::System {
                component: "timekeeper".into(),
            },
            command,
        };
        let executed = engine.execute(envelope).await?;
        if !executed.reply.ok {
            tracing::warn!(?deadline, error = ?executed.reply.error, "the timekeeper's command was refused");
        }
        tick.issued.push((deadline, executed));
    }
    Ok(tick)
}
