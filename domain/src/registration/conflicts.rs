//! Channel conflicts on the account: how a detected conflict is recorded (its id and its
//! two SLA clocks), vertical conflicts raised when direct sales opens an opportunity, and
//! the conflict desk's acknowledgement, SLA breaches and resolution.

use chrono::Duration;

use super::guards::{channel_manager, invalid, not_due, partner, require, system};
use crate::account::{AccountState, Conflict, ConflictStatus, Registration, RegistrationStatus};
use crate::actor::VendorRole;
use crate::calendar::add_business_days;
use crate::command::{
    AcknowledgeConflict, AssignNamedAccount, FlagConflictSlaBreached, RecordDirectOpportunity,
    RecordResolutionPlan, ResolveConflict,
};
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::{normalise_product_line, AccountKey, ConflictId};
use crate::route::ConflictCommand;
use crate::values::{ConflictKind, ConflictParty, ConflictSla};

pub(super) fn decide(
    state: &AccountState,
    command: ConflictCommand<'_>,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    match command {
        ConflictCommand::RecordDirectOpportunity(c) => direct_opportunity(state, c, account, ctx),
        ConflictCommand::Acknowledge(c) => acknowledge(state, c, account, ctx),
        ConflictCommand::FlagSlaBreached(c) => flag_sla_breached(state, c, account, ctx),
        ConflictCommand::RecordPlan(c) => record_plan(state, c, account, ctx),
        ConflictCommand::Resolve(c) => resolve(state, c, account, ctx),
        ConflictCommand::AssignNamedAccount(c) => assign_named_account(state, c, account, ctx),
    }
}

/// The conflicts a closing registration settles: those it is a party of that would be
/// left with fewer than two live parties (or none, for a conflict of one party). A party
/// is live while its registration is pending or protected; direct sales and a named
/// partner stay live. Recorded as `conflict_closed` in the same decision as the close.
pub(super) fn settled_by(
    state: &AccountState,
    account: &AccountKey,
    closing: &Registration,
    what: &str,
    ctx: &Context<'_>,
) -> Vec<Event> {
    let live = |party: &ConflictParty| match party {
        ConflictParty::Registration {
            registration_id, ..
        } => {
            *registration_id != closing.id
                && state
                    .registrations
                    .get(registration_id)
                    .is_some_and(|r| r.status.is_open())
        }
        ConflictParty::DirectSales { .. }
        | ConflictParty::NamedPartner { .. }
        | ConflictParty::RenewalOwner { .. } => true,
    };
    state
        .conflicts
        .values()
        .filter(|c| !c.status.is_settled())
        .filter(|c| {
            c.parties.iter().any(|p| {
                matches!(p, ConflictParty::Registration { registration_id, .. } if *registration_id == closing.id)
            })
        })
        .filter(|c| c.parties.iter().filter(|p| live(p)).count() < c.parties.len().min(2))
        .map(|c| Event::ConflictClosed {
            account: account.clone(),
            conflict_id: c.id.clone(),
            reason: format!(
                "registration {} {what}; fewer than two live parties remain",
                closing.id
            ),
            at: ctx.now,
        })
        .collect()
}

/// A newly detected conflict, numbered after the account's earlier ones (`offset`: how
/// many this decision already detected), with its acknowledgement and resolution-plan
/// deadlines under the policy.
#[allow(clippy::too_many_arguments)]
pub(super) fn conflict_detected(
    state: &AccountState,
    account: &AccountKey,
    kind: ConflictKind,
    product_line: &str,
    parties: Vec<ConflictParty>,
    reasons: Vec<String>,
    offset: usize,
    ctx: &Context<'_>,
) -> Event {
    Event::ConflictDetected {
        account: account.clone(),
        conflict_id: ConflictId(format!(
            "{account}/{product_line}/{}",
            state.conflicts.len() + offset + 1
        )),
        kind,
        product_line: product_line.to_string(),
        parties,
        reasons,
        acknowledge_by: ctx.now + Duration::hours(i64::from(ctx.policy.sla.conflict_ack_hours)),
        resolution_plan_by: Some(add_business_days(
            ctx.now,
            ctx.policy.sla.conflict_resolution_business_days,
        )),
        policy_version: ctx.policy.version,
        at: ctx.now,
    }
}

/// A conflict the desk may still work on, for a channel manager: known, not closed by
/// itself, not resolved (`resolved_then` ends the refusal's message when it is).
fn unsettled<'s>(
    state: &'s AccountState,
    id: &ConflictId,
    ctx: &Context<'_>,
    resolved_then: &str,
) -> Result<&'s Conflict, DomainError> {
    channel_manager(ctx.actor)?;
    let c = known(state, id)?;
    closed_by_itself(c)?;
    if c.status == ConflictStatus::Resolved {
        let message = if resolved_then.is_empty() {
            "this conflict is already resolved".to_string()
        } else {
            format!("this conflict is already resolved; {resolved_then}")
        };
        return refuse(RejectionCode::AlreadyRecorded, message);
    }
    Ok(c)
}

