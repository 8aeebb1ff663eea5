//! docs/RULES.md, "Partner facts the rules read" (motions, tier, certifications, territories,
//! capacity, status; offboarding releases what is open, nothing is lost), and the program
//! policy: versioned, and every decision records the version it applied.

mod fixtures;
use fixtures::*;

use dealreg_domain::Territory;
use uuid::Uuid;

fn onboard(id: PartnerId, capacity: u32) -> Command {
    Command::OnboardPartner(OnboardPartner {
        partner_id: id,
        name: "  Contoso Consulting ".into(),
        motions: vec![Motion::Reseller, Motion::Referral, Motion::Reseller],
        tier: Tier::Silver,
        territories: vec![Territory {
            region: "EMEA".into(),
            vertical: "manufacturing".into(),
        }],
        capacity,
    })
}

// -------------------------------------------------------------------- onboarding

#[test]
fn onboarding_records_the_agreement_with_its_motions_once_each() {
    let id = PartnerId(Uuid::now_v7());
    Scenario::given(vec![])
        .when(onboard(id, 25))
        .then(vec![Event::PartnerOnboarded {
            partner_id: id,
            name: "Contoso Consulting".into(),
            motions: vec![Motion::Referral, Motion::Reseller],
            tier: Tier::Silver,
            territories: vec![Territory {
                region: "EMEA".into(),
                vertical: "manufacturing".into(),
            }],
            capacity: 25,
            at: t0(),
        }]);
}

#[test]
fn a_partner_is_onboarded_once() {
    let partner = reseller(Tier::Gold);
    Scenario::given(partner.events())
        .when(onboard(partner.id, 25))
        .then_error(RejectionCode::PartnerExists);
}

#[test]
fn onboarding_needs_a_name_a_motion_and_some_capacity() {
    let id = PartnerId(Uuid::now_v7());
    let err = Scenario::given(vec![])
        .when(onboard(id, 0))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "capacity");
    let mut nameless = onboard(id, 5);
    if let Command::OnboardPartner(OnboardPartner { name, .. }) = &mut nameless {
        *name = " ".into();
    }
    let err = Scenario::given(vec![])
        .when(nameless)
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "name");
    let mut motionless = onboard(id, 5);
    if let Command::OnboardPartner(OnboardPartner { motions, .. }) = &mut motionless {
        motions.clear();
    }
    let err = Scenario::given(vec![])
        .when(motionless)
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "motions");
}

// ---------------------------------------------------------------- partner facts

#[test]
fn a_tier_change_records_both_tiers_and_the_reason() {
    let partner = reseller(Tier::Gold);
    Scenario::given(partner.events())
        .when(Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: partner.id,
            tier: Tier::Platinum,
            reason: "annual review".into(),
        }))
        .then(vec![Event::PartnerTierChanged {
            partner_id: partner.id,
            from: Tier::Gold,
            to: Tier::Platinum,
            reason: "annual review".into(),
            at: t0(),
        }]);
}

#[test]
fn a_tier_change_to_the_same_tier_or_without_reason_is_refused() {
    let partner = reseller(Tier::Gold);
    Scenario::given(partner.events())
        .when(Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: partner.id,
            tier: Tier::Gold,
            reason: "annual review".into(),
        }))
        .then_error(RejectionCode::InvalidTransition);
    Scenario::given(partner.events())
        .when(Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: partner.id,
            tier: Tier::Silver,
            reason: "".into(),
        }))
        .then_error(RejectionCode::MissingField);
}

fn certify(partner: PartnerId, line: &str, expires_on: NaiveDate) -> Command {
    Command::CertifyPartner(CertifyPartner {
        partner_id: partner,
        product_line: line.into(),
        expires_on,
    })
}

#[test]
fn a_certification_is_recorded_per_product_line_with_its_last_day() {
    let partner = reseller(Tier::Gold);
    let last_day = date("2027-03-31");
    Scenario::given(partner.events())
        .when(certify(partner.id, "  Data Platform ", last_day))
        .then(vec![Event::PartnerCertified {
            partner_id: partner.id,
            product_line: "data platform".into(),
            expires_on: last_day,
            at: t0(),
        }]);
}

