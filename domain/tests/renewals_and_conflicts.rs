//! docs/RULES.md, "Conflict types and signals" (horizontal, multi-channel, vertical, unclear
//! renewal ownership; each conflict with parties, reasons and its own SLA), registration
//! policy 3 (the incumbent owns the renewal unless reassigned, confirmed at least 90 days
//! before renewal) and 6 (conflict acknowledged within 24 hours, resolution plan within 5
//! business days).

mod fixtures;
use fixtures::*;
use uuid::Uuid;

const TOM: &str = "tom.ae@vendor.example";

fn direct_opportunity(id: OpportunityId, line: &str) -> Command {
    Command::RecordDirectOpportunity(RecordDirectOpportunity {
        account: "acme.com".into(),
        opportunity_id: id,
        owner: TOM.into(),
        product_line: line.into(),
        amount: usd(9_000_000),
    })
}

fn direct_opportunity_recorded(id: OpportunityId, at: DateTime<Utc>) -> Event {
    Event::DirectOpportunityRecorded {
        account: acme(),
        opportunity_id: id,
        owner: TOM.into(),
        product_line: "analytics".into(),
        amount: usd(9_000_000),
        at,
    }
}

fn direct_party(id: OpportunityId) -> ConflictParty {
    ConflictParty::DirectSales {
        opportunity_id: id,
        owner: TOM.into(),
    }
}

// ------------------------------------------------------------------- horizontal

#[test]
fn a_second_partner_in_the_same_motion_raises_a_horizontal_conflict() {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let first = Deal::new(&a, Motion::Reseller);
    let at = t0() + hours(1);
    let second = Deal::new(&b, Motion::Reseller).submitted_at(at);
    let mut expected = second.submitted();
    expected.push(Event::ConflictDetected {
        account: acme(),
        conflict_id: ConflictId("acme.com/analytics/1".into()),
        kind: ConflictKind::Horizontal,
        product_line: "analytics".into(),
        parties: vec![first.party(), second.party()],
        reasons: vec!["2 reseller partners registered `analytics` at acme.com".into()],
        acknowledge_by: t0() + hours(1) + hours(24),
        // Monday 10:00 + 5 business days = the next Monday 10:00.
        resolution_plan_by: Some(t0() + hours(1) + days(7)),
        policy_version: 1,
        at,
    });
    Scenario::given(history([a.events(), b.events(), first.submitted()]))
        .at(at)
        .by(b.user())
        .when(second.submit())
        .then(expected);
}

#[test]
fn a_second_partner_on_another_line_raises_no_conflict() {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let first = Deal::new(&a, Motion::Reseller);
    let other_line = Deal::new(&b, Motion::Reseller).line(&b, "security");
    Scenario::given(history([a.events(), b.events(), first.submitted()]))
        .by(b.user())
        .when(other_line.submit())
        .then(other_line.submitted());
}

// ---------------------------------------------------------------- multi-channel

#[test]
fn a_different_motion_on_the_same_line_raises_a_multi_channel_conflict() {
    let referral_partner = referrer(Tier::Gold);
    let reseller_partner = reseller(Tier::Gold);
    let referral = Deal::new(&referral_partner, Motion::Referral);
    let resale = Deal::new(&reseller_partner, Motion::Reseller);
    let mut expected = resale.submitted();
    expected.push(conflict_detected(
        1,
        ConflictKind::MultiChannel,
        vec![referral.party(), resale.party()],
        "reseller overlaps referral on `analytics` at acme.com",
        t0(),
    ));
    Scenario::given(history([
        referral_partner.events(),
        reseller_partner.events(),
        referral.submitted(),
    ]))
    .by(reseller_partner.user())
    .when(resale.submit())
    .then(expected);
}

