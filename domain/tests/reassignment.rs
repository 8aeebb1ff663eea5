//! docs/RULES.md, registration policy 7: a registration with no touch for the inactivity
//! threshold (30 days) is flagged and may be reassigned; offboarding's open registrations
//! may be transferred the same way. The capacity slot moves with the registration.

mod fixtures;
use fixtures::*;

fn flagged_inactive(deal: &Deal) -> Event {
    Event::RegistrationFlaggedInactive {
        account: acme(),
        registration_id: deal.id,
        partner_id: deal.partner,
        last_touch: t0(),
        policy_version: 1,
        at: t0() + days(30),
    }
}

fn reassign(deal: &Deal, to: &TestPartner) -> Command {
    Command::ReassignRegistration(ReassignRegistration {
        account: "acme.com".into(),
        registration_id: deal.id,
        to_partner: to.id,
        reason: "no activity for 30 days".into(),
    })
}

fn quiet_deal() -> (TestPartner, TestPartner, Deal, Vec<Event>) {
    let from = reseller(Tier::Silver);
    let to = reseller(Tier::Gold);
    let deal = Deal::new(&from, Motion::Reseller);
    let given = history([from.events(), to.events(), deal.approved()]);
    (from, to, deal, given)
}

#[test]
fn an_inactive_registration_moves_to_another_partner_with_its_capacity_slot() {
    let (from, to, deal, given) = quiet_deal();
    let at = t0() + days(31);
    let events = Scenario::given(history([given, vec![flagged_inactive(&deal)]]))
        .at(at)
        .when(reassign(&deal, &to))
        .then_ok();
    assert_eq!(
        events,
        vec![
            Event::RegistrationReassigned {
                account: acme(),
                registration_id: deal.id,
                from: from.id,
                to: to.id,
                reason: "no activity for 30 days".into(),
                policy_version: 1,
                at,
            },
            deal.slot_released(at),
            Event::CapacitySlotTaken {
                partner_id: to.id,
                registration_id: deal.id,
                account: acme(),
                at,
            },
        ]
    );
    // Afterwards the new owner works the deal and the old one no longer sees it.
    let after = history([quiet_deal_history(&from, &to, &deal), events]);
    Scenario::given(after.clone())
        .at(at + hours(1))
        .by(from.user())
        .when(deal.withdraw())
        .then_error(RejectionCode::UnknownRegistration);
    Scenario::given(after)
        .at(at + hours(1))
        .by(to.user())
        .when(deal.withdraw())
        .then_ok();
}

fn quiet_deal_history(from: &TestPartner, to: &TestPartner, deal: &Deal) -> Vec<Event> {
    history([
        from.events(),
        to.events(),
        deal.approved(),
        vec![flagged_inactive(deal)],
    ])
}

#[test]
fn only_a_registration_flagged_inactive_since_its_last_touch_is_reassigned() {
    let (_, to, deal, given) = quiet_deal();
    Scenario::given(given.clone())
        .at(t0() + days(31))
        .when(reassign(&deal, &to))
        .then_error(RejectionCode::NotInactive);
    // Touched again after the flag: it is active again.
    let touched = deal.stage_advanced("deal_registration", "qualification", t0() + days(32));
    Scenario::given(history([given, vec![flagged_inactive(&deal), touched]]))
        .at(t0() + days(33))
        .when(reassign(&deal, &to))
        .then_error(RejectionCode::NotInactive);
}

#[test]
fn the_new_owner_must_be_able_to_hold_the_registration() {
    let (from, _, deal, _) = quiet_deal();
    let uncertified = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 10);
    let referral_only = referrer(Tier::Gold);
    let full = reseller(Tier::Gold).with_open_slots(10);
    for (to, code) in [
        (&uncertified, RejectionCode::NotCertified),
        (&referral_only, RejectionCode::MotionNotInAgreement),
        (&full, RejectionCode::CapacityReached),
    ] {
        let given = history([
            from.events(),
            to.events(),
            deal.approved(),
            vec![flagged_inactive(&deal)],
        ]);
        Scenario::given(given)
            .at(t0() + days(31))
            .when(reassign(&deal, to))
            .then_error(code);
    }
    let given = quiet_deal_history(&from, &from, &deal);
    Scenario::given(given.clone())
        .at(t0() + days(31))
        .by(from.user())
        .when(reassign(&deal, &from))
        .then_error(RejectionCode::NotAuthorised);
}