#[test]
fn a_certification_that_ends_today_is_accepted_but_one_already_ended_is_not() {
    let partner = reseller(Tier::Gold);
    Scenario::given(partner.events())
        .when(certify(partner.id, "platform", t0().date_naive()))
        .then_ok();
    let err = Scenario::given(partner.events())
        .when(certify(partner.id, "platform", t0().date_naive() - days(1)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "expires_on");
}

#[test]
fn a_new_certification_lets_the_partner_register_in_that_line() {
    let partner = reseller(Tier::Gold);
    let certified = Scenario::given(partner.events())
        .when(certify(partner.id, "platform", far_future()))
        .then_ok();
    let deal = Deal::new(&partner, Motion::Reseller).line(&partner, "platform");
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then_error(RejectionCode::NotCertified);
    Scenario::given(history([partner.events(), certified]))
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
}

#[test]
fn capacity_is_set_to_at_least_one() {
    let partner = reseller(Tier::Gold);
    Scenario::given(partner.events())
        .when(Command::SetCapacity(SetCapacity {
            partner_id: partner.id,
            capacity: 40,
        }))
        .then(vec![Event::PartnerCapacitySet {
            partner_id: partner.id,
            capacity: 40,
            at: t0(),
        }]);
    let err = Scenario::given(partner.events())
        .when(Command::SetCapacity(SetCapacity {
            partner_id: partner.id,
            capacity: 0,
        }))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "capacity");
}

#[test]
fn a_raised_capacity_makes_room_for_another_registration() {
    let partner = TestPartner::onboarded(&[Motion::Reseller], Tier::Gold, 1)
        .certified_in("analytics", far_future())
        .with_open_slots(1);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then_error(RejectionCode::CapacityReached);
    let raised = partner.clone().then(Event::PartnerCapacitySet {
        partner_id: partner.id,
        capacity: 2,
        at: t0(),
    });
    Scenario::given(raised.events())
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
}

#[test]
fn territories_are_recorded_as_given() {
    let partner = reseller(Tier::Gold);
    let territories = vec![Territory {
        region: "NA".into(),
        vertical: "healthcare".into(),
    }];
    Scenario::given(partner.events())
        .when(Command::SetTerritories(SetTerritories {
            partner_id: partner.id,
            territories: territories.clone(),
        }))
        .then(vec![Event::PartnerTerritoriesSet {
            partner_id: partner.id,
            territories,
            at: t0(),
        }]);
}

#[test]
fn an_unknown_partner_cannot_be_changed() {
    let id = PartnerId(Uuid::now_v7());
    for command in [
        certify(id, "analytics", far_future()),
        Command::SetCapacity(SetCapacity {
            partner_id: id,
            capacity: 3,
        }),
        Command::OffboardPartner(OffboardPartner {
            partner_id: id,
            reason: "never joined".into(),
        }),
    ] {
        Scenario::given(vec![])
            .when(command)
            .then_error(RejectionCode::UnknownPartner);
    }
}

// ------------------------------------------------------------------- offboarding

#[test]
fn offboarding_lists_the_registrations_still_open() {
    let partner = reseller(Tier::Gold);
    let [one, two, three] = [
        RegistrationId(Uuid::from_u128(1)),
        RegistrationId(Uuid::from_u128(2)),
        RegistrationId(Uuid::from_u128(3)),
    ];
    let slot = |id: RegistrationId, account: &str| Event::CapacitySlotTaken {
        partner_id: partner.id,
        registration_id: id,
        account: AccountKey(account.into()),
        at: t0(),
    };
    let given = history([
        partner.events(),
        vec![
            slot(three, "initech.com"),
            slot(one, "acme.com"),
            slot(two, "globex.com"),
            Event::CapacitySlotReleased {
                partner_id: partner.id,
                registration_id: two,
                account: AccountKey("globex.com".into()),
                // `two` holds the partner's third slot.
                slot: Some(3),
                at: t0(),
            },
        ],
    ]);
    Scenario::given(given)
        .when(Command::OffboardPartner(OffboardPartner {
            partner_id: partner.id,
            reason: "agreement ended".into(),
        }))
        .then(vec![Event::PartnerOffboarded {
            partner_id: partner.id,
            reason: "agreement ended".into(),
            open_registrations: vec![
                OpenSlot {
                    registration_id: one,
                    account: acme(),
                },
                OpenSlot {
                    registration_id: three,
                    account: AccountKey("initech.com".into()),
                },
            ],
            at: t0(),
        }]);
}

#[test]
fn an_offboarded_partners_record_is_closed() {
    let gone = reseller(Tier::Gold).offboarded();
    for command in [
        Command::OffboardPartner(OffboardPartner {
            partner_id: gone.id,
            reason: "again".into(),
        }),
        Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: gone.id,
            tier: Tier::Platinum,
            reason: "late review".into(),
        }),
        certify(gone.id, "platform", far_future()),
    ] {
        Scenario::given(gone.events())
            .when(command)
            .then_error(RejectionCode::PartnerNotActive);
    }
}