#[test]
fn one_submission_can_raise_horizontal_and_multi_channel_conflicts_numbered_per_account() {
    let first_reseller = reseller(Tier::Gold);
    let referral_partner = referrer(Tier::Gold);
    let late_reseller = reseller(Tier::Gold);
    let resale = Deal::new(&first_reseller, Motion::Reseller);
    let referral = Deal::new(&referral_partner, Motion::Referral);
    let late = Deal::new(&late_reseller, Motion::Reseller);
    let earlier_conflict = conflict_detected(
        1,
        ConflictKind::MultiChannel,
        vec![resale.party(), referral.party()],
        "referral overlaps reseller on `analytics` at acme.com",
        t0(),
    );
    let events = Scenario::given(history([
        first_reseller.events(),
        referral_partner.events(),
        late_reseller.events(),
        resale.submitted(),
        referral.submitted(),
        vec![earlier_conflict],
    ]))
    .by(late_reseller.user())
    .when(late.submit())
    .then_ok();
    let conflicts: Vec<(String, ConflictKind, Vec<ConflictParty>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConflictDetected {
                conflict_id,
                kind,
                parties,
                ..
            } => Some((conflict_id.0.clone(), *kind, parties.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        conflicts,
        vec![
            (
                "acme.com/analytics/2".into(),
                ConflictKind::Horizontal,
                vec![resale.party(), late.party()]
            ),
            (
                "acme.com/analytics/3".into(),
                ConflictKind::MultiChannel,
                vec![referral.party(), late.party()]
            ),
        ]
    );
}

// --------------------------------------------------------------------- vertical

#[test]
fn a_direct_opportunity_on_a_registered_line_raises_a_vertical_conflict() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let opportunity = OpportunityId(Uuid::now_v7());
    let at = t0() + days(2);
    Scenario::given(history([partner.events(), deal.approved()]))
        .at(at)
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "Analytics"))
        .then(vec![
            direct_opportunity_recorded(opportunity, at),
            conflict_detected(
                1,
                ConflictKind::Vertical,
                vec![deal.party(), direct_party(opportunity)],
                "direct sales (tom.ae@vendor.example) opened an opportunity on `analytics` where 1 partner registration(s) are open",
                at,
            ),
        ]);
}

#[test]
fn a_direct_opportunity_on_a_line_no_partner_registered_raises_no_conflict() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller).line(&partner, "security");
    let opportunity = OpportunityId(Uuid::now_v7());
    // A declined registration on another line, nobody protected, nobody owning a renewal.
    Scenario::given(history([partner.events(), deal.declined()]))
        .at(t0() + days(1))
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "analytics"))
        .then(vec![direct_opportunity_recorded(
            opportunity,
            t0() + days(1),
        )]);
}

/// docs/RULES.md, "Conflict types and signals": direct sales on another product line of an
/// account where a partner holds protection is a risk to watch, not a vertical conflict.
#[test]
fn a_direct_opportunity_on_another_line_of_a_protected_account_is_a_risk() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller).line(&partner, "security");
    let opportunity = OpportunityId(Uuid::now_v7());
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "analytics"))
        .then(vec![
            direct_opportunity_recorded(opportunity, t0()),
            conflict_detected(
                1,
                ConflictKind::DirectOnProtectedAccount,
                vec![deal.party(), direct_party(opportunity)],
                &format!("direct sales ({TOM}) opened an opportunity on `analytics` at an account where partners hold protection on security"),
                t0(),
            ),
        ]);
}

/// docs/RULES.md, "Conflict types and signals": "the vendor's direct sales works the same
/// account, renewal or expansion as a partner". The partner that won the line owns its
/// renewal while the contract's term runs: direct sales opening an opportunity on it is a
/// vertical conflict, though no registration is open any more.
#[test]
fn a_direct_opportunity_on_a_line_a_partner_won_and_owns_the_renewal_of_is_vertical() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let renews = deal.won_at().date_naive() + days(365);
    let opportunity = OpportunityId(Uuid::now_v7());
    let at = t0() + days(100);
    let given = history([partner.events(), deal.won(usd(4_000_000))]);
    Scenario::given(given.clone())
        .at(at)
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "analytics"))
        .then(vec![
            direct_opportunity_recorded(opportunity, at),
            conflict_detected(
                1,
                ConflictKind::Vertical,
                vec![
                    ConflictParty::RenewalOwner {
                        partner_id: partner.id,
                        renewal_date: renews,
                    },
                    direct_party(opportunity),
                ],
                &format!("direct sales ({TOM}) opened an opportunity on `analytics`, which partner {} won and whose renewal on {renews} it owns", partner.id),
                at,
            ),
        ]);
    // After the renewal date the won term is over: nothing to protect any more.
    let later = midnight(renews) + days(1);
    Scenario::given(given)
        .at(later)
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "analytics"))
        .then(vec![direct_opportunity_recorded(opportunity, later)]);
}

