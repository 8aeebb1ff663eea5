//! docs/RULES.md, "Partner motions" (five stages per motion, exit criteria), "Attribution and
//! commission" (one sourcing partner, influencers within 100 %, every change with actor and
//! reason, locked at the win) and the revenue events (won, lost, reversal).

mod fixtures;
use fixtures::*;

use std::collections::BTreeMap;

/// A protected deal of `partner` in `motion`.
fn protected(partner: &TestPartner, motion: Motion) -> (Deal, Vec<Event>) {
    let deal = Deal::new(partner, motion);
    let given = history([partner.events(), deal.approved()]);
    (deal, given)
}

/// `deal` moved from its first stage through `stages[1..=n]`.
fn advanced_to(deal: &Deal, n: usize) -> Vec<Event> {
    let names = stage_names(deal.motion);
    (1..=n)
        .map(|i| deal.stage_advanced(names[i - 1], names[i], t0() + days(i as i64)))
        .collect()
}

fn stage_names(motion: Motion) -> [&'static str; 5] {
    dealreg_domain::stages::stages(motion)
}

// ----------------------------------------------------------------------- stages

/// Intro Logged's evidence: the intro call, and the vendor's owner who accepted it.
fn intro_accepted() -> StageEvidence {
    StageEvidence {
        vendor_owner: Some("ae.jones@vendor.example".into()),
        ..note("intro call held")
    }
}

#[test]
fn each_motion_has_the_five_stages_of_the_rules() {
    assert_eq!(
        stage_names(Motion::Referral),
        [
            "intro_logged",
            "validate",
            "prove_value",
            "commercials",
            "closed_and_credit"
        ]
    );
    assert_eq!(
        stage_names(Motion::Reseller),
        [
            "deal_registration",
            "qualification",
            "configure_and_quote",
            "transact",
            "launch_and_enable"
        ]
    );
    assert_eq!(
        stage_names(Motion::Marketplace),
        [
            "listing_ready",
            "private_offer",
            "procurement",
            "close_and_disburse",
            "adopt_and_expand"
        ]
    );
    assert_eq!(
        stage_names(Motion::Services),
        [
            "solution_design",
            "proof_workshop",
            "commercials",
            "delivery",
            "handoff"
        ]
    );
    assert_eq!(
        stage_names(Motion::TechIsv),
        [
            "integration_fit",
            "field_readiness",
            "pipeline_activation",
            "validation",
            "commercials_and_close"
        ]
    );
}

#[test]
fn a_protected_deal_with_attribution_moves_to_its_next_stage() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(3);
    let evidence = StageEvidence {
        note: "budget confirmed by the CFO".into(),
        discount_percent: None,
        next_step: Some("technical validation".into()),
        ..StageEvidence::default()
    };
    Scenario::given(history([given, vec![deal.sourcing_set_by_partner()]]))
        .at(at)
        .by(partner.user())
        .when(deal.advance("qualification", evidence.clone()))
        .then(vec![Event::StageAdvanced {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            from_stage: "deal_registration".into(),
            to_stage: "qualification".into(),
            evidence,
            policy_version: 1,
            at,
        }]);
}

#[test]
fn every_motion_walks_its_five_stages_in_order_and_stops_at_the_last() {
    let partner = TestPartner::onboarded(&Motion::ALL, Tier::Gold, 10)
        .certified_in("analytics", far_future());
    for motion in Motion::ALL {
        let (deal, given) = protected(&partner, motion);
        // Credit as each motion's exit criteria want it: tech/ISV is influence only.
        let credit = if motion == Motion::TechIsv {
            deal.add_influencer(partner.id, 100)
        } else {
            deal.set_sourcing(partner.id)
        };
        let mut log = given;
        log.extend(Scenario::given(log.clone()).when(credit).then_ok());
        let names = stage_names(motion);
        let closing = dealreg_domain::stages::closing_stage(motion);
        for (i, next) in names.iter().enumerate().skip(1) {
            if i == closing + 1 {
                // The closing stage is left by the win, not by a stage change.
                let err = Scenario::given(log.clone())
                    .when(deal.advance(next, exit_evidence(motion, i - 1)))
                    .then_error(RejectionCode::InvalidTransition);
                assert_eq!(err.details["closing_stage"], names[closing], "{motion:?}");
                let won = Scenario::given(log.clone())
                    .by(channel_manager())
                    .when(deal.mark_won(usd(4_000_000)))
                    .then_ok();
                log.extend(won);
            }
            let moved = Scenario::given(log.clone())
                .when(deal.advance(next, exit_evidence(motion, i - 1)))
                .then_ok();
            assert!(
                matches!(&moved[0], Event::StageAdvanced { to_stage, .. } if to_stage == next),
                "{motion:?} -> {next}"
            );
            log.extend(moved);
        }
        let err = Scenario::given(log)
            .when(deal.advance("closed", quote(Some(10))))
            .then_error(RejectionCode::InvalidTransition);
        assert!(
            err.message.contains("last stage"),
            "{motion:?}: {}",
            err.message
        );
    }
}

