//! docs/RULES.md, registration policy 1 (eligibility) and 8 (uniqueness): what a submission
//! needs, which partners may submit, and one protected registration per customer and
//! product line.

mod fixtures;
use fixtures::*;

// ------------------------------------------------------------------ a good submission

#[test]
fn a_complete_submission_is_recorded_with_its_approval_deadline_and_capacity_slot() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then(vec![
            Event::RegistrationSubmitted {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                customer: deal.customer().on_record(),
                product_line: "analytics".into(),
                motion: Motion::Reseller,
                kind: DealKind::NewBusiness,
                estimated_amount: usd(5_000_000),
                expected_close: date("2026-06-30"),
                proof_of_work: PROOF.into(),
                certified: true,
                incumbent: false,
                approval_due_at: t0() + hours(48),
                intro_due_at: None,
                policy_version: 1,
                at: t0(),
            },
            Event::CapacitySlotTaken {
                partner_id: partner.id,
                registration_id: deal.id,
                account: acme(),
                at: t0(),
            },
        ]);
}

#[test]
fn a_channel_manager_may_submit_on_a_partners_behalf() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(channel_manager())
        .when(deal.submit())
        .then(deal.submitted());
}

#[test]
fn the_same_registration_id_cannot_be_submitted_twice() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let again = deal.clone().line(&partner, "security");
    Scenario::given(history([partner.events(), deal.submitted()]))
        .by(partner.user())
        .when(again.submit())
        .then_error(RejectionCode::RegistrationExists);
}

// ----------------------------------------------------------------- required fields

fn assert_missing(field: &str, blank: impl FnOnce(&mut Submission)) {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(blank))
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details, json!({ "field": field }));
}

#[test]
fn a_missing_customer_company_is_named() {
    assert_missing("customer.company", |s| s.customer.company.clear());
}

#[test]
fn a_blank_contact_name_is_named() {
    assert_missing("customer.contact.name", |s| {
        s.customer.contact.name = "   ".into()
    });
}

#[test]
fn a_missing_contact_email_is_named() {
    assert_missing("customer.contact.email", |s| {
        s.customer.contact.email.clear()
    });
}

#[test]
fn a_missing_product_line_is_named() {
    assert_missing("product_line", |s| s.product_line = " ".into());
}

#[test]
fn a_missing_proof_of_work_is_named() {
    assert_missing("proof_of_work", |s| s.proof_of_work.clear());
}

// ------------------------------------------------------------------ invalid fields

fn invalid_field_of(spoil: impl FnOnce(&mut Submission)) -> DomainError {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(spoil))
        .then_error(RejectionCode::InvalidField)
}

#[test]
fn an_email_address_that_is_not_one_is_invalid() {
    for bad in [
        "dana",
        "dana@",
        "@acme.com",
        "dana@acme",
        "da na@acme.com",
        "a@b@acme.com",
    ] {
        let err = invalid_field_of(|s| s.customer.contact.email = bad.into());
        assert_eq!(err.details["field"], "customer.contact.email", "{bad}");
    }
}

#[test]
fn a_zero_or_negative_estimated_amount_is_invalid() {
    for minor in [0, -1] {
        let err = invalid_field_of(|s| s.estimated_amount = usd(minor));
        assert_eq!(err.details["field"], "estimated_amount", "{minor}");
    }
}

#[test]
fn an_expected_close_date_in_the_past_is_invalid_but_today_is_fine() {
    let yesterday = t0().date_naive() - days(1);
    let err = invalid_field_of(|s| s.expected_close = yesterday);
    assert_eq!(err.details["field"], "expected_close");

    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(|s| s.expected_close = t0().date_naive()))
        .then_ok();
}

