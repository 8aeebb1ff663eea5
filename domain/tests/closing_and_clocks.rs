//! docs/RULES.md, "Partner motions" (a deal is won at its motion's closing stage, after the
//! exit criteria of every earlier stage; post-sale stages come after the win; exits check
//! the facts the brief names) and registration policy 6 (the referral's own 24-hour clock;
//! a conflict's resolution plan within 5 business days, met by the plan).

mod fixtures;
use fixtures::*;

use dealreg_domain::stages::{closing_stage, stages};

/// A protected deal of `motion` with its credit as the motion wants it, by a partner in
/// every motion (Gold, certified in analytics).
fn credited(motion: Motion) -> (TestPartner, Deal, Vec<Event>) {
    let partner = TestPartner::onboarded(&Motion::ALL, Tier::Gold, 10)
        .certified_in("analytics", far_future());
    let deal = Deal::new(&partner, motion);
    let credit = if motion == Motion::TechIsv {
        deal.influencer_added(partner.id, 100)
    } else {
        deal.sourcing_set_by_partner()
    };
    let given = history([partner.events(), deal.approved(), vec![credit]]);
    (partner, deal, given)
}

/// The first `n` stage advances of `deal` (of [`Deal::to_closing_stage`]'s evidence).
fn advanced(deal: &Deal, n: usize) -> Vec<Event> {
    deal.to_closing_stage().into_iter().take(n).collect()
}

// ------------------------------------------------------------- won at the closing stage

#[test]
fn a_deal_is_won_only_at_its_motions_closing_stage() {
    let closes_at = [
        (Motion::Referral, "closed_and_credit"),
        (Motion::Reseller, "transact"),
        (Motion::Marketplace, "close_and_disburse"),
        (Motion::Services, "commercials"),
        (Motion::TechIsv, "commercials_and_close"),
    ];
    for (motion, closing) in closes_at {
        assert_eq!(stages(motion)[closing_stage(motion)], closing);
        let (_, deal, given) = credited(motion);
        // One stage short of the closing one: refused, naming where it closes.
        let short = history([given.clone(), advanced(&deal, closing_stage(motion) - 1)]);
        let err = Scenario::given(short)
            .at(t0() + days(10))
            .when(deal.mark_won(usd(4_000_000)))
            .then_error(RejectionCode::ExitCriteriaNotMet);
        assert_eq!(err.details["closing_stage"], closing, "{motion:?}");
        assert_eq!(err.details["next_stage"], closing, "{motion:?}");
        // At the closing stage: won.
        let events = Scenario::given(history([given, deal.to_closing_stage()]))
            .at(t0() + days(10))
            .when(deal.mark_won(usd(4_000_000)))
            .then_ok();
        assert!(
            matches!(events[0], Event::DealWon { .. }),
            "{motion:?}: {events:?}"
        );
    }
}

#[test]
fn post_sale_stages_come_after_the_win_and_hold_no_protection() {
    for motion in [Motion::Reseller, Motion::Marketplace, Motion::Services] {
        let (partner, deal, given) = credited(motion);
        let at_closing = history([given, deal.to_closing_stage()]);
        let post_sale = stages(motion)[closing_stage(motion) + 1];
        let err = Scenario::given(at_closing.clone())
            .at(t0() + days(10))
            .by(partner.user())
            .when(deal.advance(post_sale, note("handed over to delivery")))
            .then_error(RejectionCode::InvalidTransition);
        assert!(err.message.contains("mark it won"), "{}", err.message);
        let won = Scenario::given(at_closing.clone())
            .at(t0() + days(10))
            .when(deal.mark_won(usd(4_000_000)))
            .then_ok();
        let after_win = history([at_closing, won]);
        let moved = Scenario::given(after_win.clone())
            .at(t0() + days(11))
            .by(partner.user())
            .when(deal.advance(
                post_sale,
                note("delivery by the partner; the partner owns the renewal"),
            ))
            .then_ok();
        assert!(
            matches!(&moved[..], [Event::StageAdvanced { to_stage, .. }] if to_stage == post_sale),
            "{motion:?}: {moved:?}"
        );
        // No protection clock runs on a won deal: nothing to expire.
        Scenario::given(history([after_win, moved]))
            .at(t0() + days(400))
            .by(timekeeper())
            .when(deal.expire())
            .then_error(RejectionCode::InvalidTransition);
    }
}

// ----------------------------------------------------------- exits that check something

