//! docs/RULES.md, registration policy 3: the incumbent partner owns the renewal unless it
//! is reassigned. The kind of deal a partner chooses must not decide who owns a renewal:
//! inside the renewal window (from `renewal_confirmation_days` before the renewal date
//! through that date) any other partner's registration of the line touches the renewal.

mod fixtures;
use fixtures::*;

/// `incumbent` won analytics at acme.com at `t0() + 30 days`: it renews a year later.
fn won_line() -> (TestPartner, TestPartner, Deal, Vec<Event>) {
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

fn renewal_date(won: &Deal) -> NaiveDate {
    won.won_at().date_naive() + days(365)
}

/// `partner`'s registration of the won line, of `kind`, submitted at `at`.
fn claim(partner: &TestPartner, kind: DealKind, at: DateTime<Utc>) -> Deal {
    let mut deal = Deal::new(partner, Motion::Reseller)
        .kind(kind)
        .submitted_at(at);
    deal.expected_close = at.date_naive() + days(90);
    deal
}

#[test]
fn inside_the_window_another_partners_new_business_is_refused_as_the_owners_renewal() {
    let (_, challenger, won, given) = won_line();
    let sixty_days_before = midnight(renewal_date(&won) - days(60)) + hours(9);
    for kind in [
        DealKind::NewBusiness,
        DealKind::Expansion,
        DealKind::Renewal,
    ] {
        let err = Scenario::given(given.clone())
            .at(sixty_days_before)
            .by(challenger.user())
            .when(claim(&challenger, kind, sixty_days_before).submit())
            .then_error(RejectionCode::RenewalOwnedByIncumbent);
        assert_eq!(
            err.details,
            json!({ "renewal_date": renewal_date(&won) }),
            "{kind:?}: the partner is told when, not who"
        );
    }
}

#[test]
fn the_window_opens_exactly_the_lead_time_before_the_renewal_and_closes_after_it() {
    let (_, challenger, won, given) = won_line();
    let renews = renewal_date(&won);
    let opens = midnight(renews - days(90));
    let cases = [
        (opens - hours(1), true),
        (opens + hours(9), false),
        (midnight(renews) + hours(9), false),
        (midnight(renews + days(1)) + hours(9), true),
    ];
    for (at, accepted) in cases {
        let outcome = Scenario::given(given.clone())
            .at(at)
            .by(challenger.user())
            .when(claim(&challenger, DealKind::NewBusiness, at).submit());
        if accepted {
            outcome.then_ok();
        } else {
            outcome.then_error(RejectionCode::RenewalOwnedByIncumbent);
        }
    }
}

#[test]
fn the_owner_itself_registers_inside_the_window_whatever_the_kind() {
    let (incumbent, _, won, given) = won_line();
    let at = midnight(renewal_date(&won) - days(60)) + hours(9);
    Scenario::given(given)
        .at(at)
        .by(incumbent.user())
        .when(
            claim(&incumbent, DealKind::NewBusiness, at)
                .incumbent()
                .submit(),
        )
        .then_ok();
}

#[test]
fn under_the_flag_policy_the_claim_raises_a_renewal_conflict_and_cannot_be_approved() {
    let (incumbent, challenger, won, given) = won_line();
    let mut flag = policy_version(2);
    flag.renewals.others_in_window = dealreg_domain::policy::RenewalClaims::Flag;
    let at = midnight(renewal_date(&won) - days(60)) + hours(9);
    let deal = claim(&challenger, DealKind::NewBusiness, at);
    let events = Scenario::given(given.clone())
        .with_policy(flag.clone())
        .at(at)
        .by(challenger.user())
        .when(deal.submit())
        .then_ok();
    assert_eq!(
        conflict_kinds(&events),
        vec![ConflictKind::RenewalOwnership]
    );

    let submitted: Vec<Event> = given.into_iter().chain(events).collect();
    let err = Scenario::given(submitted.clone())
        .with_policy(flag.clone())
        .at(at + hours(2))
        .by(channel_manager())
        .when(deal.approve())
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
    assert_eq!(err.details["owner"], json!(incumbent.id));

    // Once the channel manager reassigns the renewal, the approval goes through.
    let reassigned = Event::RenewalOwnershipReassigned {
        account: acme(),
        product_line: "analytics".into(),
        from: Some(incumbent.id),
        to: challenger.id,
        reason: "incumbent stopped servicing the account".into(),
        at: at + hours(1),
    };
    Scenario::given(submitted.into_iter().chain([reassigned]))
        .with_policy(flag)
        .at(at + hours(2))
        .by(channel_manager())
        .when(deal.approve())
        .then_ok();
}

#[test]
fn an_approval_inside_the_window_is_refused_for_a_registration_submitted_before_it_opened() {
    let (_, challenger, won, given) = won_line();
    let renews = renewal_date(&won);
    let before = midnight(renews - days(100)) + hours(9);
    let deal = claim(&challenger, DealKind::NewBusiness, before);
    let submitted = history([given, deal.submitted()]);
    Scenario::given(submitted)
        .at(midnight(renews - days(80)))
        .by(channel_manager())
        .when(deal.approve())
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
}
