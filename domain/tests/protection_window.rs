//! docs/RULES.md, registration policy 2 (protection window and extensions), 6 (SLAs: the
//! 48-hour decision, the 7-day expiry reminder) and 7 (inactivity).

mod fixtures;
use fixtures::*;

fn gold_reseller_deal() -> (TestPartner, Deal) {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    (partner, deal)
}

fn extended(deal: &Deal, number: u32, at: DateTime<Utc>, expires_at: DateTime<Utc>) -> Event {
    Event::ProtectionExtended {
        account: acme(),
        registration_id: deal.id,
        partner_id: deal.partner,
        extension_number: number,
        days: 30,
        expires_at,
        reason: "procurement slipped a month".into(),
        policy_version: 1,
        at,
    }
}

// ------------------------------------------------------------------ the window

#[test]
fn approval_protects_a_reseller_deal_for_90_days() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + hours(2);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(at)
        .by(channel_manager())
        .when(deal.approve())
        .then(vec![Event::RegistrationApproved {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            rationale: "qualified opportunity".into(),
            protection_days: 90,
            expires_at: t0() + hours(2) + days(90),
            policy_version: 1,
            at,
        }]);
}

#[test]
fn approval_protects_a_referral_for_60_days() {
    let partner = referrer(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Referral);
    let at = t0() + hours(5);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(at)
        .by(channel_manager())
        .when(deal.approve())
        .then(vec![Event::RegistrationApproved {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            rationale: "qualified opportunity".into(),
            protection_days: 60,
            expires_at: t0() + hours(5) + days(60),
            policy_version: 1,
            at,
        }]);
}

fn approved_days(partner: &TestPartner, motion: Motion, policy: &Policy) -> u32 {
    let deal = Deal::new(partner, motion);
    let events = Scenario::given(history([partner.events(), deal.submitted()]))
        .with_policy(policy.clone())
        .when(deal.approve())
        .then_ok();
    match &events[0] {
        Event::RegistrationApproved {
            protection_days,
            expires_at,
            ..
        } => {
            assert_eq!(*expires_at, t0() + days(i64::from(*protection_days)));
            *protection_days
        }
        other => panic!("expected an approval, got {other:?}"),
    }
}

#[test]
fn a_tier_entry_in_the_policy_sets_the_window_over_the_motions() {
    let mut policy = policy_version(2);
    policy.protection.by_tier.insert(Tier::Platinum, 120);
    let platinum_reseller = reseller(Tier::Platinum);
    let gold_reseller = reseller(Tier::Gold);
    let platinum_referrer = referrer(Tier::Platinum);
    let silver_referrer = referrer(Tier::Silver);
    assert_eq!(
        approved_days(&platinum_reseller, Motion::Reseller, &policy),
        120
    );
    assert_eq!(
        approved_days(&platinum_referrer, Motion::Referral, &policy),
        120
    );
    assert_eq!(approved_days(&gold_reseller, Motion::Reseller, &policy), 90);
    assert_eq!(
        approved_days(&silver_referrer, Motion::Referral, &policy),
        60
    );
}

#[test]
fn a_motion_entry_in_the_policy_sets_that_motions_window() {
    let mut policy = policy_version(2);
    policy.protection.by_motion.insert(Motion::Reseller, 75);
    let partner = reseller(Tier::Gold);
    assert_eq!(approved_days(&partner, Motion::Reseller, &policy), 75);
}

#[test]
fn only_a_pending_registration_can_be_approved_or_declined() {
    let (partner, deal) = gold_reseller_deal();
    for given in [deal.approved(), deal.declined()] {
        for command in [deal.approve(), deal.decline()] {
            Scenario::given(history([partner.events(), given.clone()]))
                .by(channel_manager())
                .when(command)
                .then_error(RejectionCode::InvalidTransition);
        }
    }
}

#[test]
fn an_approval_needs_a_rationale() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([partner.events(), deal.submitted()]))
        .by(channel_manager())
        .when(Command::ApproveRegistration(ApproveRegistration {
            account: "acme.com".into(),
            registration_id: deal.id,
            rationale: " ".into(),
        }))
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "rationale");
}

