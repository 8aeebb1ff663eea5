//! Who hears of what: a person's subscription to the program's alerts (which alerts, by
//! e-mail and/or Slack, quiet hours, a daily digest).
//!
//! Why in the log: the recipient's name and address are personal data, kept like a
//! registration's contact: sealed in the event with the person's key, erased everywhere by
//! `dealreg forget` (docs/PERSONAL-DATA.md). A partner user's subscription is its
//! partner's fact (the partner stream); a vendor user's is the program's.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::actor::{Actor, VendorRole};
use crate::command::SetAlertSubscription;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::values::{Contact, ContactOnRecord};

/// Every alert a person can subscribe to, by name (docs/NOTIFICATIONS.md says when each
/// is sent). The first group goes to channel managers, the rest to the partner concerned.
pub const ALERT_KINDS: &[&str] = &[
    "registration_submitted",
    "approval_due",
    "approval_sla_breached",
    "extension_requested",
    "registration_approved",
    "registration_declined",
    "more_information_requested",
    "protection_expiring",
    "protection_expired",
    "extension_granted",
    "conflict_raised",
    "conflict_acknowledgement_due",
    "conflict_resolved",
    "stage_changed",
    "next_step_overdue",
    "note_added",
    "payout_recorded",
    "announcement_published",
    "announcement_acknowledgement_due",
];

pub(crate) fn decide(
    c: &SetAlertSubscription,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let allowed = match (actor, c.partner_id) {
        (Actor::Partner { partner_id, .. }, Some(wanted)) => *partner_id == wanted,
        (Actor::Vendor { role, .. }, _) => {
            matches!(role, VendorRole::RevOps | VendorRole::ChannelManager)
        }
        _ => false,
    };
    if !allowed {
        return refuse(
            RejectionCode::NotAuthorised,
            format!(
                "{} may not set this subscription: a partner user subscribes its own partner's people, RevOps or a channel manager anyone",
                actor.label()
            ),
        );
    }
    let field = |field: &str, why: &str| {
        DomainError::new(RejectionCode::InvalidField, format!("`{field}` {why}"))
            .with_details(json!({ "field": field }))
    };
    if c.user.trim().is_empty() {
        return Err(field("user", "is required"));
    }
    if c.name.trim().is_empty() {
        return Err(field("name", "is required"));
    }
    let email = c.email.trim();
    if !is_recipient_email(email) {
        return Err(field("email", "is not an e-mail address"));
    }
    if let Some(unknown) = c.alerts.iter().find(|a| !ALERT_KINDS.contains(&a.as_str())) {
        return Err(
            field("alerts", &format!("names an unknown alert `{unknown}`")).with_details(
                json!({ "field": "alerts", "unknown": unknown, "known": ALERT_KINDS }),
            ),
        );
    }
    if let Some(q) = c.quiet_hours {
        if q.start_hour > 23 || q.end_hour > 23 || q.start_hour == q.end_hour {
            return Err(field(
                "quiet_hours",
                "needs two different hours from 0 to 23",
            ));
        }
    }
    if let Some(channel) = &c.slack_channel {
        if channel.trim().is_empty() || channel.len() > 80 {
            return Err(field("slack_channel", "is not a Slack channel id or name"));
        }
    }
    let mut alerts = c.alerts.clone();
    alerts.sort();
    alerts.dedup();
    Ok(vec![Event::AlertSubscriptionSet {
        partner_id: c.partner_id,
        user: c.user.trim().to_string(),
        recipient: ContactOnRecord::Clear(Contact {
            name: c.name.trim().to_string(),
            email: email.to_string(),
            phone: None,
        }),
        by_email: c.by_email,
        slack_channel: c.slack_channel.clone(),
        alerts,
        quiet_hours: c.quiet_hours,
        digest: c.digest,
        at: now,
    }])
}

/// An address a subscription accepts: one with a local part and a dotted domain, no
/// spaces, at most 254 characters.
pub(crate) fn is_recipient_email(email: &str) -> bool {
    let email = email.trim();
    email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace)
        && email.len() <= 254
}
