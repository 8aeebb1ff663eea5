//! docs/RULES.md, "Partner facts the rules read": territories (region, vertical), named
//! accounts and exclusivity decide where a partner may register; and registration
//! policy 6: a partner's referral becomes an opportunity within 24 hours.

mod fixtures;
use fixtures::*;

fn emea_reseller() -> TestPartner {
    let partner = reseller(Tier::Gold);
    let territories = Event::PartnerTerritoriesSet {
        partner_id: partner.id,
        territories: vec![Territory {
            region: "EMEA".into(),
            vertical: "manufacturing".into(),
        }],
        at: t0() - days(10),
    };
    partner.then(territories)
}

fn in_region(deal: &Deal, region: &str, vertical: Option<&str>) -> Command {
    deal.submit_with(|s| {
        s.customer.region = Some(region.into());
        s.customer.vertical = vertical.map(Into::into);
    })
}

#[test]
fn a_customer_outside_every_territory_of_the_partner_is_refused() {
    let partner = emea_reseller();
    let deal = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .when(in_region(&deal, "APAC", None))
        .then_error(RejectionCode::OutsideTerritory);
    assert_eq!(err.details["field"], "customer.region");
    Scenario::given(partner.events())
        .by(partner.user())
        .when(in_region(&deal, "emea", Some("Manufacturing")))
        .then_ok();
    Scenario::given(partner.events())
        .by(partner.user())
        .when(in_region(&deal, "EMEA", Some("healthcare")))
        .then_error(RejectionCode::OutsideTerritory);
}

#[test]
fn territories_are_not_checked_without_a_customer_region_or_when_the_policy_allows() {
    let partner = emea_reseller();
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
    let mut advisory = policy_version(2);
    advisory.territories.outside = dealreg_domain::policy::OutsideTerritory::Allow;
    Scenario::given(partner.events())
        .with_policy(advisory)
        .by(partner.user())
        .when(in_region(&deal, "APAC", None))
        .then_ok();
}

fn named(partner: &TestPartner, exclusive: bool) -> Event {
    Event::NamedAccountAssigned {
        account: acme(),
        partner_id: partner.id,
        previous: None,
        exclusive,
        reason: "strategic account plan".into(),
        at: t0() - days(5),
    }
}

#[test]
fn an_exclusive_named_account_is_its_partners_alone() {
    let owner = reseller(Tier::Gold);
    let other = reseller(Tier::Platinum);
    let deal = Deal::new(&other, Motion::Reseller);
    let given = history([owner.events(), other.events(), vec![named(&owner, true)]]);
    let err = Scenario::given(given.clone())
        .by(other.user())
        .when(deal.submit())
        .then_error(RejectionCode::NamedAccountOfAnotherPartner);
    assert_eq!(
        err.details,
        serde_json::Value::Null,
        "the owner is not named"
    );
    Scenario::given(given)
        .by(owner.user())
        .when(Deal::new(&owner, Motion::Reseller).submit())
        .then_ok();
}

#[test]
fn a_shared_named_account_accepts_others_with_a_horizontal_conflict() {
    let owner = reseller(Tier::Gold);
    let other = reseller(Tier::Platinum);
    let deal = Deal::new(&other, Motion::Reseller);
    let events = Scenario::given(history([
        owner.events(),
        other.events(),
        vec![named(&owner, false)],
    ]))
    .by(other.user())
    .when(deal.submit())
    .then_ok();
    assert_eq!(conflict_kinds(&events), vec![ConflictKind::Horizontal]);
    // The last conflict raised (the decision's capacity work follows its own events).
    let Some(Event::ConflictDetected { parties, .. }) = events
        .iter()
        .rev()
        .find(|e| matches!(e, Event::ConflictDetected { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        parties,
        &vec![
            ConflictParty::NamedPartner {
                partner_id: owner.id
            },
            deal.party()
        ]
    );
}

#[test]
fn a_channel_manager_assigns_named_accounts_to_active_partners() {
    let owner = reseller(Tier::Gold);
    let assign = |by: Actor, exclusive| {
        Scenario::given(owner.events())
            .by(by)
            .when(Command::AssignNamedAccount(AssignNamedAccount {
                account: "www.acme.com".into(),
                partner_id: owner.id,
                exclusive,
                reason: "strategic account plan".into(),
            }))
    };
    let events = assign(channel_manager(), true).then_ok();
    assert!(matches!(
        events.as_slice(),
        [Event::NamedAccountAssigned {
            exclusive: true,
            previous: None,
            ..
        }]
    ));
    assign(owner.user(), true).then_error(RejectionCode::NotAuthorised);
    let gone = owner.clone().offboarded();
    Scenario::given(gone.events())
        .when(Command::AssignNamedAccount(AssignNamedAccount {
            account: "acme.com".into(),
            partner_id: gone.id,
            exclusive: false,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::PartnerNotActive);
}

/// docs/RULES.md, registration policy 6: the 48-hour decision holds for every motion; a
/// referral also runs its own 24-hour clock to an opportunity the vendor accepted.
#[test]
fn a_referral_runs_the_24_hour_referral_clock_beside_the_48_hour_decision() {
    let partner = referrer(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Referral);
    let due = |events: &[Event]| match &events[0] {
        Event::RegistrationSubmitted {
            approval_due_at,
            intro_due_at,
            ..
        } => (*approval_due_at, *intro_due_at),
        other => panic!("{other:?}"),
    };
    let events = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
    assert_eq!(due(&events), (t0() + hours(48), Some(t0() + hours(24))));
    let mut slow = policy_version(2);
    slow.sla.referral_to_opportunity_hours = 12;
    slow.sla.approval_hours = 36;
    let events = Scenario::given(partner.events())
        .with_policy(slow)
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
    assert_eq!(
        due(&events),
        (t0() + hours(36), Some(t0() + hours(12))),
        "the numbers come from the policy"
    );
    // Other motions run the approval clock only.
    let reseller = reseller(Tier::Gold);
    let events = Scenario::given(reseller.events())
        .by(reseller.user())
        .when(Deal::new(&reseller, Motion::Reseller).submit())
        .then_ok();
    assert_eq!(due(&events), (t0() + hours(48), None));
}