#[test]
fn a_stage_cannot_be_skipped_and_the_refusal_names_the_next_stage() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, vec![deal.sourcing_set_by_partner()]]);
    for wrong in [
        "configure_and_quote",
        "deal_registration",
        "launch_and_enable",
        "won",
    ] {
        let err = Scenario::given(given.clone())
            .by(partner.user())
            .when(deal.advance(wrong, note("done")))
            .then_error(RejectionCode::InvalidTransition);
        assert_eq!(err.details["next_stage"], "qualification", "{wrong}");
    }
}

#[test]
fn a_deal_without_attribution_cannot_change_stage() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let err = Scenario::given(given)
        .by(partner.user())
        .when(deal.advance("qualification", note("done")))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    assert_eq!(err.details["stage"], "deal_registration");
    assert!(err.message.contains("attribution"), "{}", err.message);
}

#[test]
fn a_stage_change_needs_a_note_on_how_the_criteria_were_met() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    Scenario::given(history([given, vec![deal.sourcing_set_by_partner()]]))
        .by(partner.user())
        .when(deal.advance("qualification", note("  ")))
        .then_error(RejectionCode::ExitCriteriaNotMet);
}

#[test]
fn only_a_protected_registration_moves_through_stages() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let sourced = vec![deal.sourcing_set_by_partner()];
    for life in [deal.submitted(), deal.expired(), deal.won(usd(1_000))] {
        Scenario::given(history([partner.events(), life, sourced.clone()]))
            .at(t0() + days(100))
            .by(channel_manager())
            .when(deal.advance("qualification", note("done")))
            .then_error(RejectionCode::InvalidTransition);
    }
}

#[test]
fn a_stage_is_moved_by_the_owning_partner_or_a_channel_manager() {
    let partner = reseller(Tier::Gold);
    let other = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, other.events(), vec![deal.sourcing_set_by_partner()]]);
    Scenario::given(given.clone())
        .by(channel_manager())
        .when(deal.advance("qualification", note("done")))
        .then_ok();
    Scenario::given(given.clone())
        .by(other.user())
        .when(deal.advance("qualification", note("done")))
        .then_error(RejectionCode::UnknownRegistration);
    for actor in [revops(), direct_sales(), timekeeper()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.advance("qualification", note("done")))
            .then_error(RejectionCode::NotAuthorised);
    }
}

// ------------------------------------------------------------ exit criteria by motion

#[test]
fn a_referral_leaves_intro_logged_only_with_the_partner_marked_as_sourcing() {
    let partner = referrer(Tier::Gold);
    let colleague = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Referral);
    let given = history([given, colleague.events()]);
    let sourced_by_other = Event::SourcingPartnerSet {
        account: acme(),
        registration_id: deal.id,
        partner_id: colleague.id,
        previous: None,
        actor: channel_manager().label(),
        reason: "colleague made the intro".into(),
        at: t0(),
    };
    for credit in [deal.influencer_added(partner.id, 50), sourced_by_other] {
        let err = Scenario::given(history([given.clone(), vec![credit]]))
            .by(partner.user())
            .when(deal.advance("validate", intro_accepted()))
            .then_error(RejectionCode::ExitCriteriaNotMet);
        assert_eq!(err.details["stage"], "intro_logged");
    }
    Scenario::given(history([given, vec![deal.sourcing_set_by_partner()]]))
        .by(partner.user())
        .when(deal.advance("validate", intro_accepted()))
        .then_ok();
}

