//! Submission: the eligibility test, the partner gates, renewal ownership, the customer
//! uniqueness test, and the conflict signals a new registration raises.

use chrono::Duration;
use serde_json::json;

use super::conflicts::conflict_detected;
use super::guards::{invalid, partner, require};
use crate::account::{AccountState, Registration};
use crate::actor::{Actor, VendorRole};
use crate::command::SubmitRegistration;
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{normalise_product_line, AccountKey};
use crate::motion::DealKind;
use crate::policy::{OutsideTerritory, RenewalClaims};
use crate::values::{ConflictKind, ConflictParty};

/// A plausible e-mail address: one `@`, a non-empty local part, a dotted domain, no spaces.
fn is_email(raw: &str) -> bool {
    let raw = raw.trim();
    match raw.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && !raw.chars().any(char::is_whitespace)
                && domain.contains('.')
                && domain.split('.').all(|label| !label.is_empty())
        }
        None => false,
    }
}

/// A phone number as people write one: digits with `+`, spaces, `-`, `.` and parentheses,
/// 5 to 20 digits in all. Only its shape is checked; no number is dialled.
fn is_phone(raw: &str) -> bool {
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
}

pub(super) fn decide(
    state: &AccountState,
    command: &SubmitRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let SubmitRegistration {
        registration_id,
        partner_id,
        customer,
        product_line,
        motion,
        estimated_amount,
        expected_close,
        proof_of_work,
        kind,
    } = command;
    let account = &account;
    let product_line = &normalise_product_line(product_line);
    let now = ctx.now;
    let policy = ctx.policy;
    // Who may register: the partner itself, or a channel manager on its behalf.
    match ctx.actor {
        Actor::Partner { partner_id: me, .. } if me == partner_id => {}
        Actor::Vendor {
            role: VendorRole::ChannelManager,
            ..
        } => {}
        _ => {
            return refuse(
                RejectionCode::NotAuthorised,
                format!(
                    "{} cannot register deals for partner {partner_id}",
                    ctx.actor.label()
                ),
            )
        }
    }
    // Eligibility: required fields and proof of work.
    require(&customer.company, "customer.company")?;
    require(&customer.contact.name, "customer.contact.name")?;
    require(&customer.contact.email, "customer.contact.email")?;
    if !is_email(&customer.contact.email) {
        return Err(invalid(
            "customer.contact.email",
            "is not an e-mail address",
        ));
    }
    if let Some(phone) = &customer.contact.phone {
        if !is_phone(phone) {
            return Err(invalid(
                "customer.contact.phone",
                "is not a phone number (digits, with `+`, spaces, `-`, `.` or parentheses; 5 to 20 digits)",
            ));
        }
    }
    require(product_line, "product_line")?;
    require(proof_of_work, "proof_of_work")?;
    estimated_amount.require_positive("estimated_amount")?;
    if *expected_close < now.date_naive() {
        return Err(invalid("expected_close", "is in the past"));
    }
    let horizon = policy.horizons.expected_close_days;
    if *expected_close > now.date_naive() + Duration::days(i64::from(horizon)) {
        return Err(invalid(
            "expected_close",
            &format!("is more than {horizon} days ahead (the policy's horizon); check the year"),
        ));
    }
    if state.registrations.contains_key(registration_id) {
        return refuse(RejectionCode::RegistrationExists, format!("registration {registration_id} already exists; use a new id for a new registration"));
    }
    // Partner gates: active, in the motion, certified, within capacity.
    let facts = partner(ctx, *partner_id)?;
    if !facts.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "the partner is not active in the program",
        );
    }
    if !facts.motions.contains(motion) {
        return Err(DomainError::new(
            RejectionCode::MotionNotInAgreement,
            format!(
                "the partner's agreement does not include the {} motion",
                motion.as_str()
            ),
        )
        .with_details(json!({ "motions": facts.motions })));
    }
    // Territories: a customer whose region (and vertical) lies outside every territory of
    // the partner is not the partner's to register, when the policy says so.
    if let Some(region) = customer.region.as_deref() {
        let covered = facts.territories.is_empty()
            || facts
                .territories
                .iter()
                .any(|t| t.covers(region, customer.vertical.as_deref()));
        if !covered && policy.territories.outside == OutsideTerritory::Refuse {
            return Err(DomainError::new(
                RejectionCode::OutsideTerritory,
                format!("a customer in `{region}` is outside the partner's territories; a channel manager can extend them (set_territories)"),
            )
            .with_details(json!({ "field": "customer.region", "territories": facts.territories })));
        }
    }
    // Named accounts: an exclusive one is its partner's alone.
    if let Some(named) = state
        .named_account
        .as_ref()
        .filter(|n| n.partner_id != *partner_id)
    {
        if named.exclusive {
            return refuse(
                RejectionCode::NamedAccountOfAnotherPartner,
                "this customer is another partner's exclusive named account; ask the channel manager",
            );
        }
    }
    let certified = facts.is_certified(product_line, now);
    if policy.requires_certification(*motion) && !certified {
        return Err(DomainError::new(
            RejectionCode::NotCertified,
            format!("a {} registration needs a current certification in `{product_line}`; certify the partner first", motion.as_str()),
        )
        .with_details(json!({ "product_line": product_line, "expired_on": facts.certifications.get(product_line) })));
    }
    if facts.at_capacity(registration_id) {
        return Err(DomainError::new(
            RejectionCode::CapacityReached,
            format!(
                "the partner has {} open registrations, its capacity; close or withdraw one first",
                facts.open_slots.len()
            ),
        )
        .with_details(json!({ "capacity": facts.capacity })));
    }
    // Renewal ownership: the incumbent owns the renewal unless it was reassigned. Inside
    // the renewal window that holds whatever kind of deal another partner calls its
    // registration; outside it, only a registration that claims the renewal is refused.
    let owner = state.renewal_owner(product_line);
    let window = state.renewal_window(
        product_line,
        now.date_naive(),
        policy.timing.renewal_confirmation_days,
    );
    let mut claims_renewal = None;
    if let Some(owner) = owner.filter(|o| o != partner_id) {
        let refusal = |message: String, renews: Option<chrono::NaiveDate>| {
            // A partner is not told who the owner is (invariant 7); the vendor is.
            let details = match (ctx.actor.partner(), renews) {
                (Some(_), Some(renews)) => json!({ "renewal_date": renews }),
                (Some(_), None) => json!({}),
                (None, Some(renews)) => json!({ "owner": owner, "renewal_date": renews }),
                (None, None) => json!({ "owner": owner }),
            };
            Err(
                DomainError::new(RejectionCode::RenewalOwnedByIncumbent, message)
                    .with_details(details),
            )
        };
        match (window, policy.renewals.others_in_window) {
            (Some(renews), RenewalClaims::Refuse) => {
                return refusal(format!("`{product_line}` renews on {renews}; inside its renewal window the renewal belongs to its owner unless a channel manager reassigns it"), Some(renews));
            }
            (Some(renews), RenewalClaims::Flag) => claims_renewal = Some(renews),
            (None, _) if *kind == DealKind::Renewal => {
                return refusal("the renewal belongs to the account's incumbent partner unless a channel manager reassigns it".into(), None);
            }
            (None, _) => {}
        }
    }
    // Uniqueness: one protected registration per customer and product line.
    if let Some(holder) = state.protected_on(product_line) {
        return Err(DomainError::new(
            RejectionCode::DuplicateRegistration,
            format!("`{}` at {account} is already protected until {}; you may appeal or register another product line", product_line, holder.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
        )
        .with_details(json!({ "protected_by": holder.id, "expires_at": holder.expires_at })));
    }
    if let Some(mine) = state.registrations.values().find(|r| {
        r.partner_id == *partner_id && r.product_line == *product_line && r.status.is_open()
    }) {
        return Err(DomainError::new(
            RejectionCode::DuplicateRegistration,
            "you already have an open registration for this customer and product line",
        )
        .with_details(json!({ "registration_id": mine.id })));
    }

    let incumbent = state.incumbents.get(product_line) == Some(partner_id);
    let mut events = vec![
        Event::RegistrationSubmitted {
            account: account.clone(),
            registration_id: *registration_id,
            partner_id: *partner_id,
            customer: customer.on_record(),
            product_line: product_line.trim().to_string(),
            motion: *motion,
            kind: *kind,
            estimated_amount: estimated_amount.clone(),
            expected_close: *expected_close,
            proof_of_work: proof_of_work.clone(),
            certified,
            incumbent,
            approval_due_at: now + Duration::hours(i64::from(policy.decision_hours())),
            intro_due_at: policy
                .intro_hours(*motion)
                .map(|h| now + Duration::hours(i64::from(h))),
            policy_version: policy.version,
            at: now,
        },
        Event::CapacitySlotTaken {
            partner_id: *partner_id,
            registration_id: *registration_id,
            account: account.clone(),
            at: now,
        },
    ];
    // Conflict signals, caught at the moment they appear.
    let me = ConflictParty::Registration {
        registration_id: *registration_id,
        partner_id: *partner_id,
    };
    let mut detected = 0;
    // Other partners' open registrations on the same product line: the same motion is a
    // horizontal conflict (two partners at the same level), a different motion a
    // multi-channel one (say a referral and a reseller on one deal).
    let rivals: Vec<&Registration> = state
        .registrations
        .values()
        .filter(|r| {
            r.status.is_open() && r.partner_id != *partner_id && r.product_line == *product_line
        })
        .collect();
    for (kind, same_motion) in [
        (ConflictKind::Horizontal, true),
        (ConflictKind::MultiChannel, false),
    ] {
        let involved: Vec<&&Registration> = rivals
            .iter()
            .filter(|r| (r.motion == *motion) == same_motion)
            .collect();
        if involved.is_empty() {
            continue;
        }
        let mut parties: Vec<ConflictParty> = involved
            .iter()
            .map(|r| ConflictParty::Registration {
                registration_id: r.id,
                partner_id: r.partner_id,
            })
            .collect();
        parties.push(me.clone());
        let reason = if same_motion {
            format!(
                "{} {} partners registered `{product_line}` at {account}",
                involved.len() + 1,
                motion.as_str()
            )
        } else {
            let mut motions: Vec<&str> = involved.iter().map(|r| r.motion.as_str()).collect();
            motions.sort();
            motions.dedup();
            format!(
                "{} overlaps {} on `{product_line}` at {account}",
                motion.as_str(),
                motions.join(", ")
            )
        };
        events.push(conflict_detected(
            state,
            account,
            kind,
            product_line,
            parties,
            vec![reason],
            detected,
            ctx,
        ));
        detected += 1;
    }
    let direct: Vec<_> = state
        .direct_opportunities
        .iter()
        .filter(|o| o.product_line == *product_line)
        .collect();
    if !direct.is_empty() {
        let mut parties: Vec<ConflictParty> = direct
            .iter()
            .map(|o| ConflictParty::DirectSales {
                opportunity_id: o.id,
                owner: o.owner.clone(),
            })
            .collect();
        parties.push(me.clone());
        events.push(conflict_detected(
            state,
            account,
            ConflictKind::Vertical,
            product_line,
            parties,
            vec![format!(
                "direct sales already works `{product_line}` at {account}"
            )],
            detected,
            ctx,
        ));
        detected += 1;
    }
    if let Some(named) = state
        .named_account
        .as_ref()
        .filter(|n| n.partner_id != *partner_id)
    {
        events.push(conflict_detected(
            state,
            account,
            ConflictKind::Horizontal,
            product_line,
            vec![
                ConflictParty::NamedPartner {
                    partner_id: named.partner_id,
                },
                me.clone(),
            ],
            vec![format!("{account} is a named account of another partner")],
            detected,
            ctx,
        ));
        detected += 1;
    }
    if let Some(renews) = claims_renewal {
        events.push(conflict_detected(
            state,
            account,
            ConflictKind::RenewalOwnership,
            product_line,
            vec![me.clone()],
            vec![format!(
                "`{product_line}` was registered inside its renewal window (renews {renews}) by a partner that does not own the renewal"
            )],
            detected,
            ctx,
        ));
        detected += 1;
    }
    if *kind == DealKind::Renewal && owner.is_none() {
        events.push(conflict_detected(
            state,
            account,
            ConflictKind::RenewalOwnership,
            product_line,
            vec![me],
            vec![
                "a renewal was registered but no partner owns this product line on the account"
                    .into(),
            ],
            detected,
            ctx,
        ));
    }
    Ok(events)
}
