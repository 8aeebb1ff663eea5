//! Exit criteria (docs/RULES.md, "Partner motions"): a deal moves one stage at a time, and
//! only when the stage it leaves has its criteria met; the closing stage's exit is the win.
//! "If a deal can't meet exit criteria, it doesn't move."

use serde_json::json;

use crate::account::Registration;
use crate::error::{DomainError, RejectionCode};
use crate::motion::{Motion, Tier};
use crate::policy::Policy;
use crate::stages::{closing_stage, stage_name, stages};
use crate::values::StageEvidence;

fn unmet(stage: &str, why: String) -> DomainError {
    DomainError::new(
        RejectionCode::ExitCriteriaNotMet,
        format!("cannot leave `{stage}`: {why}"),
    )
    .with_details(json!({ "stage": stage }))
}

/// A text the exit needs, present and not blank.
fn named<'e>(value: &'e Option<String>, stage: &str, what: &str) -> Result<&'e str, DomainError> {
    match value.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(unmet(stage, format!("{what} is required"))),
    }
}

/// A quote's discount inside the tier's band.
fn within_band(
    stage: &str,
    evidence: &StageEvidence,
    tier: Tier,
    policy: &Policy,
) -> Result<(), DomainError> {
    match evidence.discount_percent {
        None => Err(unmet(stage, "the quote's discount_percent is required".into())),
        Some(pct) if pct > policy.discount_band(tier) => Err(unmet(
            stage,
            format!("a {pct} % discount is outside the {tier:?} band of {} %; get a deal-desk exception or re-quote", policy.discount_band(tier)),
        )),
        Some(_) => Ok(()),
    }
}

/// What every exit needs: attribution, and the partner credited as its motion credits.
fn credited(registration: &Registration, stage: &str) -> Result<(), DomainError> {
    // Missing attribution fields block every stage change.
    if registration.attribution.is_empty() {
        return Err(unmet(
            stage,
            "the deal has no attribution; set the sourcing partner or an influencer first".into(),
        ));
    }
    // Tech/ISV credit is influence, not sourcing.
    if registration.motion == Motion::TechIsv
        && !registration
            .attribution
            .influencers
            .contains_key(&registration.partner_id)
    {
        return Err(unmet(
            stage,
            "a tech/ISV partner's credit is influence: record it as an influencer".into(),
        ));
    }
    Ok(())
}

/// Checks the exit criteria of the registration's current stage, before the closing one
/// (the closing stage's exit is the win: [`check_win`]). Each exit checks the fact the
/// brief names where it names a checkable one; the others need the note that says how
/// they were met (docs/RULES.md lists which and why).
pub(super) fn check_exit(
    registration: &Registration,
    tier: Tier,
    evidence: &StageEvidence,
    policy: &Policy,
) -> Result<(), DomainError> {
    let motion = registration.motion;
    let stage = stage_name(motion, registration.stage);
    credited(registration, stage)?;
    if evidence.note.trim().is_empty() {
        return Err(unmet(
            stage,
            "evidence needs a note saying how the exit criteria were met".into(),
        ));
    }
    match (motion, registration.stage) {
        // Referral "Intro Logged": the partner is marked as sourcing and the vendor's owner
        // accepted the opportunity.
        (Motion::Referral, 0) => {
            if registration.attribution.sourcing != Some(registration.partner_id) {
                return Err(unmet(
                    stage,
                    "the referring partner must be the sourcing partner".into(),
                ));
            }
            named(
                &evidence.vendor_owner,
                stage,
                "the vendor's owner who accepted the opportunity (vendor_owner)",
            )
            .map(drop)
        }
        // Reseller "Configure & Quote": the quote stays within the tier's discount band.
        (Motion::Reseller, 2) => within_band(stage, evidence, tier, policy),
        // Marketplace "Private Offer": an offer reference, and terms within the band.
        (Motion::Marketplace, 1) => {
            named(
                &evidence.offer_reference,
                stage,
                "the private offer's reference (offer_reference)",
            )?;
            within_band(stage, evidence, tier, policy)
        }
        // Marketplace "Procurement": executed through the marketplace, so it has a
        // transaction reference.
        (Motion::Marketplace, 2) => named(
            &evidence.transaction_reference,
            stage,
            "the marketplace transaction reference (transaction_reference)",
        )
        .map(drop),
        // Services "Solution Design": joint success criteria defined before revenue.
        (Motion::Services, 0) => named(
            &evidence.success_criteria,
            stage,
            "the joint success criteria (success_criteria)",
        )
        .map(drop),
        // Tech/ISV "Integration Fit": the integration the use case rests on.
        (Motion::TechIsv, 0) => named(
            &evidence.integration,
            stage,
            "the integration the use case rests on (integration)",
        )
        .map(drop),
        _ => Ok(()),
    }
}

/// The closing stage's exit, which is the win: the deal is at its closing stage (every
/// earlier exit met on the way there), credited, and with what the motion closes on: a
/// reseller's order reference (Transact), a marketplace transaction (Close & Disburse), the
/// referring partner as the sourcing one (Closed & Credit). Returns the order reference
/// the win records.
pub(super) fn check_win(
    registration: &Registration,
    order_reference: &Option<String>,
) -> Result<Option<String>, DomainError> {
    let motion = registration.motion;
    let closing = closing_stage(motion);
    let stage = stage_name(motion, registration.stage);
    if registration.stage != closing {
        let names = stages(motion);
        return Err(DomainError::new(
            RejectionCode::ExitCriteriaNotMet,
            format!(
                "a {} deal is won at `{}`; this one is at `{stage}`: advance it through the exit criteria of each stage first",
                motion.as_str(),
                names[closing]
            ),
        )
        .with_details(json!({
            "stage": stage,
            "closing_stage": names[closing],
            "next_stage": names.get(registration.stage + 1),
        })));
    }
    credited(registration, stage)?;
    let given = order_reference
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match motion {
        Motion::Reseller => named(&given, stage, "the order reference (order_reference)")
            .map(|r| Some(r.to_string())),
        Motion::Marketplace => {
            let reference = given.or_else(|| registration.transaction_reference.clone());
            named(
                &reference,
                stage,
                "the marketplace transaction reference (order_reference, or transaction_reference at Procurement)",
            )
            .map(|r| Some(r.to_string()))
        }
        Motion::Referral if registration.attribution.sourcing != Some(registration.partner_id) => {
            Err(unmet(
                stage,
                "referral credit is finalised to the referring partner: it must be the sourcing partner".into(),
            ))
        }
        _ => Ok(given),
    }
}