/// A conflict that closed by itself takes no more work from the desk.
fn closed_by_itself(c: &Conflict) -> Result<(), DomainError> {
    if c.status == ConflictStatus::Closed {
        refuse(
            RejectionCode::AlreadyRecorded,
            "this conflict closed by itself: fewer than two of its parties are still live",
        )
    } else {
        Ok(())
    }
}

fn known<'s>(state: &'s AccountState, id: &ConflictId) -> Result<&'s Conflict, DomainError> {
    state.conflicts.get(id).ok_or_else(|| {
        DomainError::new(
            RejectionCode::UnknownConflict,
            format!("no conflict {id} on this account"),
        )
    })
}

fn direct_opportunity(
    state: &AccountState,
    command: &RecordDirectOpportunity,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let product_line = &normalise_product_line(&command.product_line);
    let owner = &command.owner;
    if !(ctx.actor.is_role(VendorRole::DirectSales)
        || ctx.actor.is_role(VendorRole::ChannelManager)
        || ctx.actor.is_system())
    {
        return refuse(
            RejectionCode::NotAuthorised,
            "direct opportunities are recorded by direct sales or the CRM adapter",
        );
    }
    require(owner, "owner")?;
    require(product_line, "product_line")?;
    command.amount.require_positive("amount")?;
    if state
        .direct_opportunities
        .iter()
        .any(|o| o.id == command.opportunity_id)
    {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this opportunity is already recorded",
        );
    }
    let mut events = vec![Event::DirectOpportunityRecorded {
        account: account.clone(),
        opportunity_id: command.opportunity_id,
        owner: owner.clone(),
        product_line: product_line.clone(),
        amount: command.amount.clone(),
        at: ctx.now,
    }];
    // Vertical: the partner side of the same product line, open registrations and the
    // partner that won it and owns its renewal while the won contract's term runs.
    let mut parties: Vec<ConflictParty> = state
        .registrations
        .values()
        .filter(|r| r.status.is_open() && r.product_line == *product_line)
        .map(|r| ConflictParty::Registration {
            registration_id: r.id,
            partner_id: r.partner_id,
        })
        .collect();
    let open = parties.len();
    let mut reasons = Vec::new();
    if open > 0 {
        reasons.push(format!("direct sales ({owner}) opened an opportunity on `{product_line}` where {open} partner registration(s) are open"));
    }
    let today = ctx.now.date_naive();
    if let (Some(renewal_date), Some(renewal_owner)) = (
        state.renewal_dates.get(product_line.as_str()).copied(),
        state.renewal_owner(product_line),
    ) {
        if renewal_date >= today {
            parties.push(ConflictParty::RenewalOwner {
                partner_id: renewal_owner,
                renewal_date,
            });
            reasons.push(format!("direct sales ({owner}) opened an opportunity on `{product_line}`, which partner {renewal_owner} won and whose renewal on {renewal_date} it owns"));
        }
    }
    if !parties.is_empty() {
        parties.push(ConflictParty::DirectSales {
            opportunity_id: command.opportunity_id,
            owner: owner.clone(),
        });
        events.push(conflict_detected(
            state,
            &account,
            ConflictKind::Vertical,
            product_line,
            parties,
            reasons,
            0,
            ctx,
        ));
    }
    // A risk: direct sales on another product line of an account a partner is protected on.
    let protected: Vec<&Registration> = state
        .registrations
        .values()
        .filter(|r| r.status == RegistrationStatus::Protected && r.product_line != *product_line)
        .collect();
    if !protected.is_empty() {
        let mut parties: Vec<ConflictParty> = protected
            .iter()
            .map(|r| ConflictParty::Registration {
                registration_id: r.id,
                partner_id: r.partner_id,
            })
            .collect();
        parties.push(ConflictParty::DirectSales {
            opportunity_id: command.opportunity_id,
            owner: owner.clone(),
        });
        let mut lines: Vec<&str> = protected.iter().map(|r| r.product_line.as_str()).collect();
        lines.sort_unstable();
        lines.dedup();
        let reason = format!(
            "direct sales ({owner}) opened an opportunity on `{product_line}` at an account where partners hold protection on {}",
            lines.join(", ")
        );
        let offset = events
            .iter()
            .filter(|e| matches!(e, Event::ConflictDetected { .. }))
            .count();
        events.push(conflict_detected(
            state,
            &account,
            ConflictKind::DirectOnProtectedAccount,
            product_line,
            parties,
            vec![reason],
            offset,
            ctx,
        ));
    }
    Ok(events)
}