#[test]
fn a_customer_domain_that_is_not_a_domain_is_invalid() {
    let partner = reseller(Tier::Gold);
    for bad in [
        "",
        "not a domain",
        "localhost",
        "co.uk",
        "acme..com",
        "-acme.com",
    ] {
        let deal = Deal::new(&partner, Motion::Reseller);
        let err = Scenario::given(partner.events())
            .by(partner.user())
            .when(deal.submit_with(|s| s.customer.domain = bad.into()))
            .then_error(RejectionCode::InvalidField);
        assert_eq!(err.details["field"], "customer.domain", "{bad}");
    }
}

// ----------------------------------------------------------------- partner gates

#[test]
fn a_partner_that_was_never_onboarded_cannot_register() {
    let stranger = reseller(Tier::Gold);
    let deal = Deal::new(&stranger, Motion::Reseller);
    let err = Scenario::given(vec![])
        .by(channel_manager())
        .when(deal.submit())
        .then_error(RejectionCode::UnknownPartner);
    assert_eq!(err.details["partner_id"], json!(stranger.id));
}

#[test]
fn an_offboarded_partner_is_not_active_and_cannot_register() {
    let gone = reseller(Tier::Gold).offboarded();
    let deal = Deal::new(&gone, Motion::Reseller);
    Scenario::given(gone.events())
        .by(gone.user())
        .when(deal.submit())
        .then_error(RejectionCode::PartnerNotActive);
}

#[test]
fn a_motion_outside_the_partners_agreement_is_refused() {
    let partner = referrer(Tier::Gold).certified_in("analytics", far_future());
    let deal = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then_error(RejectionCode::MotionNotInAgreement);
    assert_eq!(err.details["motions"], json!(["referral"]));
}

// ----------------------------------------------------------------- certification

#[test]
fn a_reseller_registration_needs_a_certification_in_its_product_line() {
    let partner = reseller(Tier::Gold);
    let uncertified_line = Deal::new(&partner, Motion::Reseller).line(&partner, "platform");
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .when(uncertified_line.submit())
        .then_error(RejectionCode::NotCertified);
    assert_eq!(err.details["product_line"], "platform");
}

#[test]
fn a_referral_registration_needs_no_certification_and_records_that_it_had_none() {
    let partner = referrer(Tier::Silver);
    let deal = Deal::new(&partner, Motion::Referral);
    assert!(!deal.certified);
    let events = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then(deal.submitted());
    assert!(matches!(
        events[0],
        Event::RegistrationSubmitted {
            certified: false,
            ..
        }
    ));
}

#[test]
fn a_certification_is_valid_through_its_expiry_day() {
    let last_day = t0().date_naive() + days(10);
    let partner = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 10)
        .certified_in("analytics", last_day);
    let deal = Deal::new(&partner, Motion::Reseller);
    // 23:59:59 on the last day still counts.
    let late_on_last_day = midnight(last_day) + days(1) - secs(1);
    Scenario::given(partner.events())
        .by(partner.user())
        .at(late_on_last_day)
        .when(deal.submit())
        .then_ok();
}

#[test]
fn a_certification_has_expired_the_day_after_its_expiry_date() {
    let last_day = t0().date_naive() + days(10);
    let partner = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 10)
        .certified_in("analytics", last_day);
    let deal = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .at(midnight(last_day) + days(1))
        .when(deal.submit())
        .then_error(RejectionCode::NotCertified);
    assert_eq!(err.details["expired_on"], json!(last_day));
}

// --------------------------------------------------------------------- capacity

#[test]
fn a_partner_with_every_slot_taken_has_reached_its_capacity() {
    let full = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 3)
        .certified_in("analytics", far_future())
        .with_open_slots(3);
    let deal = Deal::new(&full, Motion::Reseller);
    let err = Scenario::given(full.events())
        .by(full.user())
        .when(deal.submit())
        .then_error(RejectionCode::CapacityReached);
    assert_eq!(err.details["capacity"], 3);
}

#[test]
fn one_slot_below_capacity_a_partner_may_still_register() {
    let partner = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 3)
        .certified_in("analytics", far_future())
        .with_open_slots(2);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then(deal.submitted());
}

