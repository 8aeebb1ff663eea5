//! docs/RULES.md, "Conflict types and signals": a conflict has parties and its own SLA.
//! When fewer than two of its parties are still live (the others expired, were won, lost,
//! withdrawn, declined or released), the conflict closes itself, recorded with the reason,
//! and stops collecting SLA breaches.

mod fixtures;
use fixtures::*;

/// Two resellers' registrations on acme.com / analytics and the horizontal conflict
/// between them; the first is approved.
fn two_parties() -> (TestPartner, TestPartner, Deal, Deal, Vec<Event>) {
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
        first.approved(),
        second.submitted(),
        vec![detected],
    ]);
    (a, b, first, second, given)
}

fn conflict_id() -> ConflictId {
    ConflictId("acme.com/analytics/1".into())
}

fn closed_reasons(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ConflictClosed {
                conflict_id: closed,
                reason,
                ..
            } if *closed == conflict_id() => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_way_a_party_closes_settles_a_two_party_conflict_in_the_same_decision() {
    let (a, b, first, second, given) = two_parties();
    let lost = first.mark_lost();
    let cases: Vec<(&str, Actor, Command, DateTime<Utc>)> = vec![
        (
            "declined",
            channel_manager(),
            second.decline(),
            t0() + hours(2),
        ),
        ("withdrawn", b.user(), second.withdraw(), t0() + hours(2)),
        ("lost", a.user(), lost, t0() + hours(2)),
        (
            "released",
            channel_manager(),
            second.release(),
            t0() + hours(2),
        ),
        ("expired", timekeeper(), first.expire(), first.expires_at()),
    ];
    for (what, actor, command, at) in cases {
        let events = Scenario::given(given.clone())
            .at(at)
            .by(actor)
            .when(command)
            .then_ok();
        let reasons = closed_reasons(&events);
        assert_eq!(reasons.len(), 1, "{what}: {events:?}");
        assert!(reasons[0].contains(what), "{what}: {}", reasons[0]);
        assert!(
            reasons[0].contains("fewer than two live parties"),
            "{}",
            reasons[0]
        );
    }
}

#[test]
fn a_won_party_settles_the_conflict_too() {
    let (_, _, first, _, given) = two_parties();
    let sourced = first.sourcing_set_by_partner();
    let events = Scenario::given(history([given, vec![sourced], first.to_closing_stage()]))
        .at(t0() + days(5))
        .by(channel_manager())
        .when(first.mark_won(usd(5_000_000)))
        .then_ok();
    assert_eq!(closed_reasons(&events).len(), 1, "{events:?}");
}

#[test]
fn a_conflict_of_three_stays_open_while_two_parties_are_live() {
    let (a, b, first, second, given) = two_parties();
    let c = reseller(Tier::Silver);
    let third = Deal::new(&c, Motion::Reseller).submitted_at(t0() + hours(1));
    let detected = conflict_detected(
        1,
        ConflictKind::Horizontal,
        vec![first.party(), second.party(), third.party()],
        "3 reseller partners registered `analytics` at acme.com",
        t0() + hours(1),
    );
    let given: Vec<Event> = given
        .into_iter()
        .filter(|e| !matches!(e, Event::ConflictDetected { .. }))
        .chain(c.events())
        .chain(third.submitted())
        .chain([detected])
        .collect();
    let events = Scenario::given(given.clone())
        .at(t0() + hours(2))
        .by(b.user())
        .when(second.withdraw())
        .then_ok();
    assert!(
        closed_reasons(&events).is_empty(),
        "two parties are still live: {events:?}"
    );
    let after = history([given, events]);
    let events = Scenario::given(after)
        .at(t0() + hours(3))
        .by(a.user())
        .when(first.mark_lost())
        .then_ok();
    assert_eq!(closed_reasons(&events).len(), 1);
}

#[test]
fn a_closed_conflict_collects_no_sla_breach_and_takes_no_more_desk_work() {
    let (_, b, _, second, given) = two_parties();
    let withdrawn = Scenario::given(given.clone())
        .at(t0() + hours(2))
        .by(b.user())
        .when(second.withdraw())
        .then_ok();
    let closed = history([given, withdrawn]);
    let breach = Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
        account: "acme.com".into(),
        conflict_id: conflict_id(),
        sla: ConflictSla::Acknowledgement,
    });
    let err = Scenario::given(closed.clone())
        .at(t0() + days(3))
        .by(timekeeper())
        .when(breach)
        .then_error(RejectionCode::AlreadyRecorded);
    assert!(err.message.contains("closed by itself"), "{}", err.message);
    for command in [
        Command::AcknowledgeConflict(AcknowledgeConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id(),
            note: String::new(),
        }),
        Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id(),
            winner: None,
            rationale: "done".into(),
        }),
    ] {
        Scenario::given(closed.clone())
            .at(t0() + days(1))
            .by(channel_manager())
            .when(command)
            .then_error(RejectionCode::AlreadyRecorded);
    }
}

#[test]
fn a_resolved_conflict_is_not_closed_again() {
    let (_, b, _, second, given) = two_parties();
    let resolved = Event::ConflictResolved {
        account: acme(),
        conflict_id: conflict_id(),
        winner: None,
        rationale: "the protected registration stands".into(),
        at: t0() + hours(2),
    };
    let events = Scenario::given(history([given, vec![resolved]]))
        .at(t0() + hours(3))
        .by(b.user())
        .when(second.withdraw())
        .then_ok();
    assert!(closed_reasons(&events).is_empty());
}