#[test]
fn a_direct_opportunity_is_recorded_once() {
    let opportunity = OpportunityId(Uuid::now_v7());
    Scenario::given(vec![direct_opportunity_recorded(opportunity, t0())])
        .by(direct_sales())
        .when(direct_opportunity(opportunity, "analytics"))
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn a_submission_onto_a_line_direct_sales_works_raises_a_vertical_conflict() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller).submitted_at(t0() + days(1));
    let opportunity = OpportunityId(Uuid::now_v7());
    let mut expected = deal.submitted();
    expected.push(conflict_detected(
        1,
        ConflictKind::Vertical,
        vec![direct_party(opportunity), deal.party()],
        "direct sales already works `analytics` at acme.com",
        t0() + days(1),
    ));
    Scenario::given(history([
        partner.events(),
        vec![direct_opportunity_recorded(opportunity, t0())],
    ]))
    .at(t0() + days(1))
    .by(partner.user())
    .when(deal.submit())
    .then(expected);
}

// ------------------------------------------------------------- renewal ownership

#[test]
fn a_renewal_nobody_owns_raises_a_renewal_ownership_conflict() {
    let partner = reseller(Tier::Gold);
    let renewal = Deal::new(&partner, Motion::Reseller).kind(DealKind::Renewal);
    let mut expected = renewal.submitted();
    expected.push(conflict_detected(
        1,
        ConflictKind::RenewalOwnership,
        vec![renewal.party()],
        "a renewal was registered but no partner owns this product line on the account",
        t0(),
    ));
    Scenario::given(partner.events())
        .by(partner.user())
        .when(renewal.submit())
        .then(expected);
}

/// `incumbent` won analytics at acme.com (30 days after `t0()`); `challenger` is active.
fn incumbent_account() -> (TestPartner, TestPartner, Deal, Vec<Event>) {
    let incumbent = reseller(Tier::Gold);
    let challenger = reseller(Tier::Platinum);
    let won = Deal::new(&incumbent, Motion::Reseller);
    let given = history([
        incumbent.events(),
        challenger.events(),
        won.won(usd(4_000_000)),
    ]);
    (incumbent, challenger, won, given)
}

fn renewal_by(partner: &TestPartner) -> Deal {
    Deal::new(partner, Motion::Reseller)
        .kind(DealKind::Renewal)
        .submitted_at(t0() + days(60))
}

#[test]
fn a_renewal_by_a_non_incumbent_partner_is_refused_without_naming_the_incumbent() {
    let (_, challenger, _, given) = incumbent_account();
    let err = Scenario::given(given)
        .at(t0() + days(60))
        .by(challenger.user())
        .when(renewal_by(&challenger).submit())
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
    assert_eq!(err.details, json!({}));
}

#[test]
fn the_vendor_is_told_who_owns_the_renewal() {
    let (incumbent, challenger, _, given) = incumbent_account();
    let err = Scenario::given(given)
        .at(t0() + days(60))
        .by(channel_manager())
        .when(renewal_by(&challenger).submit())
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
    assert_eq!(err.details, json!({ "owner": incumbent.id }));
}

#[test]
fn the_incumbent_registers_its_renewal_without_a_conflict() {
    let (incumbent, _, _, given) = incumbent_account();
    let renewal = renewal_by(&incumbent).incumbent();
    Scenario::given(given)
        .at(t0() + days(60))
        .by(incumbent.user())
        .when(renewal.submit())
        .then(renewal.submitted());
}

