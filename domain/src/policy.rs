//! The program policy: every number of the rules, loaded from TOML and recorded as a
//! versioned `policy_adopted` event. Decisions read the policy from their context, and every
//! decision event records the version it applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::actor::VendorRole;
use crate::error::{DomainError, RejectionCode};
use crate::motion::{Motion, Tier};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: u32,
    #[serde(default)]
    pub name: String,
    pub protection: ProtectionPolicy,
    pub extensions: ExtensionPolicy,
    pub sla: SlaPolicy,
    pub timing: TimingPolicy,
    pub conflict: ConflictPolicy,
    pub certification: CertificationPolicy,
    /// Highest quoted discount, whole percent, by tier.
    pub discount_bands: BTreeMap<Tier, u32>,
    pub commission: CommissionPolicy,
    #[serde(default)]
    pub horizons: HorizonPolicy,
    #[serde(default)]
    pub renewals: RenewalPolicy,
    #[serde(default)]
    pub territories: TerritoryPolicy,
    /// A partner registers under this policy version only once it acknowledged every
    /// announcement of the version that reaches it (refused with
    /// `announcement_not_acknowledged`, naming the announcement).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_acknowledgement: bool,
}

/// What happens when a partner that does not own a product line's renewal registers that
/// line inside its renewal window, whatever kind of deal it calls it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RenewalClaims {
    /// Refused: `renewal_owned_by_incumbent`.
    #[default]
    Refuse,
    /// Accepted with a renewal-ownership conflict for the channel manager; it cannot be
    /// approved until the renewal is reassigned to its partner.
    Flag,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewalPolicy {
    #[serde(default)]
    pub others_in_window: RenewalClaims,
}

/// What happens to a registration for a customer outside the partner's territories.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OutsideTerritory {
    /// Refused: `outside_territory`.
    #[default]
    Refuse,
    /// Accepted (territories are advisory in this program).
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerritoryPolicy {
    #[serde(default)]
    pub outside: OutsideTerritory,
}

/// How far ahead a date in a command may lie: beyond this it is a typo (`2062` for
/// `2026`) or a way around the rules (a certification "valid" for a century).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HorizonPolicy {
    /// A registration's expected close date, in days from its submission.
    pub expected_close_days: u32,
    /// A certification's expiry date, in days from when it is recorded.
    pub certification_days: u32,
}

