//! docs/RULES.md, "Partner facts the rules read": certification gates the right to register
//! and to partner pricing. It is checked whenever protection is granted or extended, not
//! only at submission.

mod fixtures;
use fixtures::*;

/// A reseller whose analytics certification runs out on the day of `t0()`.
fn expiring_reseller() -> TestPartner {
    TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 10)
        .certified_in("analytics", t0().date_naive())
}

#[test]
fn a_registration_submitted_on_the_certifications_last_day_is_not_approved_the_day_after() {
    let partner = expiring_reseller();
    let deal = Deal::new(&partner, Motion::Reseller);
    assert!(deal.certified, "certified on the day it was submitted");
    let err = Scenario::given(history([partner.events(), deal.submitted()]))
        .at(t0() + days(1))
        .by(channel_manager())
        .when(deal.approve())
        .then_error(RejectionCode::NotCertified);
    assert_eq!(err.details["product_line"], "analytics");
    assert_eq!(err.details["expired_on"], json!(t0().date_naive()));
    assert!(err.message.contains("recertify"), "{}", err.message);
    // The same day it is still current.
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(t0() + hours(8))
        .by(channel_manager())
        .when(deal.approve())
        .then_ok();
}

#[test]
fn protection_is_not_extended_for_a_partner_whose_certification_ran_out() {
    let partner = expiring_reseller();
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(t0() + days(85))
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::NotCertified);
}

#[test]
fn a_renewed_certification_lets_the_approval_through() {
    let partner = expiring_reseller();
    let deal = Deal::new(&partner, Motion::Reseller);
    let renewed = Event::PartnerCertified {
        partner_id: partner.id,
        product_line: "analytics".into(),
        expires_on: far_future(),
        at: t0() + hours(20),
    };
    Scenario::given(history([partner.events(), deal.submitted(), vec![renewed]]))
        .at(t0() + days(1))
        .by(channel_manager())
        .when(deal.approve())
        .then_ok();
}

#[test]
fn motions_the_policy_does_not_certify_are_not_gated() {
    let partner = referrer(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Referral);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(t0() + hours(20))
        .by(channel_manager())
        .when(deal.approve())
        .then_ok();
}
