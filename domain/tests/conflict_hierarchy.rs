//! docs/RULES.md, registration policy 4 (conflict hierarchy), applied when a channel manager
//! approves one of several claims on a customer and product line: registered beats
//! unregistered; incumbent beats net-new; certification breaks ties; otherwise the first
//! submitted wins (first come, first served: registration order), or tier priority, or
//! approval order (`first_approved`) when the policy says so.

mod fixtures;
use fixtures::*;
use uuid::Uuid;

/// The default policy (version 1) with approval order as its tie-break.
fn first_approved() -> Policy {
    let mut policy = policy_version(1);
    policy.conflict.tie_break = TieBreak::FirstApproved;
    policy
}

fn tier_priority() -> Policy {
    let mut policy = policy_version(2);
    policy.conflict.tie_break = TieBreak::TierPriority;
    policy
}

// ------------------------------------------------------ registered beats unregistered

#[test]
fn a_protected_registration_beats_a_pending_one() {
    let first = reseller(Tier::Gold);
    let second = reseller(Tier::Platinum);
    let protected = Deal::new(&first, Motion::Reseller);
    let pending = Deal::new(&second, Motion::Reseller).submitted_at(t0() + hours(1));
    let err = Scenario::given(history([
        first.events(),
        second.events(),
        protected.submitted(),
        pending.submitted(),
        vec![protected.approval(t0() + hours(2), 90)],
    ]))
    .at(t0() + hours(3))
    .by(channel_manager())
    .when(pending.approve())
    .then_error(RejectionCode::AlreadyProtected);
    assert_eq!(
        err.details,
        json!({
            "rule": "registered_beats_unregistered",
            "protected_by": protected.id,
            "expires_at": t0() + hours(2) + days(90),
        })
    );
}

// ------------------------------------------------------- incumbent beats net-new

/// `incumbent` won analytics at acme.com a while ago; now it and `newcomer` both have
/// a pending registration on the line.
fn incumbent_and_newcomer(
    incumbent: &TestPartner,
    newcomer: &TestPartner,
    motion: Motion,
) -> (Vec<Event>, Deal, Deal) {
    let earlier_win = Deal::new(incumbent, motion);
    let expansion = Deal::new(incumbent, motion)
        .kind(DealKind::Expansion)
        .incumbent()
        .submitted_at(t0() + days(40));
    let net_new = Deal::new(newcomer, motion).submitted_at(t0() + days(40) + hours(1));
    let given = history([
        incumbent.events(),
        newcomer.events(),
        earlier_win.won(usd(4_000_000)),
        expansion.submitted(),
        net_new.submitted(),
    ]);
    (given, expansion, net_new)
}

