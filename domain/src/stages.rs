//! The five stages of each motion and their exit criteria (docs/RULES.md, "Partner motions").
//! A deal moves one stage at a time, and only when the stage it leaves has its criteria met.

use serde_json::json;

use crate::account::Registration;
use crate::error::{DomainError, RejectionCode};
use crate::motion::{Motion, Tier};
use crate::policy::Policy;
use crate::values::StageEvidence;

pub fn stages(motion: Motion) -> [&'static str; 5] {
    match motion {
        Motion::Referral => [
            "intro_logged",
            "validate",
            "prove_value",
            "commercials",
            "closed_and_credit",
        ],
        Motion::Reseller => [
            "deal_registration",
            "qualification",
            "configure_and_quote",
            "transact",
            "launch_and_enable",
        ],
        Motion::Marketplace => [
            "listing_ready",
            "private_offer",
            "procurement",
            "close_and_disburse",
            "adopt_and_expand",
        ],
        Motion::Services => [
            "solution_design",
            "proof_workshop",
            "commercials",
            "delivery",
            "handoff",
        ],
        Motion::TechIsv => [
            "integration_fit",
            "field_readiness",
            "pipeline_activation",
            "validation",
            "commercials_and_close",
        ],
    }
}

pub fn stage_name(motion: Motion, index: usize) -> &'static str {
    stages(motion).get(index).copied().unwrap_or("closed")
}

fn unmet(stage: &str, why: String) -> DomainError {
    DomainError::new(
        RejectionCode::ExitCriteriaNotMet,
        format!("cannot leave `{stage}`: {why}"),
    )
    .with_details(json!({ "stage": stage }))
}

/// Checks the exit criteria of the registration's current stage.
pub(crate) fn check_exit(
    registration: &Registration,
    tier: Tier,
    evidence: &StageEvidence,
    policy: &Policy,
) -> Result<(), DomainError> {
    let motion = registration.motion;
    let stage = stage_name(motion, registration.stage);
    // Missing attribution fields block every stage change.
    if registration.attribution.is_empty() {
        return Err(unmet(
            stage,
            "the deal has no attribution; set the sourcing partner or an influencer first".into(),
        ));
    }
    if evidence.note.trim().is_empty() {
        return Err(unmet(
            stage,
            "evidence needs a note saying how the exit criteria were met".into(),
        ));
    }
    match (motion, registration.stage) {
        // Referral "Intro Logged": the partner is marked as sourcing and the vendor accepted.
        (Motion::Referral, 0) if registration.attribution.sourcing != Some(registration.partner_id) => {
            Err(unmet(stage, "the referring partner must be the sourcing partner".into()))
        }
        // Reseller "Configure & Quote": the quote stays within the tier's discount band.
        (Motion::Reseller, 2) => match evidence.discount_percent {
            None => Err(unmet(stage, "the quote's discount_percent is required".into())),
            Some(pct) if pct > policy.discount_band(tier) => Err(unmet(
                stage,
                format!("a {pct} % discount is outside the {tier:?} band of {} %; get a deal-desk exception or re-quote", policy.discount_band(tier)),
            )),
            Some(_) => Ok(()),
        },
        // Tech/ISV credit is influence, not sourcing.
        (Motion::TechIsv, _) if !registration.attribution.influencers.contains_key(&registration.partner_id) => {
            Err(unmet(stage, "a tech/ISV partner's credit is influence: record it as an influencer".into()))
        }
        _ => Ok(()),
    }
}