fn acknowledge(
    state: &AccountState,
    command: &AcknowledgeConflict,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    channel_manager(ctx.actor)?;
    let c = known(state, &command.conflict_id)?;
    closed_by_itself(c)?;
    if c.status != ConflictStatus::Open {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this conflict was already acknowledged",
        );
    }
    Ok(vec![Event::ConflictAcknowledged {
        account,
        conflict_id: c.id.clone(),
        by: ctx.actor.label(),
        note: command.note.clone(),
        at: ctx.now,
    }])
}

fn flag_sla_breached(
    state: &AccountState,
    command: &FlagConflictSlaBreached,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    system(ctx.actor)?;
    let c = known(state, &command.conflict_id)?;
    closed_by_itself(c)?;
    let sla = command.sla;
    let (due_at, met) = match sla {
        ConflictSla::Acknowledgement => (c.acknowledge_by, c.status != ConflictStatus::Open),
        // Met by a recorded plan (or by the resolution itself, which needs no plan).
        ConflictSla::ResolutionPlan => (
            c.resolution_plan_by.unwrap_or_else(|| {
                add_business_days(
                    c.detected_at,
                    ctx.policy.sla.conflict_resolution_business_days,
                )
            }),
            c.plan.is_some() || c.status == ConflictStatus::Resolved,
        ),
    };
    if met {
        return refuse(RejectionCode::InvalidTransition, "that SLA was met");
    }
    if ctx.now < due_at {
        return not_due("the conflict SLA is breached", due_at);
    }
    if c.breached.contains(&sla) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this SLA breach is already recorded",
        );
    }
    Ok(vec![Event::ConflictSlaBreached {
        account,
        conflict_id: c.id.clone(),
        sla,
        due_at,
        policy_version: ctx.policy.version,
        at: ctx.now,
    }])
}

/// The resolution plan (docs/RULES.md, registration policy 6: within 5 business days): who
/// owns the work, its steps, the date it is to be resolved by. A later plan revises the
/// earlier one; the SLA is met by the first.
fn record_plan(
    state: &AccountState,
    command: &RecordResolutionPlan,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let c = unsettled(state, &command.conflict_id, ctx, "it needs no plan")?;
    require(&command.owner, "owner")?;
    if command.steps.is_empty() || command.steps.iter().any(|s| s.trim().is_empty()) {
        return Err(invalid(
            "steps",
            "must list at least one step, none of them blank",
        ));
    }
    if command.resolve_by < ctx.now.date_naive() {
        return Err(invalid("resolve_by", "must be today or later"));
    }
    let plan = (
        command.owner.trim().to_string(),
        command.steps.clone(),
        command.resolve_by,
    );
    if c.plan.as_ref() == Some(&plan) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this plan is already recorded",
        );
    }
    Ok(vec![Event::ConflictResolutionPlanRecorded {
        account,
        conflict_id: c.id.clone(),
        owner: plan.0,
        steps: plan.1,
        resolve_by: plan.2,
        by: ctx.actor.label(),
        at: ctx.now,
    }])
}

fn resolve(
    state: &AccountState,
    command: &ResolveConflict,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let c = unsettled(state, &command.conflict_id, ctx, "")?;
    require(&command.rationale, "rationale")?;
    if let Some(w) = &command.winner {
        let party = c.parties.iter().any(|p| {
            matches!(p, ConflictParty::Registration { registration_id, .. } if registration_id == w)
        });
        if !party {
            return Err(invalid(
                "winner",
                "must be one of the conflict's registrations",
            ));
        }
    }
    Ok(vec![Event::ConflictResolved {
        account,
        conflict_id: c.id.clone(),
        winner: command.winner,
        rationale: command.rationale.clone(),
        at: ctx.now,
    }])
}

fn assign_named_account(
    state: &AccountState,
    command: &AssignNamedAccount,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    channel_manager(ctx.actor)?;
    require(&command.reason, "reason")?;
    let facts = partner(ctx, command.partner_id)?;
    if !facts.is_active() {
        return refuse(
            RejectionCode::PartnerNotActive,
            "named accounts go to active partners only",
        );
    }
    let previous = state.named_account.as_ref();
    if previous
        .is_some_and(|n| n.partner_id == command.partner_id && n.exclusive == command.exclusive)
    {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "the customer is already this partner's named account, on these terms",
        );
    }
    Ok(vec![Event::NamedAccountAssigned {
        account,
        partner_id: command.partner_id,
        previous: previous.map(|n| n.partner_id),
        exclusive: command.exclusive,
        reason: command.reason.clone(),
        at: ctx.now,
    }])
}
