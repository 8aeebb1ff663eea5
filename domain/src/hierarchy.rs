//! The conflict hierarchy (docs/RULES.md 4): who wins when two partners want the same customer
//! and product line. Registered beats unregistered; the incumbent beats net-new;
//! certification breaks ties; otherwise the policy's tie-break (first submitted, tier, or
//! first approved).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::policy::TieBreak;

/// The rule of the hierarchy that decided a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HierarchyRule {
    RegisteredBeatsUnregistered,
    IncumbentBeatsNetNew,
    CertificationBreaksTie,
    TierPriority,
    FirstSubmitted,
    FirstApproved,
}

/// What the hierarchy needs to know about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Approved and protected.
    pub registered: bool,
    pub incumbent: bool,
    pub certified: bool,
    pub tier: crate::motion::Tier,
    /// Order of submission (earlier is smaller).
    pub submitted_order: u128,
}

/// Compares two claims: `Greater` means `a` outranks `b`. `Equal` under first-approved
/// means neither outranks the other: whoever is approved first wins.
pub fn rank(a: &Claim, b: &Claim, tie_break: TieBreak) -> (Ordering, HierarchyRule) {
    if a.registered != b.registered {
        return (
            a.registered.cmp(&b.registered),
            HierarchyRule::RegisteredBeatsUnregistered,
        );
    }
    if a.incumbent != b.incumbent {
        return (
            a.incumbent.cmp(&b.incumbent),
            HierarchyRule::IncumbentBeatsNetNew,
        );
    }
    if a.certified != b.certified {
        return (
            a.certified.cmp(&b.certified),
            HierarchyRule::CertificationBreaksTie,
        );
    }
    match tie_break {
        TieBreak::FirstSubmitted => (
            b.submitted_order.cmp(&a.submitted_order),
            HierarchyRule::FirstSubmitted,
        ),
        TieBreak::FirstApproved => (Ordering::Equal, HierarchyRule::FirstApproved),
        TieBreak::TierPriority => {
            let by_tier = a.tier.cmp(&b.tier);
            if by_tier != Ordering::Equal {
                (by_tier, HierarchyRule::TierPriority)
            } else {
                // Same tier: the earlier submission ranks higher.
                (
                    b.submitted_order.cmp(&a.submitted_order),
                    HierarchyRule::TierPriority,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::Tier;

    fn claim() -> Claim {
        Claim {
            registered: false,
            incumbent: false,
            certified: true,
            tier: Tier::Silver,
            submitted_order: 1,
        }
    }

    #[test]
    fn each_rule_decides_in_its_order() {
        let registered = Claim {
            registered: true,
            incumbent: false,
            certified: false,
            ..claim()
        };
        let incumbent = Claim {
            incumbent: true,
            ..claim()
        };
        assert_eq!(
            rank(&registered, &incumbent, TieBreak::FirstApproved),
            (
                Ordering::Greater,
                HierarchyRule::RegisteredBeatsUnregistered
            )
        );
        let uncertified_incumbent = Claim {
            certified: false,
            ..incumbent
        };
        assert_eq!(
            rank(&uncertified_incumbent, &claim(), TieBreak::FirstApproved),
            (Ordering::Greater, HierarchyRule::IncumbentBeatsNetNew)
        );
        let uncertified = Claim {
            certified: false,
            tier: Tier::Platinum,
            ..claim()
        };
        assert_eq!(
            rank(&uncertified, &claim(), TieBreak::TierPriority),
            (Ordering::Less, HierarchyRule::CertificationBreaksTie)
        );
        let gold = Claim {
            tier: Tier::Gold,
            submitted_order: 9,
            ..claim()
        };
        assert_eq!(
            rank(&gold, &claim(), TieBreak::TierPriority),
            (Ordering::Greater, HierarchyRule::TierPriority)
        );
        assert_eq!(
            rank(&gold, &claim(), TieBreak::FirstApproved),
            (Ordering::Equal, HierarchyRule::FirstApproved)
        );
        let later = Claim {
            submitted_order: 5,
            ..claim()
        };
        assert_eq!(
            rank(&later, &claim(), TieBreak::TierPriority),
            (Ordering::Less, HierarchyRule::TierPriority)
        );
    }
}
