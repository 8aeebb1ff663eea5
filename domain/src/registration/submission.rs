//! Submission: the eligibility test, the partner gates, renewal ownership, the customer
//! uniqueness test, and the conflict signals a new registration raises.

use chrono::{Duration, NaiveDate};
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
pub(crate) fn is_email(raw: &str) -> bool {
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
pub(crate) fn is_phone(raw: &str) -> bool {
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
}

/// Decides a submission. The checks run in the order a partner can act on them, and the
/// first that fails answers: who may register, the input itself, the partner's gates,
/// renewal ownership, uniqueness on the account. A submission that passes them all is
/// recorded with its capacity slot, followed by the conflicts it raises.
pub(super) fn decide(
    state: &AccountState,
    command: &SubmitRegistration,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let product_line = normalise_product_line(&command.product_line);
    let submission = Submission {
        state,
        command,
        account: &account,
        product_line: &product_line,
        ctx,
    };
    submission.may_register()?;
    submission.eligible()?;
    let certified = submission.partner_gates()?;
    let claims_renewal = submission.renewal_ownership()?;
    submission.unique()?;
    let mut events = submission.recorded(certified);
    events.extend(submission.conflicts_raised(claims_renewal));
    Ok(events)
}

/// One submission being decided: the command, its product line normalised (the form
/// every check and every event uses), and what the decision reads. Its steps share these
/// so that each step's signature says only what it answers.
struct Submission<'a, 'c> {
    state: &'a AccountState,
    command: &'a SubmitRegistration,
    account: &'a AccountKey,
    product_line: &'a str,
    ctx: &'a Context<'c>,
}

/// A conflict the submission raises, before it is numbered and given its deadlines.
struct Signal {
    kind: ConflictKind,
    parties: Vec<ConflictParty>,
    reason: String,
}

impl Submission<'_, '_> {
    /// Who may register: the partner itself, or a channel manager on its behalf.
    fn may_register(&self) -> Result<(), DomainError> {
        let partner_id = &self.command.partner_id;
        match self.ctx.actor {
            Actor::Partner { partner_id: me, .. } if me == partner_id => Ok(()),
            Actor::Vendor {
                role: VendorRole::ChannelManager,
                ..
            } => Ok(()),
            _ => refuse(
                RejectionCode::NotAuthorised,
                format!(
                    "{} cannot register deals for partner {partner_id}",
                    self.ctx.actor.label()
                ),
            ),
        }
    }

    /// Eligibility: the required fields and proof of work, a contact e-mail (and phone, if given) of a plausible shape,
    /// a positive amount, an expected close neither past nor beyond the policy's horizon
    /// (a wrong year is the usual cause), and an id not used on this account yet.
    fn eligible(&self) -> Result<(), DomainError> {
        let SubmitRegistration {
            registration_id,
            customer,
            estimated_amount,
            expected_close,
            proof_of_work,
            ..
        } = self.command;
        let today = self.ctx.now.date_naive();
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
        require(self.product_line, "product_line")?;
        require(proof_of_work, "proof_of_work")?;
        estimated_amount.require_positive("estimated_amount")?;
        if *expected_close < today {
            return Err(invalid("expected_close", "is in the past"));
        }
        let horizon = self.ctx.policy.horizons.expected_close_days;
        if *expected_close > today + Duration::days(i64::from(horizon)) {
            return Err(invalid(
                "expected_close",
                &format!(
                    "is more than {horizon} days ahead (the policy's horizon); check the year"
                ),
            ));
        }
        if self.state.registrations.contains_key(registration_id) {
            return refuse(RejectionCode::RegistrationExists, format!("registration {registration_id} already exists; use a new id for a new registration"));
        }
        Ok(())
    }

    /// The partner's gates: onboarded and active, the motion in its agreement, the
    /// customer inside its territories (when the policy refuses outsiders), not another
    /// partner's exclusive named account, certified where the motion needs it, and
    /// within capacity. Answers whether the partner is certified in the product line,
    /// which the registration records either way.
    fn partner_gates(&self) -> Result<bool, DomainError> {
        let SubmitRegistration {
            registration_id,
            partner_id,
            customer,
            motion,
            ..
        } = self.command;
        let (state, ctx, product_line) = (self.state, self.ctx, self.product_line);
        let policy = ctx.policy;
        let facts = partner(ctx, *partner_id)?;
        if !facts.is_active() {
            return refuse(
                RejectionCode::PartnerNotActive,
                "the partner is not active in the program",
            );
        }
        crate::announcement::gate(policy, ctx.program.announcements(), facts)?;
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
        // Territories: a customer whose region (and vertical) lies outside every territory
        // of the partner is not the partner's to register, when the policy says so.
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
        let certified = facts.is_certified(product_line, ctx.now);
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
        Ok(certified)
    }

    /// Renewal ownership: the incumbent owns the renewal unless it was reassigned. Inside
    /// the renewal window that holds whatever kind of deal another partner calls its
    /// registration; outside it, only a registration that claims the renewal is refused.
    /// Answers the renewal date when the policy lets another partner in the window through
    /// with a conflict flagged instead.
    fn renewal_ownership(&self) -> Result<Option<NaiveDate>, DomainError> {
        let SubmitRegistration {
            partner_id, kind, ..
        } = self.command;
        let (state, ctx, product_line) = (self.state, self.ctx, self.product_line);
        let policy = ctx.policy;
        let owner = state.renewal_owner(product_line);
        let window = state.renewal_window(
            product_line,
            ctx.now.date_naive(),
            policy.timing.renewal_confirmation_days,
        );
        let mut claims_renewal = None;
        if let Some(owner) = owner.filter(|o| o != partner_id) {
            let refusal = |message: String, renews: Option<NaiveDate>| {
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
        Ok(claims_renewal)
    }

    /// Uniqueness: one protected registration per customer and product line, and one open
    /// registration per partner on it.
    fn unique(&self) -> Result<(), DomainError> {
        let (state, account, product_line) = (self.state, self.account, self.product_line);
        let partner_id = &self.command.partner_id;
        if let Some(holder) = state.protected_on(product_line) {
            return Err(DomainError::new(
                RejectionCode::DuplicateRegistration,
                format!("`{}` at {account} is already protected until {}; you may appeal or register another product line", product_line, holder.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
            )
            .with_details(json!({ "protected_by": holder.id, "expires_at": holder.expires_at })));
        }
        if let Some(mine) = state.registrations.values().find(|r| {
            r.partner_id == *partner_id && r.product_line == product_line && r.status.is_open()
        }) {
            return Err(DomainError::new(
                RejectionCode::DuplicateRegistration,
                "you already have an open registration for this customer and product line",
            )
            .with_details(json!({ "registration_id": mine.id })));
        }
        Ok(())
    }

    /// The submission on record, pending with its approval (and, for a referral, intro)
    /// clock started under the policy, and the capacity slot it takes from its partner.
    fn recorded(&self, certified: bool) -> Vec<Event> {
        let SubmitRegistration {
            registration_id,
            partner_id,
            customer,
            motion,
            estimated_amount,
            expected_close,
            proof_of_work,
            kind,
            ..
        } = self.command;
        let (account, now, policy) = (self.account, self.ctx.now, self.ctx.policy);
        let incumbent = self.state.incumbents.get(self.product_line) == Some(partner_id);
        vec![
            Event::RegistrationSubmitted {
                account: account.clone(),
                registration_id: *registration_id,
                partner_id: *partner_id,
                customer: customer.on_record(),
                product_line: self.product_line.trim().to_string(),
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
        ]
    }

    /// Conflict signals, caught at the moment they appear, in a fixed order (rival
    /// partners, direct sales, a named account, renewal ownership) that numbers them.
    fn conflicts_raised(&self, claims_renewal: Option<NaiveDate>) -> Vec<Event> {
        let mut signals = self.rivals();
        signals.extend(self.direct_sales());
        signals.extend(self.named_account());
        signals.extend(self.renewal_signals(claims_renewal));
        signals
            .into_iter()
            .enumerate()
            .map(|(detected, signal)| {
                conflict_detected(
                    self.state,
                    self.account,
                    signal.kind,
                    self.product_line,
                    signal.parties,
                    vec![signal.reason],
                    detected,
                    self.ctx,
                )
            })
            .collect()
    }

    /// The new registration as a conflict party.
    fn me(&self) -> ConflictParty {
        ConflictParty::Registration {
            registration_id: self.command.registration_id,
            partner_id: self.command.partner_id,
        }
    }

    /// Other partners' open registrations on the same product line: the same motion is a
    /// horizontal conflict (two partners at the same level), a different motion a
    /// multi-channel one (say a referral and a reseller on one deal).
    fn rivals(&self) -> Vec<Signal> {
        let SubmitRegistration {
            partner_id, motion, ..
        } = self.command;
        let (account, product_line) = (self.account, self.product_line);
        let rivals: Vec<&Registration> = self
            .state
            .registrations
            .values()
            .filter(|r| {
                r.status.is_open() && r.partner_id != *partner_id && r.product_line == product_line
            })
            .collect();
        let mut signals = Vec::new();
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
            parties.push(self.me());
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
            signals.push(Signal {
                kind,
                parties,
                reason,
            });
        }
        signals
    }

    /// Direct sales already working the product line at the account: a vertical conflict.
    fn direct_sales(&self) -> Option<Signal> {
        let (account, product_line) = (self.account, self.product_line);
        let direct: Vec<_> = self
            .state
            .direct_opportunities
            .iter()
            .filter(|o| o.product_line == product_line)
            .collect();
        if direct.is_empty() {
            return None;
        }
        let mut parties: Vec<ConflictParty> = direct
            .iter()
            .map(|o| ConflictParty::DirectSales {
                opportunity_id: o.id,
                owner: o.owner.clone(),
            })
            .collect();
        parties.push(self.me());
        Some(Signal {
            kind: ConflictKind::Vertical,
            parties,
            reason: format!("direct sales already works `{product_line}` at {account}"),
        })
    }

    /// Another partner's named account (not exclusive: that one was refused): a horizontal
    /// conflict with the named partner.
    fn named_account(&self) -> Option<Signal> {
        let account = self.account;
        let named = self
            .state
            .named_account
            .as_ref()
            .filter(|n| n.partner_id != self.command.partner_id)?;
        Some(Signal {
            kind: ConflictKind::Horizontal,
            parties: vec![
                ConflictParty::NamedPartner {
                    partner_id: named.partner_id,
                },
                self.me(),
            ],
            reason: format!("{account} is a named account of another partner"),
        })
    }

    /// Renewal-ownership conflicts: a registration inside another owner's renewal window
    /// that the policy let through (`claims_renewal`), then a renewal registered where no
    /// partner owns the product line.
    fn renewal_signals(&self, claims_renewal: Option<NaiveDate>) -> Vec<Signal> {
        let product_line = self.product_line;
        let mut signals = Vec::new();
        if let Some(renews) = claims_renewal {
            signals.push(Signal {
                kind: ConflictKind::RenewalOwnership,
                parties: vec![self.me()],
                reason: format!(
                    "`{product_line}` was registered inside its renewal window (renews {renews}) by a partner that does not own the renewal"
                ),
            });
        }
        if self.command.kind == DealKind::Renewal
            && self.state.renewal_owner(product_line).is_none()
        {
            signals.push(Signal {
                kind: ConflictKind::RenewalOwnership,
                parties: vec![self.me()],
                reason:
                    "a renewal was registered but no partner owns this product line on the account"
                        .into(),
            });
        }
        signals
    }
}