impl Default for HorizonPolicy {
    fn default() -> Self {
        HorizonPolicy {
            expected_close_days: 730,
            certification_days: 1_461,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectionPolicy {
    pub default_days: u32,
    #[serde(default)]
    pub by_motion: BTreeMap<Motion, u32>,
    #[serde(default)]
    pub by_tier: BTreeMap<Tier, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionPolicy {
    pub max_count: u32,
    pub days: u32,
    pub granted_by: Vec<VendorRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub approval_hours: u32,
    pub referral_to_opportunity_hours: u32,
    pub conflict_ack_hours: u32,
    pub conflict_resolution_business_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimingPolicy {
    pub reminder_lead_days: u32,
    pub inactivity_days: u32,
    pub appeal_window_days: u32,
    pub renewal_confirmation_days: u32,
    /// Contract term of a won deal: its renewal falls due this many days after the win.
    #[serde(default = "default_renewal_term_days")]
    pub renewal_term_days: u32,
}

fn default_renewal_term_days() -> u32 {
    365
}

/// The last step of the conflict hierarchy, when registration, incumbency and
/// certification do not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// First come, first served (the rules' default): the registration submitted first
    /// ranks higher, so a later equal claim waits until the earlier one is decided.
    FirstSubmitted,
    /// Approval order decides: equal claims rank alike, and whichever the channel manager
    /// approves first wins (the others are then refused as already protected). A named
    /// option for programs that want it; not the rules' first come, first served.
    FirstApproved,
    /// The higher-tier partner wins; equal tiers fall back to the earlier submission.
    TierPriority,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictPolicy {
    pub tie_break: TieBreak,
    /// Flag a conflict (a risk) when a registration is approved on an account where
    /// another partner already holds protection on a different product line: two
    /// partners with price protection at one customer. Off in policies written before
    /// the switch existed.
    #[serde(default)]
    pub flag_overlapping_protection: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificationPolicy {
    pub required_for: Vec<Motion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Credit {
    Sourced,
    Influenced,
}

/// A commission rule; `motion` and `tier` left out match any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionRule {
    #[serde(default)]
    pub motion: Option<Motion>,
    #[serde(default)]
    pub tier: Option<Tier>,
    pub credit: Credit,
    /// Basis points of the won amount (100 bps = 1 %).
    pub rate_bps: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionPolicy {
    pub clawback_window_days: u32,
    #[serde(default)]
    pub rules: Vec<CommissionRule>,
}

const DEFAULT_POLICY: &str = include_str!("../policy/default.toml");

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_toml(text: &str) -> Result<Policy, DomainError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            DomainError::new(
                RejectionCode::InvalidPolicy,
                format!("the policy file is not valid: {e}"),
            )
        })?;
        policy.check()?;
        Ok(policy)
    }

    /// The built-in default program policy (version 1): the numbers of docs/RULES.md.
    pub fn default_program() -> Policy {
        match Policy::from_toml(DEFAULT_POLICY) {
            Ok(policy) => policy,
            // The file is compiled in and covered by a test; reaching this is a build defect.
            Err(e) => panic!("the built-in default policy is invalid: {e}"),
        }
    }

    /// Checks the numbers make sense together.
    pub fn check(&self) -> Result<(), DomainError> {
        let bad = |what: String| Err(DomainError::new(RejectionCode::InvalidPolicy, what));
        if self.version == 0 {
            return bad("policy version must be 1 or more".into());
        }
        let days = std::iter::once(self.protection.default_days)
            .chain(self.protection.by_motion.values().copied())
            .chain(self.protection.by_tier.values().copied());
        for d in days {
            if !(1..=365).contains(&d) {
                return bad(format!("protection of {d} days is outside 1..=365"));
            }
        }
        if self.extensions.days == 0 && self.extensions.max_count > 0 {
            return bad("extensions.days must be positive when extensions are allowed".into());
        }
        if self.sla.approval_hours == 0
            || self.sla.referral_to_opportunity_hours == 0
            || self.timing.appeal_window_days == 0
            || self.timing.inactivity_days == 0
        {
            return bad(
                "SLA hours, appeal window and inactivity threshold must be positive".into(),
            );
        }
        if self.timing.reminder_lead_days >= self.protection.default_days {
            return bad(
                "the expiry reminder lead must be shorter than the protection window".into(),
            );
        }
        for (tier, pct) in &self.discount_bands {
            if *pct > 100 {
                return bad(format!("discount band for {tier:?} is {pct} %, above 100"));
            }
        }
        if self.horizons.expected_close_days == 0 || self.horizons.certification_days == 0 {
            return bad("horizons must be at least one day".into());
        }
        for rule in &self.commission.rules {
            if rule.rate_bps > 10_000 {
                return bad(format!(
                    "commission rate {} bps is above 100 %",
                    rule.rate_bps
                ));
            }
        }
        Ok(())
    }

    /// Days of protection for a registration of `motion` by a partner of `tier`.
    pub fn protection_days(&self, motion: Motion, tier: Tier) -> u32 {
        self.protection
            .by_tier
            .get(&tier)
            .or_else(|| self.protection.by_motion.get(&motion))
            .copied()
            .unwrap_or(self.protection.default_days)
    }

    /// Hours the vendor has to decide a registration: the approval SLA (48 h), the same
    /// for every motion. A referral runs a second clock beside it
    /// ([`Policy::intro_hours`]).
    pub fn decision_hours(&self) -> u32 {
        self.sla.approval_hours
    }

    /// Hours from a partner's referral to the opportunity the vendor created and accepted
    /// (the referral's Intro Logged exit): 24 h. None for the other motions.
    pub fn intro_hours(&self, motion: Motion) -> Option<u32> {
        (motion == Motion::Referral).then_some(self.sla.referral_to_opportunity_hours)
    }

    pub fn requires_certification(&self, motion: Motion) -> bool {
        self.certification.required_for.contains(&motion)
    }

    /// Highest discount a partner of `tier` may quote; no band means no discount.
    pub fn discount_band(&self, tier: Tier) -> u32 {
        self.discount_bands.get(&tier).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_carries_the_rules_numbers() {
        let p = Policy::default_program();
        assert_eq!(p.version, 1);
        assert_eq!(p.protection_days(Motion::Reseller, Tier::Gold), 90);
        assert_eq!(p.protection_days(Motion::Referral, Tier::Gold), 60);
        assert_eq!(p.sla.approval_hours, 48);
        assert_eq!(p.sla.conflict_ack_hours, 24);
        assert_eq!(p.sla.conflict_resolution_business_days, 5);
        assert_eq!(p.timing.reminder_lead_days, 7);
        assert_eq!(p.timing.inactivity_days, 30);
        assert_eq!(p.timing.appeal_window_days, 10);
        assert_eq!(p.timing.renewal_confirmation_days, 90);
        assert_eq!(p.conflict.tie_break, TieBreak::FirstSubmitted);
    }

    #[test]
    fn broken_policy_files_are_refused_with_a_reason() {
        let bad_toml = Policy::from_toml("version = ").unwrap_err();
        assert_eq!(bad_toml.code, RejectionCode::InvalidPolicy);
        let unknown = Policy::from_toml(&format!("{DEFAULT_POLICY}\nsurprise = 1\n")).unwrap_err();
        assert!(unknown.message.contains("surprise"), "{}", unknown.message);
        let zero = DEFAULT_POLICY.replace("default_days = 90", "default_days = 0");
        assert_eq!(
            Policy::from_toml(&zero).unwrap_err().code,
            RejectionCode::InvalidPolicy
        );
        let by_tier = DEFAULT_POLICY.replace("by_tier = {}", "by_tier = { platinum = 120 }");
        assert_eq!(
            Policy::from_toml(&by_tier)
                .unwrap()
                .protection_days(Motion::Referral, Tier::Platinum),
            120
        );
    }
}
