//! The JSON commands the demo sends, exactly as any client would send them. Kept in one
//! place so the demo reads as a story and the wire shapes are visible at a glance.

use serde_json::{json, Value};
use uuid::Uuid;

pub fn channel_manager() -> Value {
    json!({ "kind": "vendor", "role": "channel_manager", "user": "maria.cm@vendor.example" })
}

pub fn direct_sales() -> Value {
    json!({ "kind": "vendor", "role": "direct_sales", "user": "tom.ae@vendor.example" })
}

pub fn revops() -> Value {
    json!({ "kind": "vendor", "role": "rev_ops", "user": "ines.revops@vendor.example" })
}

pub fn partner(partner: Uuid) -> Value {
    json!({ "kind": "partner", "partner_id": partner, "user": "rep@partner.example" })
}

pub fn onboard(
    partner: Uuid,
    name: &str,
    motions: &[&str],
    tier: &str,
    region: &str,
    capacity: u32,
) -> Value {
    json!({
        "type": "onboard_partner", "partner_id": partner, "name": name, "motions": motions, "tier": tier,
        "territories": [{ "region": region, "vertical": "any" }], "capacity": capacity
    })
}

pub fn certify(partner: Uuid, product_line: &str, expires_on: &str) -> Value {
    json!({ "type": "certify_partner", "partner_id": partner, "product_line": product_line, "expires_on": expires_on })
}

pub fn change_tier(partner: Uuid, tier: &str) -> Value {
    json!({ "type": "change_partner_tier", "partner_id": partner, "tier": tier, "reason": "quarterly tier review" })
}

pub fn offboard(partner: Uuid, reason: &str) -> Value {
    json!({ "type": "offboard_partner", "partner_id": partner, "reason": reason })
}

#[allow(clippy::too_many_arguments)]
pub fn submit(
    registration: Uuid,
    partner: Uuid,
    company: &str,
    domain: &str,
    product_line: &str,
    motion: &str,
    amount_minor: i64,
    close: &str,
    kind: &str,
    region: &str,
) -> Value {
    json!({
        "type": "submit_registration", "registration_id": registration, "partner_id": partner,
        "customer": { "company": company, "domain": domain, "contact": { "name": "Buyer", "email": format!("buyer@{domain}") }, "region": region },
        "product_line": product_line, "motion": motion,
        "estimated_amount": { "amount_minor": amount_minor, "currency": "USD" },
        "expected_close": close,
        "proof_of_work": format!("Discovery meeting with {company}; pain points and budget documented"),
        "kind": kind
    })
}

pub fn approve(account: &str, registration: Uuid) -> Value {
    json!({ "type": "approve_registration", "account": account, "registration_id": registration, "rationale": "Proof of work verified; customer confirmed the partner's involvement" })
}

pub fn decline(account: &str, registration: Uuid, reason_code: &str, rationale: &str) -> Value {
    json!({ "type": "decline_registration", "account": account, "registration_id": registration, "reason_code": reason_code, "rationale": rationale })
}

pub fn appeal(account: &str, registration: Uuid) -> Value {
    json!({ "type": "appeal_decision", "account": account, "registration_id": registration, "evidence": "Signed NDA and meeting minutes from before the competing registration" })
}

pub fn decide_appeal(account: &str, registration: Uuid, upheld: bool) -> Value {
    json!({ "type": "decide_appeal", "account": account, "registration_id": registration, "upheld": upheld,
            "rationale": if upheld { "Evidence predates the decline; reinstated for a fresh decision" } else { "Evidence does not show origination" } })
}

pub fn extend(account: &str, registration: Uuid) -> Value {
    json!({ "type": "extend_protection", "account": account, "registration_id": registration, "reason": "Customer procurement delayed; deal still active" })
}

pub fn withdraw(account: &str, registration: Uuid) -> Value {
    json!({ "type": "withdraw_registration", "account": account, "registration_id": registration, "reason": "Customer chose to postpone the project" })
}

pub fn advance(account: &str, registration: Uuid, to_stage: &str, evidence: Value) -> Value {
    json!({ "type": "advance_stage", "account": account, "registration_id": registration, "to_stage": to_stage, "evidence": evidence })
}

pub fn set_sourcing(account: &str, registration: Uuid, partner: Uuid) -> Value {
    json!({ "type": "set_sourcing_partner", "account": account, "registration_id": registration, "partner_id": partner, "reason": "Partner originated the opportunity" })
}

pub fn add_influencer(account: &str, registration: Uuid, partner: Uuid, percent: u32) -> Value {
    json!({ "type": "add_influencer", "account": account, "registration_id": registration, "partner_id": partner, "percent": percent, "reason": "Integration demo moved the deal forward" })
}

pub fn won(account: &str, registration: Uuid, amount_minor: i64, order: Option<&str>) -> Value {
    let mut command = json!({ "type": "mark_won", "account": account, "registration_id": registration, "amount": { "amount_minor": amount_minor, "currency": "USD" } });
    if let (Some(order), Some(fields)) = (order, command.as_object_mut()) {
        fields.insert("order_reference".into(), json!(order));
    }
    command
}

pub fn lost(account: &str, registration: Uuid) -> Value {
    json!({ "type": "mark_lost", "account": account, "registration_id": registration, "reason": "Customer chose a competitor" })
}

pub fn direct_opportunity(
    account: &str,
    opportunity: Uuid,
    product_line: &str,
    amount_minor: i64,
) -> Value {
    json!({ "type": "record_direct_opportunity", "account": account, "opportunity_id": opportunity, "owner": "tom.ae@vendor.example",
            "product_line": product_line, "amount": { "amount_minor": amount_minor, "currency": "USD" } })
}

pub fn acknowledge_conflict(account: &str, conflict_id: &str) -> Value {
    json!({ "type": "acknowledge_conflict", "account": account, "conflict_id": conflict_id, "note": "Both partners contacted; reviewing proof of work" })
}

pub fn resolution_plan(account: &str, conflict_id: &str, resolve_by: chrono::NaiveDate) -> Value {
    json!({ "type": "record_resolution_plan", "account": account, "conflict_id": conflict_id,
            "owner": "maria.cm@vendor.example",
            "steps": ["Compare both partners' proof of work", "Apply the conflict hierarchy", "Tell both partners the outcome"],
            "resolve_by": resolve_by })
}

pub fn resolve_conflict(account: &str, conflict_id: &str) -> Value {
    json!({ "type": "resolve_conflict", "account": account, "conflict_id": conflict_id, "rationale": "Resolved under the conflict hierarchy; the protected registration stands" })
}

pub fn revenue_reversal(account: &str, registration: Uuid, amount_minor: i64) -> Value {
    json!({ "type": "record_revenue_reversal", "account": account, "registration_id": registration,
            "amount": { "amount_minor": amount_minor, "currency": "USD" }, "reason": "Partial refund: seats reduced at go-live" })
}

pub fn named_account(account: &str, partner: Uuid, exclusive: bool) -> Value {
    json!({ "type": "assign_named_account", "account": account, "partner_id": partner, "exclusive": exclusive,
            "reason": "Strategic account plan agreed with the partner" })
}

pub fn reassign(account: &str, registration: Uuid, to: Uuid) -> Value {
    json!({ "type": "reassign_registration", "account": account, "registration_id": registration, "to_partner": to,
            "reason": "No activity for the inactivity threshold; moved to a partner who will work it" })
}