fn reassigned(from: &TestPartner, to: &TestPartner) -> Event {
    Event::RenewalOwnershipReassigned {
        account: acme(),
        product_line: "analytics".into(),
        from: Some(from.id),
        to: to.id,
        reason: "incumbent exits the region".into(),
        at: t0() + days(50),
    }
}

#[test]
fn a_channel_manager_reassigns_the_renewal_from_the_incumbent() {
    let (incumbent, challenger, _, given) = incumbent_account();
    Scenario::given(given)
        .at(t0() + days(50))
        .when(Command::ReassignRenewalOwnership(
            ReassignRenewalOwnership {
                account: "acme.com".into(),
                product_line: "Analytics".into(),
                to_partner: challenger.id,
                reason: "incumbent exits the region".into(),
            },
        ))
        .then(vec![reassigned(&incumbent, &challenger)]);
}

#[test]
fn after_reassignment_the_new_owner_may_register_the_renewal_and_the_incumbent_may_not() {
    let (incumbent, challenger, _, given) = incumbent_account();
    let given = history([given, vec![reassigned(&incumbent, &challenger)]]);
    let renewal = renewal_by(&challenger);
    Scenario::given(given.clone())
        .at(t0() + days(60))
        .by(challenger.user())
        .when(renewal.submit())
        .then(renewal.submitted());
    Scenario::given(given)
        .at(t0() + days(60))
        .by(incumbent.user())
        .when(renewal_by(&incumbent).submit())
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
}

#[test]
fn a_renewal_is_reassigned_only_to_another_active_partner_by_a_channel_manager() {
    let (incumbent, _, _, given) = incumbent_account();
    let gone = reseller(Tier::Gold).offboarded();
    let reassign = |to: PartnerId| {
        Command::ReassignRenewalOwnership(ReassignRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            to_partner: to,
            reason: "incumbent exits the region".into(),
        })
    };
    Scenario::given(history([given.clone(), gone.events()]))
        .when(reassign(gone.id))
        .then_error(RejectionCode::PartnerNotActive);
    Scenario::given(given.clone())
        .when(reassign(incumbent.id))
        .then_error(RejectionCode::AlreadyRecorded);
    Scenario::given(given.clone())
        .when(reassign(PartnerId(Uuid::now_v7())))
        .then_error(RejectionCode::UnknownPartner);
    for actor in [incumbent.user(), revops(), direct_sales()] {
        Scenario::given(given.clone())
            .by(actor)
            .when(reassign(incumbent.id))
            .then_error(RejectionCode::NotAuthorised);
    }
}

fn confirm(renewal_date: NaiveDate) -> Command {
    Command::ConfirmRenewalOwnership(ConfirmRenewalOwnership {
        account: "acme.com".into(),
        product_line: "analytics".into(),
        renewal_date,
    })
}

#[test]
fn renewal_ownership_confirmed_exactly_90_days_ahead_is_in_time() {
    let (incumbent, _, _, given) = incumbent_account();
    let renews = date("2027-04-01");
    let at = midnight(renews - days(90)) + hours(17);
    Scenario::given(given)
        .at(at)
        .when(confirm(renews))
        .then(vec![Event::RenewalOwnershipConfirmed {
            account: acme(),
            product_line: "analytics".into(),
            partner_id: incumbent.id,
            renewal_date: renews,
            policy_version: 1,
            at,
        }]);
}

#[test]
fn renewal_ownership_confirmed_89_days_ahead_is_too_late() {
    let (_, _, _, given) = incumbent_account();
    let renews = date("2027-04-01");
    let err = Scenario::given(given)
        .at(midnight(renews - days(89)))
        .when(confirm(renews))
        .then_error(RejectionCode::RenewalConfirmationTooLate);
    assert_eq!(err.details, json!({ "confirm_by": renews - days(90) }));
}