#[test]
fn an_unknown_registration_cannot_be_approved() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(partner.events())
        .by(channel_manager())
        .when(deal.approve())
        .then_error(RejectionCode::UnknownRegistration);
    assert_eq!(err.details["registration_id"], json!(deal.id));
}

// ------------------------------------------------------------------- extensions

#[test]
fn an_extension_adds_the_policys_30_days_to_the_current_expiry() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + days(80);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(channel_manager())
        .when(deal.extend())
        .then(vec![Event::ProtectionExtended {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            extension_number: 1,
            days: 30,
            expires_at: t0() + days(120),
            reason: "procurement slipped a month".into(),
            policy_version: 1,
            at,
        }]);
}

#[test]
fn a_second_extension_counts_from_the_extended_expiry() {
    let (partner, deal) = gold_reseller_deal();
    let first = extended(&deal, 1, t0() + days(80), t0() + days(120));
    let at = t0() + days(110);
    Scenario::given(history([partner.events(), deal.approved(), vec![first]]))
        .at(at)
        .by(channel_manager())
        .when(deal.extend())
        .then(vec![extended(&deal, 2, at, t0() + days(150))]);
}

#[test]
fn a_third_extension_is_over_the_default_limit_of_two() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([
        partner.events(),
        deal.approved(),
        vec![
            extended(&deal, 1, t0() + days(80), t0() + days(120)),
            extended(&deal, 2, t0() + days(110), t0() + days(150)),
        ],
    ]))
    .at(t0() + days(140))
    .by(channel_manager())
    .when(deal.extend())
    .then_error(RejectionCode::ExtensionLimit);
    assert_eq!(err.details, json!({ "extensions": 2, "max": 2 }));
}

#[test]
fn the_policy_sets_how_many_extensions_and_how_long_each_is() {
    let (partner, deal) = gold_reseller_deal();
    let mut policy = policy_version(3);
    policy.extensions.max_count = 1;
    policy.extensions.days = 45;
    let at = t0() + days(60);
    let events = Scenario::given(history([partner.events(), deal.approved()]))
        .with_policy(policy.clone())
        .at(at)
        .by(channel_manager())
        .when(deal.extend())
        .then_ok();
    let Event::ProtectionExtended {
        days: extension_days,
        expires_at,
        policy_version,
        ..
    } = &events[0]
    else {
        panic!("expected an extension, got {events:?}")
    };
    assert_eq!(
        (*extension_days, *expires_at, *policy_version),
        (45, t0() + days(135), 3)
    );
    let err = Scenario::given(history([partner.events(), deal.approved(), events]))
        .with_policy(policy)
        .at(at + days(1))
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::ExtensionLimit);
    assert_eq!(err.details, json!({ "extensions": 1, "max": 1 }));
}

#[test]
fn only_the_roles_the_policy_names_may_grant_an_extension() {
    let (partner, deal) = gold_reseller_deal();
    let given = history([partner.events(), deal.approved()]);
    let at = t0() + days(80);
    for actor in [partner.user(), revops(), direct_sales(), timekeeper()] {
        Scenario::given(given.clone())
            .at(at)
            .by(actor)
            .when(deal.extend())
            .then_error(RejectionCode::NotAuthorised);
    }
    let mut revops_grants = policy_version(2);
    revops_grants.extensions.granted_by = vec![VendorRole::RevOps];
    Scenario::given(given.clone())
        .with_policy(revops_grants.clone())
        .at(at)
        .by(revops())
        .when(deal.extend())
        .then_ok();
    Scenario::given(given)
        .with_policy(revops_grants)
        .at(at)
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn protection_cannot_be_extended_once_it_has_ended() {
    let (partner, deal) = gold_reseller_deal();
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(deal.expires_at())
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::InvalidTransition);
    Scenario::given(history([partner.events(), deal.expired()]))
        .at(deal.expires_at() - days(1))
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn a_pending_registration_has_no_protection_to_extend() {
    let (partner, deal) = gold_reseller_deal();
    Scenario::given(history([partner.events(), deal.submitted()]))
        .by(channel_manager())
        .when(deal.extend())
        .then_error(RejectionCode::InvalidTransition);
}

// ----------------------------------------------------------------------- expiry

#[test]
fn expiry_is_not_due_one_second_before_expires_at() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([partner.events(), deal.approved()]))
        .at(deal.expires_at() - secs(1))
        .by(timekeeper())
        .when(deal.expire())
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(t0() + days(90)));
}