#[test]
fn a_released_slot_frees_capacity_again() {
    let partner = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 1)
        .certified_in("analytics", far_future());
    let earlier = Deal::new(&partner, Motion::Reseller).on("globex.com");
    let deal = Deal::new(&partner, Motion::Reseller);
    let full = history([partner.events(), vec![earlier.slot_taken(t0())]]);
    Scenario::given(full.clone())
        .by(partner.user())
        .when(deal.submit())
        .then_error(RejectionCode::CapacityReached);
    Scenario::given(history([full, vec![earlier.slot_released(t0())]]))
        .by(partner.user())
        .when(deal.submit())
        .then(deal.submitted());
}

// -------------------------------------------------------------------- uniqueness

#[test]
fn a_protected_line_refuses_a_second_registration_naming_the_protector() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Platinum);
    let protected = Deal::new(&holder, Motion::Reseller);
    let late = Deal::new(&rival, Motion::Reseller);
    let err = Scenario::given(history([
        holder.events(),
        rival.events(),
        protected.approved(),
    ]))
    .by(rival.user())
    .when(late.submit())
    .then_error(RejectionCode::DuplicateRegistration);
    assert_eq!(
        err.details,
        json!({ "protected_by": protected.id, "expires_at": protected.expires_at() })
    );
}

#[test]
fn subdomains_www_and_urls_of_the_customer_domain_are_the_same_account() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Gold);
    let protected = Deal::new(&holder, Motion::Reseller);
    let given = history([holder.events(), rival.events(), protected.approved()]);
    for spelling in [
        "www.acme.com",
        "eu.sales.acme.com",
        "https://www.ACME.com/contact?ref=1",
        "dana@acme.com",
        "acme.com.",
    ] {
        let late = Deal::new(&rival, Motion::Reseller).on(spelling);
        assert_eq!(late.account, acme(), "{spelling}");
        let err = Scenario::given(given.clone())
            .by(rival.user())
            .when(late.submit())
            .then_error(RejectionCode::DuplicateRegistration);
        assert_eq!(
            err.details["protected_by"],
            json!(protected.id),
            "{spelling}"
        );
    }
}

#[test]
fn a_look_alike_domain_is_another_customer() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Gold);
    let protected = Deal::new(&holder, Motion::Reseller);
    let other_customer = Deal::new(&rival, Motion::Reseller).on("acme-robotics.com");
    Scenario::given(history([
        holder.events(),
        rival.events(),
        protected.approved(),
    ]))
    .by(rival.user())
    .when(other_customer.submit())
    .then(other_customer.submitted());
}

#[test]
fn product_line_spellings_are_the_same_line() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Gold);
    let protected = Deal::new(&holder, Motion::Reseller);
    for spelling in ["Analytics", "  ANALYTICS "] {
        let late = Deal::new(&rival, Motion::Reseller).line(&rival, spelling);
        Scenario::given(history([
            holder.events(),
            rival.events(),
            protected.approved(),
        ]))
        .by(rival.user())
        .when(late.submit())
        .then_error(RejectionCode::DuplicateRegistration);
    }
}

#[test]
fn another_product_line_of_the_same_customer_is_free() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Gold);
    let protected = Deal::new(&holder, Motion::Reseller);
    let other_line = Deal::new(&rival, Motion::Reseller).line(&rival, "security");
    Scenario::given(history([
        holder.events(),
        rival.events(),
        protected.approved(),
    ]))
    .by(rival.user())
    .when(other_line.submit())
    .then(other_line.submitted());
}

#[test]
fn once_protection_expired_the_line_is_free_again_without_a_conflict() {
    let holder = reseller(Tier::Gold);
    let rival = reseller(Tier::Gold);
    let lapsed = Deal::new(&holder, Motion::Reseller);
    let next = Deal::new(&rival, Motion::Reseller).submitted_at(lapsed.expires_at());
    Scenario::given(history([holder.events(), rival.events(), lapsed.expired()]))
        .by(rival.user())
        .at(lapsed.expires_at())
        .when(next.submit())
        .then(next.submitted());
}