#[test]
fn the_incumbent_outranks_a_net_new_partner() {
    let incumbent = reseller(Tier::Silver);
    let newcomer = reseller(Tier::Platinum);
    let (given, expansion, net_new) =
        incumbent_and_newcomer(&incumbent, &newcomer, Motion::Reseller);
    let err = Scenario::given(given.clone())
        .at(t0() + days(41))
        .by(channel_manager())
        .when(net_new.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(
        err.details,
        json!({ "rule": "incumbent_beats_net_new", "outranked_by": expansion.id })
    );
    Scenario::given(given)
        .at(t0() + days(41))
        .by(channel_manager())
        .when(expansion.approve())
        .then_ok();
}

#[test]
fn incumbency_counts_before_certification() {
    // Referrals need no certification, so an uncertified incumbent can hold a claim.
    let incumbent = referrer(Tier::Silver);
    let newcomer = referrer(Tier::Gold).certified_in("analytics", far_future());
    let (given, expansion, net_new) =
        incumbent_and_newcomer(&incumbent, &newcomer, Motion::Referral);
    let err = Scenario::given(given)
        .at(t0() + days(41))
        .by(channel_manager())
        .when(net_new.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "incumbent_beats_net_new");
    assert_eq!(err.details["outranked_by"], json!(expansion.id));
}

#[test]
fn after_a_renewal_is_reassigned_its_new_owner_outranks_the_former_incumbent() {
    let former = reseller(Tier::Gold);
    let owner = reseller(Tier::Silver);
    let earlier_win = Deal::new(&former, Motion::Reseller);
    let reassigned = Event::RenewalOwnershipReassigned {
        account: acme(),
        product_line: "analytics".into(),
        from: Some(former.id),
        to: owner.id,
        reason: "the former incumbent left the region".into(),
        at: t0() + days(35),
    };
    let expansion = Deal::new(&former, Motion::Reseller)
        .kind(DealKind::Expansion)
        .incumbent()
        .submitted_at(t0() + days(40));
    let renewal = Deal::new(&owner, Motion::Reseller)
        .kind(DealKind::Renewal)
        .submitted_at(t0() + days(40) + hours(1));
    let given = history([
        former.events(),
        owner.events(),
        earlier_win.won(usd(4_000_000)),
        vec![reassigned],
        expansion.submitted(),
        renewal.submitted(),
    ]);
    let err = Scenario::given(given.clone())
        .at(t0() + days(41))
        .by(channel_manager())
        .when(expansion.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(
        err.details,
        json!({ "rule": "incumbent_beats_net_new", "outranked_by": renewal.id })
    );
    Scenario::given(given)
        .at(t0() + days(41))
        .by(channel_manager())
        .when(renewal.approve())
        .then_ok();
}

#[test]
fn a_withdrawn_higher_claim_no_longer_outranks() {
    let incumbent = reseller(Tier::Silver);
    let newcomer = reseller(Tier::Gold);
    let (given, expansion, net_new) =
        incumbent_and_newcomer(&incumbent, &newcomer, Motion::Reseller);
    let withdrawn = Scenario::given(given.clone())
        .at(t0() + days(41))
        .by(incumbent.user())
        .when(expansion.withdraw())
        .then_ok();
    Scenario::given(history([given, withdrawn]))
        .at(t0() + days(41))
        .by(channel_manager())
        .when(net_new.approve())
        .then_ok();
}

// ------------------------------------------------------ certification breaks ties

/// Two referral partners (referrals need no certification), only `certified` certified.
fn certified_and_uncertified_referrals() -> (TestPartner, TestPartner, Deal, Deal) {
    let certified = referrer(Tier::Silver).certified_in("analytics", far_future());
    let uncertified = referrer(Tier::Platinum);
    let certified_deal = Deal::new(&certified, Motion::Referral).submitted_at(t0() + hours(1));
    let uncertified_deal = Deal::new(&uncertified, Motion::Referral);
    (certified, uncertified, certified_deal, uncertified_deal)
}

#[test]
fn certification_breaks_the_tie_between_equal_claims() {
    let (certified, uncertified, certified_deal, uncertified_deal) =
        certified_and_uncertified_referrals();
    let given = history([
        certified.events(),
        uncertified.events(),
        uncertified_deal.submitted(),
        certified_deal.submitted(),
    ]);
    let err = Scenario::given(given.clone())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(uncertified_deal.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(
        err.details,
        json!({ "rule": "certification_breaks_tie", "outranked_by": certified_deal.id })
    );
    Scenario::given(given)
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(certified_deal.approve())
        .then_ok();
}

#[test]
fn certification_is_judged_on_the_day_of_the_approval() {
    let lapsing = referrer(Tier::Silver).certified_in("analytics", t0().date_naive() + days(1));
    let uncertified = referrer(Tier::Silver);
    let lapsing_deal = Deal::new(&lapsing, Motion::Referral);
    let uncertified_deal = Deal::new(&uncertified, Motion::Referral).submitted_at(t0() + hours(1));
    let given = history([
        lapsing.events(),
        uncertified.events(),
        lapsing_deal.submitted(),
        uncertified_deal.submitted(),
    ]);
    // On its last valid day the certification still outranks; the day after, it has
    // lapsed, the claims are equal and registration order decides (under approval order,
    // either may then be approved).
    let err = Scenario::given(given.clone())
        .at(t0() + days(1))
        .by(channel_manager())
        .when(uncertified_deal.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "certification_breaks_tie");
    let err = Scenario::given(given.clone())
        .at(t0() + days(2))
        .by(channel_manager())
        .when(uncertified_deal.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "first_submitted");
    Scenario::given(given)
        .with_policy(first_approved())
        .at(t0() + days(2))
        .by(channel_manager())
        .when(uncertified_deal.approve())
        .then_ok();
}

#[test]
fn certification_outranks_tier_even_under_tier_priority() {
    let (certified, uncertified, certified_deal, uncertified_deal) =
        certified_and_uncertified_referrals();
    let err = Scenario::given(history([
        certified.events(),
        uncertified.events(),
        uncertified_deal.submitted(),
        certified_deal.submitted(),
    ]))
    .with_policy(tier_priority())
    .at(t0() + hours(2))
    .by(channel_manager())
    .when(uncertified_deal.approve())
    .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "certification_breaks_tie");
}

// ------------------------------------------- otherwise: first approved (the default)

fn two_equal_pending_claims() -> (Vec<Event>, Deal, Deal) {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let first = Deal::new(&a, Motion::Reseller);
    let second = Deal::new(&b, Motion::Reseller).submitted_at(t0() + hours(1));
    let given = history([
        a.events(),
        b.events(),
        first.submitted(),
        second.submitted(),
    ]);
    (given, first, second)
}

/// The rules' first come, first served (the default policy): of two equal claims the one
/// submitted first is decided first; the later one waits, whoever approves in what order.
#[test]
fn by_default_the_first_submitted_of_equal_claims_wins() {
    let (given, first, second) = two_equal_pending_claims();
    let err = Scenario::given(given.clone())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(second.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "first_submitted");
    assert_eq!(err.details["outranked_by"], json!(first.id));
    Scenario::given(given)
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(first.approve())
        .then(vec![first.approval(t0() + hours(2), 90)]);
}

#[test]
fn under_first_approved_either_equal_claim_may_be_approved_first() {
    let (given, first, second) = two_equal_pending_claims();
    for deal in [&first, &second] {
        Scenario::given(given.clone())
            .with_policy(first_approved())
            .at(t0() + hours(2))
            .by(channel_manager())
            .when(deal.approve())
            .then(vec![deal.approval(t0() + hours(2), 90)]);
    }
}

#[test]
fn under_first_approved_the_first_approval_wins_and_the_other_is_already_protected() {
    let (given, first, second) = two_equal_pending_claims();
    let err = Scenario::given(history([given, vec![second.approval(t0() + hours(2), 90)]]))
        .with_policy(first_approved())
        .at(t0() + hours(3))
        .by(channel_manager())
        .when(first.approve())
        .then_error(RejectionCode::AlreadyProtected);
    assert_eq!(err.details["protected_by"], json!(second.id));
    assert_eq!(err.details["rule"], "registered_beats_unregistered");
}

// ------------------------------------------------------------------ tier priority

#[test]
fn under_tier_priority_the_higher_tier_wins() {
    let gold = reseller(Tier::Gold);
    let platinum = reseller(Tier::Platinum);
    let gold_deal = Deal::new(&gold, Motion::Reseller);
    let platinum_deal = Deal::new(&platinum, Motion::Reseller).submitted_at(t0() + hours(1));
    let given = history([
        gold.events(),
        platinum.events(),
        gold_deal.submitted(),
        platinum_deal.submitted(),
    ]);
    let err = Scenario::given(given.clone())
        .with_policy(tier_priority())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(gold_deal.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(
        err.details,
        json!({ "rule": "tier_priority", "outranked_by": platinum_deal.id })
    );
    Scenario::given(given.clone())
        .with_policy(tier_priority())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(platinum_deal.approve())
        .then_ok();
    // The same claims under the default policy: whoever is approved first.
    Scenario::given(given)
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(gold_deal.approve())
        .then_ok();
}

#[test]
fn under_tier_priority_the_tier_at_approval_counts() {
    let promoted = reseller(Tier::Silver).changed_tier(Tier::Platinum);
    let gold = reseller(Tier::Gold);
    let promoted_deal = Deal::new(&promoted, Motion::Reseller);
    let gold_deal = Deal::new(&gold, Motion::Reseller);
    let err = Scenario::given(history([
        promoted.events(),
        gold.events(),
        promoted_deal.submitted(),
        gold_deal.submitted(),
    ]))
    .with_policy(tier_priority())
    .at(t0() + hours(2))
    .by(channel_manager())
    .when(gold_deal.approve())
    .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["outranked_by"], json!(promoted_deal.id));
}

#[test]
fn under_tier_priority_equal_tiers_fall_back_to_the_earlier_submission() {
    // Ids are the caller's: the earlier submission may well carry the larger id.
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let earlier = Deal::new(&a, Motion::Reseller)
        .with_id(RegistrationId(Uuid::from_u128(0xFFFF_0000)))
        .submitted_at(t0());
    let later = Deal::new(&b, Motion::Reseller)
        .with_id(RegistrationId(Uuid::from_u128(0x0000_FFFF)))
        .submitted_at(t0() + hours(1));
    let given = history([
        a.events(),
        b.events(),
        earlier.submitted(),
        later.submitted(),
    ]);
    let err = Scenario::given(given.clone())
        .with_policy(tier_priority())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(later.approve())
        .then_error(RejectionCode::Outranked);
    assert_eq!(
        err.details,
        json!({ "rule": "tier_priority", "outranked_by": earlier.id })
    );
    Scenario::given(given)
        .with_policy(tier_priority())
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(earlier.approve())
        .then_ok();
}
