//! The five stages of each motion, and where each motion closes (docs/RULES.md, "Partner
//! motions"). The exit criteria that read a registration are in `registration::exits`.

use crate::motion::Motion;

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

/// The stage a deal of `motion` is won at: its exit is the win (docs/RULES.md, "Partner
/// motions"). Referral Closed & Credit, reseller Transact, marketplace Close & Disburse,
/// services Commercials, tech/ISV Commercials & Close.
pub fn closing_stage(motion: Motion) -> usize {
    match motion {
        Motion::Referral | Motion::TechIsv => 4,
        Motion::Reseller | Motion::Marketplace => 3,
        Motion::Services => 2,
    }
}

/// Stages after the win (Launch & Enable, Adopt & Expand, Delivery, Handoff): they record
/// delivery and renewal responsibility and hold no protection.
pub fn is_post_sale(motion: Motion, index: usize) -> bool {
    index > closing_stage(motion)
}
