//! What a partner actor is told about a command it sent: a partner-safe form of the reply.
//!
//! Why a type of its own, like the partner pipeline view's `PartnerRow`: a partner sees its
//! own organisation's registrations only (docs/RULES.md, "Visibility"; docs/ARCHITECTURE.md,
//! invariant 7). A full reply can carry another partner's id (in a conflict's parties), a
//! protecting registration's id or expiry (in a duplicate refusal), stream revisions that
//! count another partner's activity on the account, the vendor's rationales and amounts.
//! [`PartnerEvent`] has no field that can hold any of those, events about anything but the
//! partner's own registrations are left out, and refusals keep only what is about the
//! partner's own request.

use chrono::{DateTime, NaiveDate, Utc};
use dealreg_domain::ids::{AnnouncementId, NoteId};
use dealreg_domain::values::NoteVisibility;
use dealreg_domain::{
    AccountKey, DealKind, DomainError, Event, Motion, PartnerId, RegistrationId, RejectionCode,
};
use dealreg_events::Position;
use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// The reply a partner gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartnerReply {
    pub ok: bool,
    pub command: String,
    /// What changed for the partner's own registrations, with the log position (for
    /// read-your-writes); nothing else.
    pub events: Vec<PartnerEventLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PartnerError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartnerEventLine {
    pub position: Position,
    pub event: PartnerEvent,
}