/// Each exit where the brief names a checkable fact refuses without it and passes with
/// it; the refusal names the field to supply.
#[test]
fn each_exit_checks_the_fact_the_brief_names() {
    // (motion, stage left, the field named, how the evidence is spoiled)
    type Check = (Motion, usize, &'static str, fn(&mut StageEvidence));
    let checks: [Check; 6] = [
        (Motion::Referral, 0, "vendor_owner", |e| {
            e.vendor_owner = None
        }),
        (Motion::Reseller, 2, "discount_percent", |e| {
            e.discount_percent = None
        }),
        (Motion::Marketplace, 1, "offer_reference", |e| {
            e.offer_reference = Some("  ".into())
        }),
        (Motion::Marketplace, 2, "transaction_reference", |e| {
            e.transaction_reference = None
        }),
        (Motion::Services, 0, "success_criteria", |e| {
            e.success_criteria = None
        }),
        (Motion::TechIsv, 0, "integration", |e| e.integration = None),
    ];
    for (motion, index, field, spoil) in checks {
        let (partner, deal, given) = credited(motion);
        let given = history([given, advanced(&deal, index)]);
        let next = stages(motion)[index + 1];
        let mut missing = exit_evidence(motion, index);
        spoil(&mut missing);
        let err = Scenario::given(given.clone())
            .at(t0() + days(10))
            .by(partner.user())
            .when(deal.advance(next, missing))
            .then_error(RejectionCode::ExitCriteriaNotMet);
        assert!(
            err.message.contains(field),
            "{motion:?} {index}: {}",
            err.message
        );
        Scenario::given(given)
            .at(t0() + days(10))
            .by(partner.user())
            .when(deal.advance(next, exit_evidence(motion, index)))
            .then_ok();
    }
}

#[test]
fn a_private_offer_stays_inside_the_discount_band() {
    let (partner, deal, given) = credited(Motion::Marketplace);
    let given = history([given, advanced(&deal, 1)]);
    let mut generous = exit_evidence(Motion::Marketplace, 1);
    generous.discount_percent = Some(21);
    let err = Scenario::given(given)
        .at(t0() + days(10))
        .by(partner.user())
        .when(deal.advance("procurement", generous))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    assert!(err.message.contains("band of 20 %"), "{}", err.message);
}

#[test]
fn a_reseller_win_needs_the_order_reference_and_a_marketplace_win_the_transaction() {
    let (_, deal, given) = credited(Motion::Reseller);
    let at_transact = history([given, deal.to_closing_stage()]);
    let no_order = Command::MarkWon(MarkWon {
        account: "acme.com".into(),
        registration_id: deal.id,
        amount: usd(4_000_000),
        order_reference: None,
    });
    let err = Scenario::given(at_transact)
        .at(t0() + days(10))
        .when(no_order)
        .then_error(RejectionCode::ExitCriteriaNotMet);
    assert!(err.message.contains("order_reference"), "{}", err.message);

    // The marketplace transaction recorded at Procurement is the win's reference.
    let (_, deal, given) = credited(Motion::Marketplace);
    let events = Scenario::given(history([given, deal.to_closing_stage()]))
        .at(t0() + days(10))
        .when(Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: deal.id,
            amount: usd(4_000_000),
            order_reference: None,
        }))
        .then_ok();
    assert!(
        matches!(&events[0], Event::DealWon { order_reference: Some(r), .. } if r == "aws-mp-txn-88231"),
        "{events:?}"
    );
}

// ------------------------------------------------------------------ the referral clock

fn flag_referral(deal: &Deal) -> Command {
    Command::FlagReferralSlaBreached(FlagReferralSlaBreached {
        account: "acme.com".into(),
        registration_id: deal.id,
    })
}