#[test]
fn a_reassigned_renewal_is_confirmed_for_its_new_owner() {
    let (incumbent, challenger, _, given) = incumbent_account();
    let renews = date("2027-04-01");
    let events = Scenario::given(history([given, vec![reassigned(&incumbent, &challenger)]]))
        .at(t0() + days(60))
        .when(confirm(renews))
        .then_ok();
    assert!(matches!(
        &events[0],
        Event::RenewalOwnershipConfirmed { partner_id, .. } if *partner_id == challenger.id
    ));
}

#[test]
fn a_renewal_nobody_won_has_no_owner_to_confirm() {
    let partner = reseller(Tier::Gold);
    Scenario::given(history([
        partner.events(),
        Deal::new(&partner, Motion::Reseller).approved(),
    ]))
    .when(confirm(date("2027-04-01")))
    .then_error(RejectionCode::NoIncumbent);
}

#[test]
fn renewal_ownership_is_confirmed_by_a_channel_manager() {
    let (incumbent, _, _, given) = incumbent_account();
    for actor in [incumbent.user(), revops(), timekeeper()] {
        Scenario::given(given.clone())
            .by(actor)
            .at(t0() + days(60))
            .when(confirm(date("2027-04-01")))
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn the_renewal_review_falls_due_90_days_before_the_won_contract_renews_once() {
    let (incumbent, _, won, given) = incumbent_account();
    let renews = won.won_at().date_naive() + days(365);
    assert_eq!(renews, date("2027-04-01"));
    let flag = Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
        account: "acme.com".into(),
        product_line: "analytics".into(),
    });
    let due = midnight(renews - days(90));
    Scenario::given(given.clone())
        .at(due - secs(1))
        .by(timekeeper())
        .when(flag.clone())
        .then_error(RejectionCode::NotDue);
    let review = Scenario::given(given.clone())
        .at(due)
        .by(timekeeper())
        .when(flag.clone())
        .then(vec![Event::RenewalOwnershipReviewDue {
            account: acme(),
            product_line: "analytics".into(),
            owner: Some(incumbent.id),
            renewal_date: renews,
            policy_version: 1,
            at: due,
        }]);
    Scenario::given(history([given, review]))
        .at(due + days(1))
        .by(timekeeper())
        .when(flag)
        .then_error(RejectionCode::AlreadyRecorded);
}

// ---------------------------------------------------- acknowledging and resolving

/// Two resellers' pending registrations and the horizontal conflict between them.
fn horizontal_conflict() -> (Deal, Deal, ConflictId, Vec<Event>) {
    let a = reseller(Tier::Gold);
    let b = reseller(Tier::Gold);
    let first = Deal::new(&a, Motion::Reseller);
    let second = Deal::new(&b, Motion::Reseller);
    let detected = conflict_detected(
        1,
        ConflictKind::Horizontal,
        vec![first.party(), second.party()],
        "2 reseller partners registered `analytics` at acme.com",
        t0(),
    );
    let given = history([
        a.events(),
        b.events(),
        first.submitted(),
        second.submitted(),
        vec![detected],
    ]);
    (
        first,
        second,
        ConflictId("acme.com/analytics/1".into()),
        given,
    )
}

fn acknowledge(id: &ConflictId) -> Command {
    Command::AcknowledgeConflict(AcknowledgeConflict {
        account: "acme.com".into(),
        conflict_id: id.clone(),
        note: "looking into it".into(),
    })
}

fn resolve(id: &ConflictId, winner: Option<RegistrationId>) -> Command {
    Command::ResolveConflict(ResolveConflict {
        account: "acme.com".into(),
        conflict_id: id.clone(),
        winner,
        rationale: "the first partner ran the workshop".into(),
    })
}