/// A fact about one of the partner's own registrations, with partner-safe fields only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PartnerEvent {
    RegistrationSubmitted {
        registration_id: RegistrationId,
        account: AccountKey,
        company: String,
        product_line: String,
        motion: Motion,
        kind: DealKind,
        expected_close: NaiveDate,
        decision_due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RegistrationApproved {
        registration_id: RegistrationId,
        protection_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RegistrationDeclined {
        registration_id: RegistrationId,
        appeal_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ProtectionExtended {
        registration_id: RegistrationId,
        protection_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ExpiryReminderSent {
        registration_id: RegistrationId,
        protection_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ProtectionExpired {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    RegistrationWithdrawn {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    RegistrationReleased {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    AppealFiled {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    AppealDecided {
        registration_id: RegistrationId,
        upheld: bool,
        decision_due_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    StageAdvanced {
        registration_id: RegistrationId,
        from_stage: String,
        to_stage: String,
        next_step: Option<String>,
        at: DateTime<Utc>,
    },
    /// The partner's own credit on the deal was recorded (shares are the vendor's).
    CreditRecorded {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    DealWon {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    DealLost {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    /// The registration counts against the partner's capacity.
    CapacitySlotTaken {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    CapacitySlotReleased {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    /// A note the partner may read (never an internal one).
    NoteAdded {
        registration_id: RegistrationId,
        note_id: NoteId,
        text: String,
        at: DateTime<Utc>,
    },
    NextStepSet {
        registration_id: RegistrationId,
        text: String,
        due_on: NaiveDate,
        at: DateTime<Utc>,
    },
    NextStepOverdue {
        registration_id: RegistrationId,
        due_on: NaiveDate,
        at: DateTime<Utc>,
    },
    ExtensionRequested {
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    },
    MoreInformationRequested {
        registration_id: RegistrationId,
        question: String,
        at: DateTime<Utc>,
    },
    AnnouncementRead {
        announcement_id: AnnouncementId,
        at: DateTime<Utc>,
    },
    AnnouncementAcknowledged {
        announcement_id: AnnouncementId,
        at: DateTime<Utc>,
    },
    /// A subscription of one of the partner's people (the address stays out of replies).
    AlertSubscriptionSet {
        user: String,
        alerts: Vec<String>,
        at: DateTime<Utc>,
    },
    /// The command was refused; the reply's `error` says why.
    CommandRefused {
        code: RejectionCode,
        at: DateTime<Utc>,
    },
}

impl PartnerEvent {
    /// The partner-safe form of `event` for partner `me`, or `None` when the event is not
    /// about one of `me`'s registrations.
    pub fn of(event: &Event, me: PartnerId) -> Option<PartnerEvent> {
        use PartnerEvent as P;
        let mine = |partner: &PartnerId| *partner == me;
        Some(match event {
            Event::RegistrationSubmitted {
                registration_id,
                partner_id,
                account,
                customer,
                product_line,
                motion,
                kind,
                expected_close,
                approval_due_at,
                at,
                ..
            } if mine(partner_id) => P::RegistrationSubmitted {
                registration_id: *registration_id,
                account: account.clone(),
                company: customer.company.clone(),
                product_line: product_line.clone(),
                motion: *motion,
                kind: *kind,
                expected_close: *expected_close,
                decision_due_at: *approval_due_at,
                at: *at,
            },
            Event::RegistrationApproved {
                registration_id,
                partner_id,
                expires_at,
                at,
                ..
            } if mine(partner_id) => P::RegistrationApproved {
                registration_id: *registration_id,
                protection_expires_at: *expires_at,
                at: *at,
            },
            Event::RegistrationDeclined {
                registration_id,
                partner_id,
                appeal_until,
                at,
                ..
            } if mine(partner_id) => P::RegistrationDeclined {
                registration_id: *registration_id,
                appeal_until: *appeal_until,
                at: *at,
            },
            Event::ProtectionExtended {
                registration_id,
                partner_id,
                expires_at,
                at,
                ..
            } if mine(partner_id) => P::ProtectionExtended {
                registration_id: *registration_id,
                protection_expires_at: *expires_at,
                at: *at,
            },
            Event::ExpiryReminderSent {
                registration_id,
                partner_id,
                expires_at,
                at,
                ..
            } if mine(partner_id) => P::ExpiryReminderSent {
                registration_id: *registration_id,
                protection_expires_at: *expires_at,
                at: *at,
            },
            Event::ProtectionExpired {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::ProtectionExpired {
                registration_id: *registration_id,
                at: *at,
            },
            Event::RegistrationWithdrawn {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::RegistrationWithdrawn {
                registration_id: *registration_id,
                at: *at,
            },
            Event::RegistrationReleased {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::RegistrationReleased {
                registration_id: *registration_id,
                at: *at,
            },
            Event::AppealFiled {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::AppealFiled {
                registration_id: *registration_id,
                at: *at,
            },
            Event::AppealDecided {
                registration_id,
                partner_id,
                upheld,
                approval_due_at,
                at,
                ..
            } if mine(partner_id) => P::AppealDecided {
                registration_id: *registration_id,
                upheld: *upheld,
                decision_due_at: *approval_due_at,
                at: *at,
            },
            Event::StageAdvanced {
                registration_id,
                partner_id,
                from_stage,
                to_stage,
                evidence,
                at,
                ..
            } if mine(partner_id) => P::StageAdvanced {
                registration_id: *registration_id,
                from_stage: from_stage.clone(),
                to_stage: to_stage.clone(),
                next_step: evidence.next_step.clone(),
                at: *at,
            },
            Event::SourcingPartnerSet {
                registration_id,
                partner_id,
                at,
                ..
            }
            | Event::InfluencerAdded {
                registration_id,
                partner_id,
                at,
                ..
            }
            | Event::InfluencerRemoved {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::CreditRecorded {
                registration_id: *registration_id,
                at: *at,
            },
            Event::DealWon {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::DealWon {
                registration_id: *registration_id,
                at: *at,
            },
            Event::DealLost {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::DealLost {
                registration_id: *registration_id,
                at: *at,
            },
            Event::CapacitySlotTaken {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::CapacitySlotTaken {
                registration_id: *registration_id,
                at: *at,
            },
            Event::CapacitySlotReleased {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::CapacitySlotReleased {
                registration_id: *registration_id,
                at: *at,
            },
            Event::NoteAdded {
                registration_id,
                partner_id,
                note_id,
                text,
                visibility: NoteVisibility::Partner,
                at,
                ..
            } if mine(partner_id) => P::NoteAdded {
                registration_id: *registration_id,
                note_id: *note_id,
                text: text.clone(),
                at: *at,
            },
            Event::NextStepSet {
                registration_id,
                partner_id,
                text,
                due_on,
                at,
                ..
            } if mine(partner_id) => P::NextStepSet {
                registration_id: *registration_id,
                text: text.clone(),
                due_on: *due_on,
                at: *at,
            },
            Event::NextStepOverdue {
                registration_id,
                partner_id,
                due_on,
                at,
                ..
            } if mine(partner_id) => P::NextStepOverdue {
                registration_id: *registration_id,
                due_on: *due_on,
                at: *at,
            },
            Event::ExtensionRequested {
                registration_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::ExtensionRequested {
                registration_id: *registration_id,
                at: *at,
            },
            Event::MoreInformationRequested {
                registration_id,
                partner_id,
                question,
                at,
                ..
            } if mine(partner_id) => P::MoreInformationRequested {
                registration_id: *registration_id,
                question: question.clone(),
                at: *at,
            },
            Event::AnnouncementRead {
                announcement_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::AnnouncementRead {
                announcement_id: *announcement_id,
                at: *at,
            },
            Event::AnnouncementAcknowledged {
                announcement_id,
                partner_id,
                at,
                ..
            } if mine(partner_id) => P::AnnouncementAcknowledged {
                announcement_id: *announcement_id,
                at: *at,
            },
            Event::AlertSubscriptionSet {
                partner_id: Some(partner_id),
                user,
                alerts,
                at,
                ..
            } if mine(partner_id) => P::AlertSubscriptionSet {
                user: user.clone(),
                alerts: alerts.clone(),
                at: *at,
            },
            Event::CommandRejected { code, at, .. } => P::CommandRefused {
                code: *code,
                at: *at,
            },
            _ => return None,
        })
    }
}

/// A refusal as a partner may read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartnerError {
    pub code: RejectionCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// Detail keys that describe the partner's own request (the field it got wrong, its own
/// capacity, its own registration's stage...), never another party.
const SAFE_DETAILS: &[&str] = &[
    "field",
    "capacity",
    "motions",
    "extensions",
    "max",
    "due_at",
    "due_on",
    "appeal_until",
    "next_stage",
    "stages",
    "stage",
    "product_line",
    "expired_on",
    "status",
    "last_touch",
    "announcement_id",
    "title",
    "policy_version",
    "note_id",
];

/// Codes whose messages can speak of another party (its protection and expiry, its
/// claim's rank, the renewal's owner, a named account's partner, another sourcing
/// partner, the other influencers' shares): a partner gets a fixed text instead.
fn fixed_message(code: RejectionCode) -> Option<&'static str> {
    use RejectionCode as R;
    Some(match code {
        R::DuplicateRegistration => "this customer and product line cannot be registered now: it is already registered; register another product line, or ask your channel manager",
        R::AlreadyProtected => "this customer and product line are already protected",
        R::Outranked => "another claim on this customer and product line is decided first",
        R::RenewalOwnedByIncumbent => "this product line's renewal belongs to its owner unless a channel manager reassigns it",
        R::NamedAccountOfAnotherPartner => "this customer is another partner's exclusive named account; ask your channel manager",
        R::SourcingTaken => "the deal already has a sourcing partner; only a channel manager may change it",
        R::AttributionOver100 => "that share would take the deal's attribution over 100 %",
        R::UnknownRegistration => "you have no such registration on this account; check the id and the account domain",
        _ => return None,
    })
}

impl PartnerError {
    pub fn of(error: &DomainError) -> PartnerError {
        let details = match &error.details {
            serde_json::Value::Object(map) => {
                let kept: serde_json::Map<String, serde_json::Value> = map
                    .iter()
                    .filter(|(k, _)| SAFE_DETAILS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if kept.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::Object(kept)
                }
            }
            _ => serde_json::Value::Null,
        };
        PartnerError {
            code: error.code,
            message: fixed_message(error.code)
                .map(str::to_string)
                .unwrap_or_else(|| error.message.clone()),
            details,
        }
    }
}

impl PartnerReply {
    /// The partner-safe form of `reply` for partner `me`.
    pub fn of(reply: &Reply, me: PartnerId) -> PartnerReply {
        PartnerReply {
            ok: reply.ok,
            command: reply.command.clone(),
            events: reply
                .events
                .iter()
                .filter_map(|p| {
                    PartnerEvent::of(&p.event, me).map(|event| PartnerEventLine {
                        position: p.position,
                        event,
                    })
                })
                .collect(),
            error: reply.error.as_ref().map(PartnerError::of),
        }
    }
}