#[test]
fn a_referral_not_made_an_accepted_opportunity_in_24_hours_breaches_its_clock_once() {
    let (partner, deal, given) = credited(Motion::Referral);
    let due = t0() + hours(24);
    Scenario::given(given.clone())
        .at(due - secs(1))
        .by(timekeeper())
        .when(flag_referral(&deal))
        .then_error(RejectionCode::NotDue);
    let breached = Scenario::given(given.clone())
        .at(due)
        .by(timekeeper())
        .when(flag_referral(&deal))
        .then(vec![Event::ReferralSlaBreached {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            due_at: due,
            policy_version: 1,
            at: due,
        }]);
    Scenario::given(history([given.clone(), breached]))
        .at(due + hours(1))
        .by(timekeeper())
        .when(flag_referral(&deal))
        .then_error(RejectionCode::AlreadyRecorded);
    // Met: the vendor accepted the opportunity (Intro Logged left) in time.
    Scenario::given(history([given.clone(), advanced(&deal, 1)]))
        .at(due)
        .by(timekeeper())
        .when(flag_referral(&deal))
        .then_error(RejectionCode::InvalidTransition);
    // Only the timekeeper flags it.
    Scenario::given(given)
        .at(due)
        .by(channel_manager())
        .when(flag_referral(&deal))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn other_motions_run_no_referral_clock() {
    let (_, deal, given) = credited(Motion::Reseller);
    Scenario::given(given)
        .at(t0() + days(3))
        .by(timekeeper())
        .when(flag_referral(&deal))
        .then_error(RejectionCode::InvalidTransition);
}

// ------------------------------------------------------------------- resolution plans

fn horizontal() -> (TestPartner, Deal, Vec<Event>) {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let first = Deal::new(&a, Motion::Reseller);
    let second = Deal::new(&b, Motion::Reseller).submitted_at(t0() + hours(1));
    let detected = conflict_detected(
        1,
        ConflictKind::Horizontal,
        vec![first.party(), second.party()],
        "2 reseller partners registered `analytics` at acme.com",
        t0() + hours(1),
    );
    let given = history([
        a.events(),
        b.events(),
        first.submitted(),
        second.submitted(),
        vec![detected],
    ]);
    (a, first, given)
}

fn conflict() -> ConflictId {
    ConflictId("acme.com/analytics/1".into())
}

fn plan(steps: &[&str], resolve_by: &str) -> Command {
    Command::RecordResolutionPlan(RecordResolutionPlan {
        account: "acme.com".into(),
        conflict_id: conflict(),
        owner: "maria.cm@vendor.example".into(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        resolve_by: date(resolve_by),
    })
}

#[test]
fn a_resolution_plan_is_recorded_with_owner_steps_and_date_and_meets_the_5_day_sla() {
    let (a, _, given) = horizontal();
    let at = t0() + days(2);
    let steps = ["call both partners", "compare proof of work"];
    let recorded = Scenario::given(given.clone())
        .at(at)
        .by(channel_manager())
        .when(plan(&steps, "2026-03-20"))
        .then(vec![Event::ConflictResolutionPlanRecorded {
            account: acme(),
            conflict_id: conflict(),
            owner: "maria.cm@vendor.example".into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            resolve_by: date("2026-03-20"),
            by: channel_manager().label(),
            at,
        }]);
    let planned = history([given.clone(), recorded]);
    // The plan meets the SLA: no breach when its deadline passes unresolved.
    Scenario::given(planned.clone())
        .at(t0() + days(30))
        .by(timekeeper())
        .when(Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
            account: "acme.com".into(),
            conflict_id: conflict(),
            sla: ConflictSla::ResolutionPlan,
        }))
        .then_error(RejectionCode::InvalidTransition);
    // Without a plan it is breached, though the conflict was acknowledged.
    Scenario::given(given.clone())
        .at(t0() + days(30))
        .by(timekeeper())
        .when(Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
            account: "acme.com".into(),
            conflict_id: conflict(),
            sla: ConflictSla::ResolutionPlan,
        }))
        .then_ok();
    // The same plan twice is one plan; a revised one is recorded.
    Scenario::given(planned.clone())
        .at(at)
        .by(channel_manager())
        .when(plan(&steps, "2026-03-20"))
        .then_error(RejectionCode::AlreadyRecorded);
    Scenario::given(planned)
        .at(at)
        .by(channel_manager())
        .when(plan(&steps, "2026-03-27"))
        .then_ok();
    // The conflict desk records it, not a partner.
    Scenario::given(given)
        .at(at)
        .by(a.user())
        .when(plan(&steps, "2026-03-20"))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_resolution_plan_needs_steps_an_owner_and_a_date_ahead() {
    let (_, _, given) = horizontal();
    let at = t0() + days(2);
    for (command, field) in [
        (plan(&[], "2026-03-20"), "steps"),
        (plan(&["call", " "], "2026-03-20"), "steps"),
        (plan(&["call"], "2026-02-01"), "resolve_by"),
    ] {
        let err = Scenario::given(given.clone())
            .at(at)
            .by(channel_manager())
            .when(command)
            .then_error(RejectionCode::InvalidField);
        assert_eq!(err.details["field"], field);
    }
    let Command::RecordResolutionPlan(mut nobody) = plan(&["call"], "2026-03-20") else {
        unreachable!("plan() builds a plan")
    };
    nobody.owner = " ".into();
    Scenario::given(given)
        .at(at)
        .by(channel_manager())
        .when(Command::RecordResolutionPlan(nobody))
        .then_error(RejectionCode::MissingField);
}