#[test]
fn releasing_a_registration_closes_it_and_frees_its_slot() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let at = t0() + days(5);
    let released = Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(timekeeper())
        .when(deal.release())
        .then(vec![
            Event::RegistrationReleased {
                account: acme(),
                registration_id: deal.id,
                partner_id: partner.id,
                reason: "partner offboarded".into(),
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
    let given = history([partner.events(), deal.approved(), released]);
    Scenario::given(given.clone())
        .at(at)
        .by(timekeeper())
        .when(deal.release())
        .then_error(RejectionCode::AlreadyRecorded);
    // The line is free for another partner: nothing stays locked by a partner who left.
    let successor = reseller(Tier::Gold);
    let takeover = Deal::new(&successor, Motion::Reseller).submitted_at(at);
    Scenario::given(history([given, successor.events()]))
        .at(at)
        .by(successor.user())
        .when(takeover.submit())
        .then(takeover.submitted());
}

#[test]
fn registrations_are_released_by_the_system_or_a_channel_manager() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), deal.submitted()]);
    Scenario::given(given.clone())
        .by(channel_manager())
        .when(deal.release())
        .then_ok();
    for actor in [partner.user(), revops(), direct_sales()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(deal.release())
            .then_error(RejectionCode::NotAuthorised);
    }
}

// ------------------------------------------------------------ commission payouts

#[test]
fn finance_records_payouts_even_after_offboarding() {
    let gone = reseller(Tier::Gold).offboarded();
    let payout = |amount: Money| {
        Command::RecordCommissionPayout(RecordCommissionPayout {
            partner_id: gone.id,
            amount,
            reference: "PAY-2026-0042".into(),
        })
    };
    Scenario::given(gone.events())
        .by(revops())
        .when(payout(usd(125_000)))
        .then(vec![Event::CommissionPaidOut {
            partner_id: gone.id,
            amount: usd(125_000),
            reference: "PAY-2026-0042".into(),
            at: t0(),
        }]);
    Scenario::given(gone.events())
        .by(revops())
        .when(payout(usd(0)))
        .then_error(RejectionCode::InvalidField);
    Scenario::given(gone.events())
        .by(channel_manager())
        .when(payout(usd(1)))
        .then_error(RejectionCode::NotAuthorised);
}

// ------------------------------------------------------------------------ policy

fn adopt(policy: Policy) -> Command {
    Command::AdoptPolicy(AdoptPolicy { policy })
}

fn adopted(version: u32) -> Event {
    Event::PolicyAdopted {
        policy: policy_version(version),
        at: t0() - days(60),
    }
}

#[test]
fn the_first_policy_is_adopted() {
    Scenario::given(vec![])
        .by(revops())
        .when(adopt(policy_version(1)))
        .then(vec![Event::PolicyAdopted {
            policy: policy_version(1),
            at: t0(),
        }]);
}

#[test]
fn a_newer_policy_version_is_adopted() {
    Scenario::given(vec![adopted(1)])
        .by(revops())
        .when(adopt(policy_version(2)))
        .then(vec![Event::PolicyAdopted {
            policy: policy_version(2),
            at: t0(),
        }]);
}

#[test]
fn the_same_or_an_older_policy_version_is_refused() {
    for version in [3, 2] {
        let err = Scenario::given(vec![adopted(2), adopted(3)])
            .by(revops())
            .when(adopt(policy_version(version)))
            .then_error(RejectionCode::PolicyVersionNotNewer);
        assert_eq!(err.details, json!({ "current_version": 3 }), "{version}");
    }
}

#[test]
fn a_policy_whose_numbers_do_not_fit_together_is_refused() {
    let mut short_window = policy_version(2);
    short_window.protection.default_days = 5;
    for broken in [policy_version(0), short_window] {
        Scenario::given(vec![adopted(1)])
            .by(revops())
            .when(adopt(broken))
            .then_error(RejectionCode::InvalidPolicy);
    }
}

#[test]
fn policies_are_adopted_by_revops_a_channel_manager_or_the_system() {
    for actor in [revops(), channel_manager(), timekeeper()] {
        Scenario::given(vec![adopted(1)])
            .by(actor)
            .when(adopt(policy_version(2)))
            .then_ok();
    }
    let partner = reseller(Tier::Gold);
    for actor in [auditor(), direct_sales(), partner.user()] {
        Scenario::given(vec![adopted(1)])
            .by(actor)
            .when(adopt(policy_version(2)))
            .then_error(RejectionCode::NotAuthorised);
    }
}