#[test]
fn protection_expires_exactly_at_expires_at_and_frees_the_slot() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + days(90);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(timekeeper())
        .when(deal.expire())
        .then(vec![
            Event::ProtectionExpired {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                expired_at: t0() + days(90),
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
fn a_late_expiry_records_when_protection_really_ended() {
    let (partner, deal) = gold_reseller_deal();
    let events = Scenario::given(history([partner.events(), deal.approved()]))
        .at(deal.expires_at() + hours(3))
        .by(timekeeper())
        .when(deal.expire())
        .then_ok();
    assert!(matches!(
        &events[0],
        Event::ProtectionExpired { expired_at, at, .. }
            if *expired_at == deal.expires_at() && *at == deal.expires_at() + hours(3)
    ));
}

#[test]
fn an_extended_protection_is_not_due_at_its_original_expiry() {
    let (partner, deal) = gold_reseller_deal();
    let given = history([
        partner.events(),
        deal.approved(),
        vec![extended(&deal, 1, t0() + days(80), t0() + days(120))],
    ]);
    Scenario::given(given.clone())
        .at(deal.expires_at())
        .by(timekeeper())
        .when(deal.expire())
        .then_error(RejectionCode::NotDue);
    Scenario::given(given)
        .at(t0() + days(120))
        .by(timekeeper())
        .when(deal.expire())
        .then_ok();
}

#[test]
fn an_expired_registration_does_not_expire_twice() {
    let (partner, deal) = gold_reseller_deal();
    Scenario::given(history([partner.events(), deal.expired()]))
        .at(deal.expires_at() + days(1))
        .by(timekeeper())
        .when(deal.expire())
        .then_error(RejectionCode::InvalidTransition);
}

// ------------------------------------------------------------- expiry reminder

#[test]
fn the_expiry_reminder_is_not_due_before_seven_days_ahead() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([partner.events(), deal.approved()]))
        .at(t0() + days(83) - secs(1))
        .by(timekeeper())
        .when(deal.remind())
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(t0() + days(83)));
}

#[test]
fn the_expiry_reminder_is_sent_exactly_seven_days_before_expiry() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + days(83);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(timekeeper())
        .when(deal.remind())
        .then(vec![Event::ExpiryReminderSent {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            expires_at: t0() + days(90),
            policy_version: 1,
            at,
        }]);
}

fn reminded(deal: &Deal, expires_at: DateTime<Utc>) -> Event {
    Event::ExpiryReminderSent {
        account: acme(),
        registration_id: deal.id,
        partner_id: deal.partner,
        expires_at,
        policy_version: 1,
        at: expires_at - days(7),
    }
}

#[test]
fn the_reminder_for_one_expiry_is_sent_once() {
    let (partner, deal) = gold_reseller_deal();
    Scenario::given(history([
        partner.events(),
        deal.approved(),
        vec![reminded(&deal, deal.expires_at())],
    ]))
    .at(t0() + days(85))
    .by(timekeeper())
    .when(deal.remind())
    .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn an_extension_makes_a_new_reminder_due_before_the_new_expiry() {
    let (partner, deal) = gold_reseller_deal();
    let new_expiry = t0() + days(120);
    let given = history([
        partner.events(),
        deal.approved(),
        vec![
            reminded(&deal, deal.expires_at()),
            extended(&deal, 1, t0() + days(85), new_expiry),
        ],
    ]);
    let err = Scenario::given(given.clone())
        .at(t0() + days(86))
        .by(timekeeper())
        .when(deal.remind())
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(new_expiry - days(7)));
    Scenario::given(given)
        .at(new_expiry - days(7))
        .by(timekeeper())
        .when(deal.remind())
        .then(vec![reminded(&deal, new_expiry)]);
}

#[test]
fn a_pending_registration_gets_no_expiry_reminder() {
    let (partner, deal) = gold_reseller_deal();
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(t0() + days(85))
        .by(timekeeper())
        .when(deal.remind())
        .then_error(RejectionCode::InvalidTransition);
}

// ------------------------------------------------------------------- inactivity