/// A reseller deal of a partner in `tier`, sourced, at Configure & Quote.
fn at_configure_and_quote(tier: Tier) -> (TestPartner, Deal, Vec<Event>) {
    let partner = reseller(tier);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([
        given,
        vec![deal.sourcing_set_by_partner()],
        advanced_to(&deal, 2),
    ]);
    (partner, deal, given)
}

#[test]
fn a_gold_quote_within_the_20_percent_band_leaves_configure_and_quote() {
    let (partner, deal, given) = at_configure_and_quote(Tier::Gold);
    Scenario::given(given)
        .by(partner.user())
        .when(deal.advance("transact", quote(Some(20))))
        .then_ok();
}

#[test]
fn a_gold_quote_at_21_percent_is_outside_the_band() {
    let (partner, deal, given) = at_configure_and_quote(Tier::Gold);
    let err = Scenario::given(given)
        .by(partner.user())
        .when(deal.advance("transact", quote(Some(21))))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    assert_eq!(err.details["stage"], "configure_and_quote");
    assert!(err.message.contains("20 %"), "{}", err.message);
}

#[test]
fn a_quote_without_its_discount_cannot_leave_configure_and_quote() {
    let (partner, deal, given) = at_configure_and_quote(Tier::Gold);
    Scenario::given(given)
        .by(partner.user())
        .when(deal.advance("transact", quote(None)))
        .then_error(RejectionCode::ExitCriteriaNotMet);
}

#[test]
fn the_discount_band_follows_the_partners_tier() {
    for (tier, band) in [
        (Tier::Registered, 10),
        (Tier::Silver, 15),
        (Tier::Gold, 20),
        (Tier::Platinum, 25),
    ] {
        let (partner, deal, given) = at_configure_and_quote(tier);
        Scenario::given(given.clone())
            .by(partner.user())
            .when(deal.advance("transact", quote(Some(band))))
            .then_ok();
        Scenario::given(given)
            .by(partner.user())
            .when(deal.advance("transact", quote(Some(band + 1))))
            .then_error(RejectionCode::ExitCriteriaNotMet);
    }
}

#[test]
fn other_reseller_stages_need_no_discount() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    Scenario::given(history([
        given,
        vec![deal.sourcing_set_by_partner()],
        advanced_to(&deal, 1),
    ]))
    .by(partner.user())
    .when(deal.advance("configure_and_quote", quote(None)))
    .then_ok();
}

#[test]
fn a_tech_isv_deal_moves_only_with_its_partner_recorded_as_influencer() {
    let partner = tech_partner();
    let colleague = tech_partner();
    let (deal, given) = protected(&partner, Motion::TechIsv);
    let given = history([given, colleague.events()]);
    Scenario::given(history([
        given.clone(),
        vec![deal.influencer_added(colleague.id, 40)],
    ]))
    .by(partner.user())
    .when(deal.advance("field_readiness", exit_evidence(Motion::TechIsv, 0)))
    .then_error(RejectionCode::ExitCriteriaNotMet);
    Scenario::given(history([
        given,
        vec![deal.influencer_added(partner.id, 40)],
    ]))
    .by(partner.user())
    .when(deal.advance("field_readiness", exit_evidence(Motion::TechIsv, 0)))
    .then_ok();
}

// ------------------------------------------------------------------- attribution

#[test]
fn a_partner_marks_itself_as_the_sourcing_partner_with_actor_and_reason() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(1);
    Scenario::given(given)
        .at(at)
        .by(partner.user())
        .when(deal.set_sourcing(partner.id))
        .then(vec![Event::SourcingPartnerSet {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            previous: None,
            actor: partner.user().label(),
            reason: "originated the deal".into(),
            at,
        }]);
}

fn sourced_by(deal: &Deal, partner: PartnerId) -> Event {
    Event::SourcingPartnerSet {
        account: acme(),
        registration_id: deal.id,
        partner_id: partner,
        previous: None,
        actor: channel_manager().label(),
        reason: "originated the deal".into(),
        at: t0(),
    }
}