/// Runs `command` under policy version 7 and returns what it decided.
fn under_v7(given: Vec<Event>, at: DateTime<Utc>, actor: Actor, command: Command) -> Vec<Event> {
    Scenario::given(given)
        .with_policy(policy_version(7))
        .at(at)
        .by(actor)
        .when(command)
        .then_ok()
}

#[test]
fn every_decision_event_records_the_policy_version_in_force() {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let deal = Deal::new(&a, Motion::Reseller);
    let rival = Deal::new(&b, Motion::Reseller).submitted_at(t0() + hours(1));
    let base = history([a.events(), b.events()]);
    let approved = history([base.clone(), deal.approved()]);
    let sourced = history([approved.clone(), vec![deal.sourcing_set_by_partner()]]);
    let conflict_id = ConflictId("acme.com/analytics/1".into());
    let with_conflict = history([
        base.clone(),
        deal.submitted(),
        vec![conflict_detected(
            1,
            ConflictKind::Horizontal,
            vec![deal.party(), rival.party()],
            "2 reseller partners registered `analytics` at acme.com",
            t0(),
        )],
    ]);
    let won = history([base.clone(), deal.won(usd(1_000_000))]);
    let appealed = history([
        base.clone(),
        deal.declined(),
        vec![deal.appeal_filed(deal.declined_at() + hours(1))],
    ]);
    let renews = deal.won_at().date_naive() + days(365);

    let mut decided = Vec::new();
    let mut run = |given: &Vec<Event>, at, actor, command| {
        decided.extend(under_v7(given.clone(), at, actor, command));
    };
    let conflicting = history([base.clone(), deal.submitted()]);
    run(&conflicting, t0() + hours(1), b.user(), rival.submit());
    run(
        &conflicting,
        t0() + hours(1),
        channel_manager(),
        deal.approve(),
    );
    run(
        &conflicting,
        t0() + hours(1),
        channel_manager(),
        deal.decline(),
    );
    run(
        &conflicting,
        t0() + hours(48),
        timekeeper(),
        deal.flag_sla(),
    );
    run(&approved, t0() + days(80), channel_manager(), deal.extend());
    run(&approved, t0() + days(90), timekeeper(), deal.expire());
    run(&approved, t0() + days(83), timekeeper(), deal.remind());
    run(
        &approved,
        t0() + days(30),
        timekeeper(),
        deal.flag_inactive(),
    );
    run(&approved, t0() + days(1), a.user(), deal.mark_lost());
    run(
        &appealed,
        t0() + days(2),
        channel_manager(),
        deal.decide_appeal(true),
    );
    run(
        &sourced,
        t0() + days(1),
        a.user(),
        deal.advance("qualification", note("budget confirmed")),
    );
    let at_closing = history([sourced.clone(), deal.to_closing_stage()]);
    run(
        &at_closing,
        t0() + days(5),
        channel_manager(),
        deal.mark_won(usd(10)),
    );
    run(
        &with_conflict,
        t0() + hours(24),
        timekeeper(),
        Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
            account: "acme.com".into(),
            conflict_id,
            sla: ConflictSla::Acknowledgement,
        }),
    );
    run(
        &won,
        midnight(renews - days(90)),
        timekeeper(),
        Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
            account: "acme.com".into(),
            product_line: "analytics".into(),
        }),
    );
    run(
        &won,
        t0() + days(60),
        channel_manager(),
        Command::ConfirmRenewalOwnership(ConfirmRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            renewal_date: renews,
        }),
    );

    let mut versioned: Vec<&str> = Vec::new();
    for event in &decided {
        if let Some(version) = recorded_policy_version(event) {
            assert_eq!(
                version,
                7,
                "{} recorded policy {version}",
                event.event_type()
            );
            versioned.push(event.event_type());
        }
    }
    versioned.sort();
    versioned.dedup();
    assert_eq!(
        versioned,
        vec![
            "appeal_decided",
            "approval_sla_breached",
            "conflict_detected",
            "conflict_sla_breached",
            "deal_lost",
            "deal_won",
            "expiry_reminder_sent",
            "protection_expired",
            "protection_extended",
            "registration_approved",
            "registration_declined",
            "registration_flagged_inactive",
            "registration_submitted",
            "renewal_ownership_confirmed",
            "renewal_ownership_review_due",
            "stage_advanced",
        ]
    );
}