#[test]
fn a_channel_manager_acknowledges_a_conflict_once() {
    let (_, _, id, given) = horizontal_conflict();
    let at = t0() + hours(5);
    let acknowledged = Scenario::given(given.clone())
        .at(at)
        .when(acknowledge(&id))
        .then(vec![Event::ConflictAcknowledged {
            account: acme(),
            conflict_id: id.clone(),
            by: channel_manager().label(),
            note: "looking into it".into(),
            at,
        }]);
    Scenario::given(history([given, acknowledged]))
        .at(at + hours(1))
        .when(acknowledge(&id))
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn an_unknown_conflict_cannot_be_acknowledged_or_resolved() {
    let (_, _, _, given) = horizontal_conflict();
    let unknown = ConflictId("acme.com/analytics/9".into());
    Scenario::given(given.clone())
        .when(acknowledge(&unknown))
        .then_error(RejectionCode::UnknownConflict);
    Scenario::given(given)
        .when(resolve(&unknown, None))
        .then_error(RejectionCode::UnknownConflict);
}

#[test]
fn a_conflict_is_resolved_with_one_of_its_parties_as_winner() {
    let (first, _, id, given) = horizontal_conflict();
    let at = t0() + days(2);
    let resolved = Scenario::given(given.clone())
        .at(at)
        .when(resolve(&id, Some(first.id)))
        .then(vec![Event::ConflictResolved {
            account: acme(),
            conflict_id: id.clone(),
            winner: Some(first.id),
            rationale: "the first partner ran the workshop".into(),
            at,
        }]);
    Scenario::given(history([given, resolved]))
        .at(at + hours(1))
        .when(resolve(&id, Some(first.id)))
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn a_winner_that_is_not_a_party_of_the_conflict_is_invalid() {
    let (_, _, id, given) = horizontal_conflict();
    let err = Scenario::given(given)
        .when(resolve(&id, Some(RegistrationId(Uuid::now_v7()))))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "winner");
}

#[test]
fn a_conflict_may_be_resolved_without_a_winner_but_not_without_a_rationale() {
    let (_, _, id, given) = horizontal_conflict();
    Scenario::given(given.clone())
        .when(resolve(&id, None))
        .then_ok();
    let err = Scenario::given(given)
        .when(Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: id,
            winner: None,
            rationale: " ".into(),
        }))
        .then_error(RejectionCode::MissingField);
    assert_eq!(err.details["field"], "rationale");
}

#[test]
fn conflicts_are_handled_by_channel_managers_only() {
    let (first, _, id, given) = horizontal_conflict();
    for actor in [
        user_of(first.partner),
        revops(),
        direct_sales(),
        timekeeper(),
    ] {
        Scenario::given(given.clone())
            .by(actor.clone())
            .when(acknowledge(&id))
            .then_error(RejectionCode::NotAuthorised);
        Scenario::given(given.clone())
            .by(actor)
            .when(resolve(&id, Some(first.id)))
            .then_error(RejectionCode::NotAuthorised);
    }
}

// ---------------------------------------------------------------- conflict SLAs

fn flag_conflict(id: &ConflictId, sla: ConflictSla) -> Command {
    Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
        account: "acme.com".into(),
        conflict_id: id.clone(),
        sla,
    })
}