#[test]
fn a_partner_cannot_replace_the_sourcing_partner() {
    let partner = reseller(Tier::Gold);
    let originator = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let err = Scenario::given(history([
        given,
        originator.events(),
        vec![sourced_by(&deal, originator.id)],
    ]))
    .by(partner.user())
    .when(deal.set_sourcing(partner.id))
    .then_error(RejectionCode::SourcingTaken);
    assert_eq!(err.details, json!({ "sourcing": originator.id }));
}

#[test]
fn a_channel_manager_replaces_the_sourcing_partner_recording_the_previous_one() {
    let partner = reseller(Tier::Gold);
    let originator = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(2);
    Scenario::given(history([
        given,
        originator.events(),
        vec![sourced_by(&deal, originator.id)],
    ]))
    .at(at)
    .by(channel_manager())
    .when(deal.set_sourcing(partner.id))
    .then(vec![Event::SourcingPartnerSet {
        account: acme(),
        registration_id: deal.id,
        partner_id: partner.id,
        previous: Some(originator.id),
        actor: channel_manager().label(),
        reason: "originated the deal".into(),
        at,
    }]);
}

#[test]
fn the_same_sourcing_partner_is_not_recorded_twice() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    Scenario::given(history([given, vec![deal.sourcing_set_by_partner()]]))
        .when(deal.set_sourcing(partner.id))
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn a_partner_changes_only_its_own_credit() {
    let partner = reseller(Tier::Gold);
    let friend = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, friend.events()]);
    Scenario::given(given.clone())
        .by(partner.user())
        .when(deal.set_sourcing(friend.id))
        .then_error(RejectionCode::NotAuthorised);
    Scenario::given(given.clone())
        .by(partner.user())
        .when(deal.add_influencer(friend.id, 10))
        .then_error(RejectionCode::NotAuthorised);
    for actor in [revops(), direct_sales(), timekeeper()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.set_sourcing(partner.id))
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn a_tech_isv_deal_has_no_sourcing_partner() {
    let partner = tech_partner();
    let (deal, given) = protected(&partner, Motion::TechIsv);
    for actor in [partner.user(), channel_manager()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.set_sourcing(partner.id))
            .then_error(RejectionCode::SourcingNotAllowed);
    }
}

#[test]
fn a_tech_isv_partner_is_never_the_sourcing_partner_of_another_deal() {
    let partner = reseller(Tier::Gold);
    let isv = tech_partner();
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, isv.events()]);
    Scenario::given(given.clone())
        .when(deal.set_sourcing(isv.id))
        .then_error(RejectionCode::SourcingNotAllowed);
    Scenario::given(given)
        .when(deal.add_influencer(isv.id, 30))
        .then_ok();
}

#[test]
fn one_partner_is_either_sourcing_or_influencer_not_both() {
    let partner = reseller(Tier::Gold);
    let helper = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, helper.events()]);
    Scenario::given(history([
        given.clone(),
        vec![deal.sourcing_set_by_partner()],
    ]))
    .when(deal.add_influencer(partner.id, 10))
    .then_error(RejectionCode::InvalidField);
    Scenario::given(history([given, vec![deal.influencer_added(helper.id, 10)]]))
        .when(deal.set_sourcing(helper.id))
        .then_error(RejectionCode::InvalidField);
}

#[test]
fn an_influencer_is_added_with_its_share_actor_and_reason() {
    let partner = reseller(Tier::Gold);
    let helper = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(1);
    Scenario::given(history([given, helper.events()]))
        .at(at)
        .when(deal.add_influencer(helper.id, 25))
        .then(vec![Event::InfluencerAdded {
            account: acme(),
            registration_id: deal.id,
            partner_id: helper.id,
            percent: 25,
            actor: channel_manager().label(),
            reason: "joint workshop".into(),
            at,
        }]);
}

/// A protected deal with influencers at 60 % and 30 %, and a third partner standing by.
fn influenced_90_percent() -> (Deal, [PartnerId; 3], Vec<Event>) {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let [a, b, c] = [
        referrer(Tier::Gold),
        referrer(Tier::Gold),
        referrer(Tier::Gold),
    ];
    let given = history([
        given,
        a.events(),
        b.events(),
        c.events(),
        vec![
            deal.influencer_added(a.id, 60),
            deal.influencer_added(b.id, 30),
        ],
    ]);
    (deal, [a.id, b.id, c.id], given)
}

