//! docs/RULES.md, registration policy 5 (appeals and escalation): a declined partner may appeal
//! once within 10 days with evidence; the decision is recorded with its rationale.

mod fixtures;
use fixtures::*;

fn declined_deal() -> (TestPartner, Deal) {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    (partner, deal)
}

#[test]
fn a_decline_opens_a_ten_day_appeal_window_and_frees_the_slot() {
    let (partner, deal) = declined_deal();
    let at = t0() + hours(3);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(at)
        .by(channel_manager())
        .when(deal.decline())
        .then(vec![
            Event::RegistrationDeclined {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                reason_code: "insufficient_proof".into(),
                rationale: "no evidence of a meeting with the buyer".into(),
                appeal_until: t0() + hours(3) + days(10),
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
fn a_decline_needs_a_reason_code_and_a_rationale() {
    let (partner, deal) = declined_deal();
    for (reason_code, rationale, field) in [
        ("", "why", "reason_code"),
        ("insufficient_proof", " ", "rationale"),
    ] {
        let err = Scenario::given(history([partner.events(), deal.submitted()]))
            .by(channel_manager())
            .when(Command::DeclineRegistration(DeclineRegistration {
                account: "acme.com".into(),
                registration_id: deal.id,
                reason_code: reason_code.into(),
                rationale: rationale.into(),
            }))
            .then_error(RejectionCode::MissingField);
        assert_eq!(err.details["field"], field);
    }
}

#[test]
fn an_appeal_within_the_window_is_filed_with_its_evidence() {
    let (partner, deal) = declined_deal();
    let at = deal.declined_at() + days(4);
    Scenario::given(history([partner.events(), deal.declined()]))
        .at(at)
        .by(partner.user())
        .when(deal.appeal())
        .then(vec![Event::AppealFiled {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            evidence: "minutes of the CFO workshop".into(),
            at,
        }]);
}

#[test]
fn an_appeal_on_the_last_instant_of_the_window_is_still_in_time() {
    let (partner, deal) = declined_deal();
    Scenario::given(history([partner.events(), deal.declined()]))
        .at(deal.declined_at() + days(10))
        .by(partner.user())
        .when(deal.appeal())
        .then_ok();
}

#[test]
fn an_appeal_after_ten_days_is_refused_as_the_window_closed() {
    let (partner, deal) = declined_deal();
    let err = Scenario::given(history([partner.events(), deal.declined()]))
        .at(deal.declined_at() + days(10) + secs(1))
        .by(partner.user())
        .when(deal.appeal())
        .then_error(RejectionCode::AppealWindowClosed);
    assert_eq!(
        err.details["appeal_until"],
        json!(deal.declined_at() + days(10))
    );
}

#[test]
fn the_appeal_window_comes_from_the_policy() {
    let (partner, deal) = declined_deal();
    let mut policy = policy_version(2);
    policy.timing.appeal_window_days = 3;
    let events = Scenario::given(history([partner.events(), deal.submitted()]))
        .with_policy(policy)
        .by(channel_manager())
        .when(deal.decline())
        .then_ok();
    assert!(matches!(
        &events[0],
        Event::RegistrationDeclined { appeal_until, .. } if *appeal_until == t0() + days(3)
    ));
}

#[test]
fn an_appeal_needs_evidence() {
    let (partner, deal) = declined_deal();
    let err = Scenario::given(history([partner.events(), deal.declined()]))
        .by(partner.user())
        .at(deal.declined_at() + days(1))
        .when(Command::AppealDecision(AppealDecision {
            account: "acme.com".into(),
            registration_id: deal.id,
            evidence: "".into(),
        }))
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "evidence");
}

#[test]
fn only_the_declined_partner_may_appeal() {
    let (partner, deal) = declined_deal();
    let other = reseller(Tier::Gold);
    let given = history([partner.events(), other.events(), deal.declined()]);
    let at = deal.declined_at() + days(1);
    // Another partner is not told the registration exists.
    Scenario::given(given.clone())
        .at(at)
        .by(other.user())
        .when(deal.appeal())
        .then_error(RejectionCode::UnknownRegistration);
    for vendor in [channel_manager(), revops(), direct_sales()] {
        Scenario::given(given.clone())
            .at(at)
            .by(vendor)
            .when(deal.appeal())
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn a_decision_is_appealed_once() {
    let (partner, deal) = declined_deal();
    let filed = deal.appeal_filed(deal.declined_at() + days(1));
    Scenario::given(history([partner.events(), deal.declined(), vec![filed]]))
        .at(deal.declined_at() + days(2))
        .by(partner.user())
        .when(deal.appeal())
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn only_a_declined_registration_can_be_appealed() {
    let (partner, deal) = declined_deal();
    for given in [deal.submitted(), deal.approved()] {
        Scenario::given(history([partner.events(), given]))
            .by(partner.user())
            .when(deal.appeal())
            .then_error(RejectionCode::InvalidTransition);
    }
}

fn appealed(partner: &TestPartner, deal: &Deal) -> Vec<Event> {
    history([
        partner.events(),
        deal.declined(),
        vec![deal.appeal_filed(deal.declined_at() + days(1))],
    ])
}

#[test]
fn an_upheld_appeal_reinstates_the_registration_as_pending_with_a_new_deadline() {
    let (partner, deal) = declined_deal();
    let at = t0() + days(3);
    Scenario::given(appealed(&partner, &deal))
        .at(at)
        .by(channel_manager())
        .when(deal.decide_appeal(true))
        .then(vec![
            Event::AppealDecided {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                upheld: true,
                rationale: "the minutes show the meeting took place".into(),
                approval_due_at: Some(t0() + days(3) + hours(48)),
                policy_version: 1,
                at,
            },
            Event::CapacitySlotTaken {
                partner_id: partner.id,
                registration_id: deal.id,
                account: acme(),
                at,
            },
        ]);
}

#[test]
fn a_reinstated_registration_can_be_approved_and_has_a_fresh_approval_sla() {
    let (partner, deal) = declined_deal();
    let decided_at = t0() + days(3);
    let reinstated = Scenario::given(appealed(&partner, &deal))
        .at(decided_at)
        .by(channel_manager())
        .when(deal.decide_appeal(true))
        .then_ok();
    let given = history([appealed(&partner, &deal), reinstated]);
    Scenario::given(given.clone())
        .at(decided_at + hours(1))
        .by(channel_manager())
        .when(deal.approve())
        .then_ok();
    Scenario::given(given.clone())
        .at(decided_at + hours(48) - secs(1))
        .by(timekeeper())
        .when(deal.flag_sla())
        .then_error(RejectionCode::NotDue);
    Scenario::given(given)
        .at(decided_at + hours(48))
        .by(timekeeper())
        .when(deal.flag_sla())
        .then_ok();
}

#[test]
fn a_denied_appeal_leaves_the_registration_declined() {
    let (partner, deal) = declined_deal();
    let at = t0() + days(3);
    let denied = Scenario::given(appealed(&partner, &deal))
        .at(at)
        .by(channel_manager())
        .when(deal.decide_appeal(false))
        .then(vec![Event::AppealDecided {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            upheld: false,
            rationale: "the minutes show the meeting took place".into(),
            approval_due_at: None,
            policy_version: 1,
            at,
        }]);
    let given = history([appealed(&partner, &deal), denied]);
    Scenario::given(given.clone())
        .at(at + hours(1))
        .by(channel_manager())
        .when(deal.approve())
        .then_error(RejectionCode::InvalidTransition);
    // Decided is decided: no second decision, no second appeal.
    Scenario::given(given.clone())
        .at(at + hours(1))
        .by(channel_manager())
        .when(deal.decide_appeal(true))
        .then_error(RejectionCode::InvalidTransition);
    Scenario::given(given)
        .at(at + hours(1))
        .by(partner.user())
        .when(deal.appeal())
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn there_is_nothing_to_decide_without_an_appeal() {
    let (partner, deal) = declined_deal();
    Scenario::given(history([partner.events(), deal.declined()]))
        .by(channel_manager())
        .when(deal.decide_appeal(true))
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn appeals_are_decided_by_a_channel_manager_with_a_rationale() {
    let (partner, deal) = declined_deal();
    for actor in [partner.user(), revops(), timekeeper()] {
        Scenario::given(appealed(&partner, &deal))
            .by(actor)
            .when(deal.decide_appeal(true))
            .then_error(RejectionCode::NotAuthorised);
    }
    let err = Scenario::given(appealed(&partner, &deal))
        .by(channel_manager())
        .when(Command::DecideAppeal(DecideAppeal {
            account: "acme.com".into(),
            registration_id: deal.id,
            upheld: false,
            rationale: "".into(),
        }))
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "rationale");
}