#[test]
fn an_unacknowledged_conflict_breaches_its_sla_at_24_hours_once() {
    let (_, _, id, given) = horizontal_conflict();
    let err = Scenario::given(given.clone())
        .at(t0() + hours(24) - secs(1))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::Acknowledgement))
        .then_error(RejectionCode::NotDue);
    assert_eq!(err.details["due_at"], json!(t0() + hours(24)));
    let breach = Scenario::given(given.clone())
        .at(t0() + hours(24))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::Acknowledgement))
        .then(vec![Event::ConflictSlaBreached {
            account: acme(),
            conflict_id: id.clone(),
            sla: ConflictSla::Acknowledgement,
            due_at: t0() + hours(24),
            policy_version: 1,
            at: t0() + hours(24),
        }]);
    Scenario::given(history([given, breach]))
        .at(t0() + hours(30))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::Acknowledgement))
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn an_acknowledged_conflict_met_its_acknowledgement_sla() {
    let (_, _, id, given) = horizontal_conflict();
    let acknowledged = Event::ConflictAcknowledged {
        account: acme(),
        conflict_id: id.clone(),
        by: channel_manager().label(),
        note: "on it".into(),
        at: t0() + hours(3),
    };
    Scenario::given(history([given, vec![acknowledged]]))
        .at(t0() + hours(25))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::Acknowledgement))
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn an_unresolved_conflict_breaches_its_resolution_plan_sla_after_five_business_days() {
    let (_, _, id, given) = horizontal_conflict();
    // Detected Monday 09:00: five business days later is the next Monday 09:00.
    Scenario::given(given.clone())
        .at(t0() + days(7) - secs(1))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::ResolutionPlan))
        .then_error(RejectionCode::NotDue);
    let events = Scenario::given(given.clone())
        .at(t0() + days(7))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::ResolutionPlan))
        .then_ok();
    assert!(matches!(
        &events[0],
        Event::ConflictSlaBreached { sla: ConflictSla::ResolutionPlan, due_at, .. }
            if *due_at == t0() + days(7)
    ));
    let resolved = Event::ConflictResolved {
        account: acme(),
        conflict_id: id.clone(),
        winner: None,
        rationale: "plan agreed".into(),
        at: t0() + days(4),
    };
    Scenario::given(history([given, vec![resolved]]))
        .at(t0() + days(8))
        .by(timekeeper())
        .when(flag_conflict(&id, ConflictSla::ResolutionPlan))
        .then_error(RejectionCode::InvalidTransition);
}

// ----------------------------------------------- overlapping price protection (signal)

/// `first` is protected on analytics at acme.com; `second`'s security registration there
/// awaits approval.
fn two_lines_at_one_customer() -> (TestPartner, TestPartner, Deal, Deal) {
    let first = reseller(Tier::Gold);
    let second = reseller(Tier::Silver);
    let analytics = Deal::new(&first, Motion::Reseller);
    let security = Deal::new(&second, Motion::Reseller)
        .line(&second, "security")
        .submitted_at(t0() + hours(1));
    (first, second, analytics, security)
}

#[test]
fn approving_protection_beside_another_partners_protection_flags_an_overlap_risk() {
    let (first, second, analytics, security) = two_lines_at_one_customer();
    let events = Scenario::given(history([
        first.events(),
        second.events(),
        analytics.approved(),
        security.submitted(),
    ]))
    .at(t0() + hours(2))
    .by(channel_manager())
    .when(security.approve())
    .then_ok();
    assert_eq!(
        conflict_kinds(&events),
        vec![ConflictKind::OverlappingProtection]
    );
    let Event::ConflictDetected {
        parties,
        product_line,
        ..
    } = &events[1]
    else {
        panic!("a conflict after the approval: {events:?}")
    };
    assert_eq!(product_line, "security");
    assert_eq!(parties, &vec![analytics.party(), security.party()]);
}

#[test]
fn the_overlap_signal_follows_the_policy_switch_and_ignores_the_same_partner() {
    let (first, second, analytics, security) = two_lines_at_one_customer();
    let mut quiet = policy_version(2);
    quiet.conflict.flag_overlapping_protection = false;
    let given = history([
        first.events(),
        second.events(),
        analytics.approved(),
        security.submitted(),
    ]);
    let events = Scenario::given(given)
        .with_policy(quiet)
        .at(t0() + hours(2))
        .by(channel_manager())
        .when(security.approve())
        .then_ok();
    assert!(conflict_kinds(&events).is_empty(), "{events:?}");

    // The same partner protected on two lines of one customer overlaps nobody.
    let own_security = Deal::new(&first, Motion::Reseller)
        .line(&first, "security")
        .submitted_at(t0() + hours(1));
    let events = Scenario::given(history([
        first.events(),
        analytics.approved(),
        own_security.submitted(),
    ]))
    .at(t0() + hours(2))
    .by(channel_manager())
    .when(own_security.approve())
    .then_ok();
    assert!(conflict_kinds(&events).is_empty(), "{events:?}");
}