#[test]
fn influencers_may_total_exactly_100_percent() {
    let (deal, [_, _, c], given) = influenced_90_percent();
    Scenario::given(given)
        .when(deal.add_influencer(c, 10))
        .then_ok();
}

#[test]
fn influencers_totalling_101_percent_are_refused() {
    let (deal, [_, _, c], given) = influenced_90_percent();
    let err = Scenario::given(given)
        .when(deal.add_influencer(c, 11))
        .then_error(RejectionCode::AttributionOver100);
    assert_eq!(err.details, json!({ "total": 101 }));
}

#[test]
fn re_adding_an_influencer_replaces_its_share() {
    let (deal, [a, _, _], given) = influenced_90_percent();
    Scenario::given(given.clone())
        .when(deal.add_influencer(a, 70))
        .then_ok();
    Scenario::given(given)
        .when(deal.add_influencer(a, 71))
        .then_error(RejectionCode::AttributionOver100);
}

#[test]
fn an_influencer_share_is_between_1_and_100_percent() {
    let (deal, [_, _, c], given) = influenced_90_percent();
    for percent in [0, 101] {
        let err = Scenario::given(given.clone())
            .when(deal.add_influencer(c, percent))
            .then_error(RejectionCode::InvalidField);
        assert_eq!(err.details["field"], "percent");
    }
}

#[test]
fn removing_an_influencer_frees_its_share() {
    let (deal, [a, _, c], given) = influenced_90_percent();
    let at = t0() + days(1);
    let removed = Scenario::given(given.clone())
        .at(at)
        .when(deal.remove_influencer(a))
        .then(vec![Event::InfluencerRemoved {
            account: acme(),
            registration_id: deal.id,
            partner_id: a,
            actor: channel_manager().label(),
            reason: "did not take part after all".into(),
            at,
        }]);
    Scenario::given(history([given.clone(), removed]))
        .when(deal.add_influencer(c, 70))
        .then_ok();
    Scenario::given(given)
        .when(deal.remove_influencer(c))
        .then_error(RejectionCode::InvalidField);
}

#[test]
fn attribution_is_locked_once_the_deal_is_won() {
    let partner = reseller(Tier::Gold);
    let helper = referrer(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), helper.events(), deal.won(usd(1_000_000))]);
    for change in [
        deal.set_sourcing(helper.id),
        deal.add_influencer(helper.id, 10),
        deal.remove_influencer(helper.id),
    ] {
        Scenario::given(given.clone())
            .at(deal.won_at() + days(1))
            .when(change)
            .then_error(RejectionCode::AttributionLocked);
    }
}

#[test]
fn attribution_is_locked_once_the_deal_is_lost() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let lost = Scenario::given(given.clone())
        .by(partner.user())
        .when(deal.mark_lost())
        .then_ok();
    Scenario::given(history([given, lost]))
        .by(partner.user())
        .when(deal.set_sourcing(partner.id))
        .then_error(RejectionCode::AttributionLocked);
}

// ------------------------------------------------------------ won, lost, reversed

#[test]
fn a_won_deal_carries_its_attribution_renewal_date_and_frees_the_slot() {
    let partner = reseller(Tier::Gold);
    let helper = referrer(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(45);
    Scenario::given(history([
        given,
        helper.events(),
        vec![
            deal.sourcing_set_by_partner(),
            deal.influencer_added(helper.id, 25),
        ],
        deal.to_closing_stage(),
    ]))
    .at(at)
    .when(deal.mark_won(usd(4_800_000)))
    .then(vec![
        Event::DealWon {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            motion: Motion::Reseller,
            product_line: "analytics".into(),
            amount: usd(4_800_000),
            attribution: Attribution {
                sourcing: Some(partner.id),
                influencers: BTreeMap::from([(helper.id, 25)]),
            },
            renewal_date: Some(date("2027-04-16")),
            order_reference: Some(ORDER.into()),
            policy_version: 1,
            at,
        },
        Event::CapacitySlotReleased {
            partner_id: partner.id,
            registration_id: deal.id,
            account: acme(),
            slot: Some(1),
            at,
        },
    ]);
}

#[test]
fn a_deal_without_attribution_cannot_be_marked_won() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    Scenario::given(given)
        .when(deal.mark_won(usd(4_800_000)))
        .then_error(RejectionCode::ExitCriteriaNotMet);
}