#[test]
fn expiry_clears_the_registered_partner_so_it_may_register_afresh() {
    let holder = reseller(Tier::Gold);
    let lapsed = Deal::new(&holder, Motion::Reseller);
    let again = Deal::new(&holder, Motion::Reseller).submitted_at(lapsed.expires_at());
    Scenario::given(history([holder.events(), lapsed.expired()]))
        .by(holder.user())
        .at(lapsed.expires_at())
        .when(again.submit())
        .then(again.submitted());
}

#[test]
fn a_partner_cannot_hold_two_open_registrations_on_one_line() {
    let partner = reseller(Tier::Gold);
    let pending = Deal::new(&partner, Motion::Reseller);
    let second = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(history([partner.events(), pending.submitted()]))
        .by(partner.user())
        .when(second.submit())
        .then_error(RejectionCode::DuplicateRegistration);
    assert_eq!(err.details["registration_id"], json!(pending.id));
}

#[test]
fn a_withdrawn_registration_no_longer_blocks_its_partner() {
    let partner = reseller(Tier::Gold);
    let first = Deal::new(&partner, Motion::Reseller);
    let withdrawn = Scenario::given(history([partner.events(), first.submitted()]))
        .by(partner.user())
        .when(first.withdraw())
        .then(vec![
            Event::RegistrationWithdrawn {
                account: acme(),
                registration_id: first.id,
                partner_id: partner.id,
                reason: "customer postponed".into(),
                at: t0(),
            },
            first.slot_released(t0()),
        ]);
    let second = Deal::new(&partner, Motion::Reseller);
    Scenario::given(history([partner.events(), first.submitted(), withdrawn]))
        .by(partner.user())
        .when(second.submit())
        .then(second.submitted());
}

// ------------------------------------------------------------------ slots nothing backs

/// A slot taken for a registration the account never recorded (its command was
/// interrupted between the two streams, on a backend without atomic appends) is given up
/// by the timekeeper alone, once: the account records that it will never use it and asks
/// for it back.
#[test]
fn a_slot_the_account_does_not_back_is_given_up_once_by_the_timekeeper_only() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let lapse = || {
        Command::LapseCapacitySlot(LapseCapacitySlot {
            account: "acme.com".into(),
            registration_id: deal.id,
            partner_id: partner.id,
            slot: 1,
        })
    };
    let taken = Event::CapacitySlotTaken {
        partner_id: partner.id,
        registration_id: deal.id,
        account: acme(),
        at: t0(),
    };
    let history = || partner.events().into_iter().chain([taken.clone()]);
    Scenario::given(history())
        .by(timekeeper())
        .when(lapse())
        .then(vec![
            Event::CapacitySlotLapsed {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                slot: 1,
                at: t0(),
            },
            Event::CapacitySlotReleased {
                partner_id: partner.id,
                registration_id: deal.id,
                account: acme(),
                slot: Some(1),
                at: t0(),
            },
        ]);
    Scenario::given(history())
        .by(channel_manager())
        .when(lapse())
        .then_error(RejectionCode::NotAuthorised);
    let lapsed = Event::CapacitySlotLapsed {
        account: acme(),
        registration_id: deal.id,
        partner_id: partner.id,
        slot: 1,
        at: t0(),
    };
    Scenario::given(history().chain([lapsed]))
        .by(timekeeper())
        .when(lapse())
        .then_error(RejectionCode::AlreadyRecorded);
    // A slot the account's registration holds is in use: never given up.
    Scenario::given(partner.events().into_iter().chain(deal.submitted()))
        .by(timekeeper())
        .when(lapse())
        .then_error(RejectionCode::AlreadyRecorded);
}