#[test]
fn a_registration_untouched_for_30_days_is_flagged_inactive() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + days(30);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then(vec![Event::RegistrationFlaggedInactive {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            last_touch: t0(),
            policy_version: 1,
            at,
        }]);
}

#[test]
fn a_registration_touched_within_30_days_is_not_inactive() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([partner.events(), deal.approved()]))
        .at(t0() + days(30) - secs(1))
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(t0() + days(30)));
}

#[test]
fn a_stage_change_resets_the_inactivity_clock() {
    let (partner, deal) = gold_reseller_deal();
    let touched = t0() + days(20);
    let given = history([
        partner.events(),
        deal.approved(),
        vec![
            deal.sourcing_set_by_partner(),
            deal.stage_advanced("deal_registration", "qualification", touched),
        ],
    ]);
    Scenario::given(given.clone())
        .at(t0() + days(30))
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then_error(RejectionCode::NotDue);
    let events = Scenario::given(given)
        .at(touched + days(30))
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then_ok();
    assert!(matches!(
        &events[0],
        Event::RegistrationFlaggedInactive { last_touch, .. } if *last_touch == touched
    ));
}

#[test]
fn inactivity_is_flagged_once_per_touch() {
    let (partner, deal) = gold_reseller_deal();
    let flagged = Event::RegistrationFlaggedInactive {
        account: acme(),
        registration_id: deal.id,
        partner_id: partner.id,
        last_touch: t0(),
        policy_version: 1,
        at: t0() + days(30),
    };
    let given = history([partner.events(), deal.approved(), vec![flagged]]);
    Scenario::given(given.clone())
        .at(t0() + days(45))
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then_error(RejectionCode::AlreadyRecorded);
    // Touched again after the flag, then left alone for another 30 days: flagged anew.
    let touched = t0() + days(40);
    Scenario::given(history([
        given,
        vec![deal.stage_advanced("deal_registration", "qualification", touched)],
    ]))
    .at(touched + days(30))
    .by(timekeeper())
    .when(deal.flag_inactive())
    .then_ok();
}

#[test]
fn the_inactivity_threshold_comes_from_the_policy() {
    let (partner, deal) = gold_reseller_deal();
    let mut policy = policy_version(2);
    policy.timing.inactivity_days = 14;
    Scenario::given(history([partner.events(), deal.approved()]))
        .with_policy(policy)
        .at(t0() + days(14))
        .by(timekeeper())
        .when(deal.flag_inactive())
        .then_ok();
}

// ---------------------------------------------------------------- approval SLA

#[test]
fn the_approval_sla_is_not_breached_before_48_hours() {
    let (partner, deal) = gold_reseller_deal();
    let err = Scenario::given(history([partner.events(), deal.submitted()]))
        .at(t0() + hours(48) - secs(1))
        .by(timekeeper())
        .when(deal.flag_sla())
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(t0() + hours(48)));
}

#[test]
fn the_approval_sla_is_breached_exactly_at_48_hours() {
    let (partner, deal) = gold_reseller_deal();
    let at = t0() + hours(48);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .at(at)
        .by(timekeeper())
        .when(deal.flag_sla())
        .then(vec![Event::ApprovalSlaBreached {
            account: acme(),
            registration_id: deal.id,
            partner_id: partner.id,
            due_at: t0() + hours(48),
            policy_version: 1,
            at,
        }]);
}

#[test]
fn an_approval_sla_breach_is_recorded_once() {
    let (partner, deal) = gold_reseller_deal();
    let breach = Event::ApprovalSlaBreached {
        account: acme(),
        registration_id: deal.id,
        partner_id: partner.id,
        due_at: t0() + hours(48),
        policy_version: 1,
        at: t0() + hours(48),
    };
    Scenario::given(history([partner.events(), deal.submitted(), vec![breach]]))
        .at(t0() + hours(72))
        .by(timekeeper())
        .when(deal.flag_sla())
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn a_decided_registration_cannot_breach_the_approval_sla() {
    let (partner, deal) = gold_reseller_deal();
    for decided in [deal.approved(), deal.declined()] {
        Scenario::given(history([partner.events(), decided]))
            .at(t0() + hours(72))
            .by(timekeeper())
            .when(deal.flag_sla())
            .then_error(RejectionCode::InvalidTransition);
    }
}