#[test]
fn a_win_is_in_the_registrations_currency() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([given, vec![deal.sourcing_set_by_partner()]]);
    let err = Scenario::given(given.clone())
        .when(deal.mark_won(eur(4_800_000)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount.currency");
    let err = Scenario::given(given)
        .when(deal.mark_won(usd(0)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount");
}

#[test]
fn only_a_protected_deal_is_won() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    for life in [deal.submitted(), deal.expired(), deal.won(usd(1_000))] {
        Scenario::given(history([
            partner.events(),
            life,
            vec![deal.sourcing_set_by_partner()],
        ]))
        .at(t0() + days(100))
        .when(deal.mark_won(usd(1_000)))
        .then_error(RejectionCode::InvalidTransition);
    }
}

#[test]
fn wins_are_recorded_by_the_vendor_not_the_partner() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let given = history([
        given,
        vec![deal.sourcing_set_by_partner()],
        deal.to_closing_stage(),
    ]);
    for actor in [channel_manager(), revops(), timekeeper()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.mark_won(usd(1_000)))
            .then_ok();
    }
    for actor in [partner.user(), direct_sales()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.mark_won(usd(1_000)))
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn the_winner_becomes_the_incumbent_of_the_line() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let expansion = Deal::new(&partner, Motion::Reseller)
        .kind(DealKind::Expansion)
        .incumbent()
        .submitted_at(deal.won_at() + days(1));
    Scenario::given(history([partner.events(), deal.won(usd(1_000_000))]))
        .at(deal.won_at() + days(1))
        .by(partner.user())
        .when(expansion.submit())
        .then(expansion.submitted());
}

#[test]
fn a_lost_deal_is_closed_and_frees_the_slot() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    let at = t0() + days(20);
    Scenario::given(given)
        .at(at)
        .by(partner.user())
        .when(deal.mark_lost())
        .then(vec![
            Event::DealLost {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                reason: "went with a competitor".into(),
                policy_version: 1,
                at,
            },
            deal.slot_released(at),
        ]);
}

fn won_deal() -> (Deal, Vec<Event>) {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), deal.won(usd(1_000_000))]);
    (deal, given)
}

#[test]
fn revenue_is_reversed_up_to_the_won_amount() {
    let (deal, given) = won_deal();
    let at = deal.won_at() + days(10);
    let first = Scenario::given(given.clone())
        .at(at)
        .by(revops())
        .when(deal.reverse(usd(600_000)))
        .then(vec![Event::RevenueReversed {
            account: acme(),
            registration_id: deal.id,
            amount: usd(600_000),
            reason: "credit note".into(),
            at,
        }]);
    let given = history([given, first]);
    Scenario::given(given.clone())
        .at(at)
        .by(revops())
        .when(deal.reverse(usd(400_000)))
        .then_ok();
    let err = Scenario::given(given)
        .at(at)
        .by(revops())
        .when(deal.reverse(usd(400_001)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount");
}

#[test]
fn a_reversal_above_the_won_amount_is_refused() {
    let (deal, given) = won_deal();
    Scenario::given(given)
        .at(deal.won_at())
        .by(revops())
        .when(deal.reverse(usd(1_000_001)))
        .then_error(RejectionCode::InvalidField);
}

#[test]
fn a_reversal_is_in_the_deals_currency() {
    let (deal, given) = won_deal();
    let err = Scenario::given(given)
        .at(deal.won_at())
        .by(revops())
        .when(deal.reverse(eur(100)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount.currency");
}

#[test]
fn only_won_revenue_is_reversed_and_only_by_revops_or_billing() {
    let partner = reseller(Tier::Gold);
    let (deal, given) = protected(&partner, Motion::Reseller);
    Scenario::given(given)
        .by(revops())
        .when(deal.reverse(usd(100)))
        .then_error(RejectionCode::InvalidTransition);
    let (won, given) = won_deal();
    for actor in [channel_manager(), user_of(won.partner), direct_sales()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(won.reverse(usd(100)))
            .then_error(RejectionCode::NotAuthorised);
    }
    Scenario::given(given)
        .by(timekeeper())
        .when(won.reverse(usd(100)))
        .then_ok();
}
