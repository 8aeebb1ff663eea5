//! Program metrics folded from a small, hand-written history.

use chrono::{DateTime, Duration, TimeZone, Utc};
use dealreg_domain::{
    AccountKey, Attribution, ConflictId, ConflictKind, Contact, Customer, DealKind, Event, Money,
    Motion, PartnerId, RegistrationId,
};
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::Projection;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date")
}
fn acme() -> AccountKey {
    AccountKey("acme.com".into())
}

fn submitted(id: RegistrationId, motion: Motion) -> Event {
    Event::RegistrationSubmitted {
        account: acme(),
        registration_id: id,
        partner_id: PartnerId(Uuid::nil()),
        customer: Customer {
            company: "Acme".into(),
            domain: "acme.com".into(),
            contact: Contact {
                name: "n".into(),
                email: "e@acme.com".into(),
                phone: None,
            },
            region: None,
            vertical: None,
        }
        .on_record(),
        product_line: "analytics".into(),
        motion,
        kind: DealKind::NewBusiness,
        estimated_amount: Money::new(1, "USD").expect("usd"),
        expected_close: t0().date_naive(),
        proof_of_work: "p".into(),
        certified: true,
        incumbent: false,
        approval_due_at: t0() + Duration::hours(48),
        intro_due_at: None,
        policy_version: 1,
        at: t0(),
    }
}

fn approved(id: RegistrationId, at: DateTime<Utc>) -> Event {
    Event::RegistrationApproved {
        account: acme(),
        registration_id: id,
        partner_id: PartnerId(Uuid::nil()),
        rationale: "r".into(),
        protection_days: 90,
        expires_at: at + Duration::days(90),
        policy_version: 1,
        at,
    }
}

fn won(
    id: RegistrationId,
    motion: Motion,
    minor: i64,
    attribution: Attribution,
    days: i64,
) -> Event {
    Event::DealWon {
        account: acme(),
        registration_id: id,
        partner_id: PartnerId(Uuid::nil()),
        motion,
        product_line: "analytics".into(),
        amount: Money::new(minor, "USD").expect("usd"),
        attribution,
        renewal_date: None,
        order_reference: None,
        policy_version: 1,
        at: t0() + Duration::days(days),
    }
}

#[test]
fn sourced_influenced_win_rate_cycle_time_sla_and_conflicts() {
    let ids: Vec<RegistrationId> = (0..4).map(|_| RegistrationId(Uuid::now_v7())).collect();
    let sourced = Attribution {
        sourcing: Some(PartnerId(Uuid::nil())),
        influencers: Default::default(),
    };
    let influenced = Attribution {
        sourcing: None,
        influencers: [(PartnerId(Uuid::nil()), 40)].into_iter().collect(),
    };
    let events = vec![
        submitted(ids[0], Motion::Reseller),
        submitted(ids[1], Motion::Reseller),
        submitted(ids[2], Motion::Reseller),
        submitted(ids[3], Motion::TechIsv),
        approved(ids[0], t0() + Duration::hours(10)),
        approved(ids[1], t0() + Duration::hours(47)),
        approved(ids[2], t0() + Duration::hours(60)),
        approved(ids[3], t0() + Duration::hours(1)),
        won(ids[0], Motion::Reseller, 1_000_000, sourced, 30),
        won(ids[1], Motion::Reseller, 500_000, influenced.clone(), 50),
        Event::DealLost {
            account: acme(),
            registration_id: ids[2],
            partner_id: PartnerId(Uuid::nil()),
            reason: "r".into(),
            policy_version: 1,
            at: t0(),
        },
        won(ids[3], Motion::TechIsv, 250_000, influenced, 20),
        Event::ConflictDetected {
            account: acme(),
            conflict_id: ConflictId("c1".into()),
            kind: ConflictKind::Horizontal,
            product_line: "analytics".into(),
            parties: vec![],
            reasons: vec![],
            acknowledge_by: t0(),
            resolution_plan_by: None,
            policy_version: 1,
            at: t0(),
        },
        Event::ConflictResolved {
            account: acme(),
            conflict_id: ConflictId("c1".into()),
            winner: None,
            rationale: "r".into(),
            at: t0() + Duration::hours(30),
        },
    ];
    let mut m = ProgramMetrics::default();
    for (i, e) in events.iter().enumerate() {
        m.apply(dealreg_domain::Position::at(i as u64), e);
    }
    let usd = dealreg_domain::Currency::try_from("USD".to_string()).expect("usd");
    let reseller = &m.motions[&Motion::Reseller];
    assert_eq!((reseller.submitted, reseller.won, reseller.lost), (3, 2, 1));
    assert_eq!(
        reseller.win_rate_bps(),
        Some(6_666),
        "2 of 3 closed deals won"
    );
    assert_eq!(reseller.average_cycle_days(), Some(40));
    assert_eq!(reseller.sourced_minor.get(&usd), Some(&1_000_000));
    assert_eq!(reseller.influenced_minor.get(&usd), Some(&500_000));
    assert_eq!(
        m.motions[&Motion::TechIsv].influenced_minor.get(&usd),
        Some(&250_000)
    );
    assert_eq!(
        (m.decisions, m.decisions_on_time, m.sla_compliance_bps()),
        (4, 3, Some(7_500))
    );
    let horizontal = &m.conflicts[&ConflictKind::Horizontal];
    assert_eq!(
        (
            horizontal.detected,
            horizontal.resolved,
            horizontal.resolution_hours_total
        ),
        (1, 1, 30)
    );
}

/// Won amounts are summed exactly past `i64`: six sourced wins of `i64::MAX` (a log written
/// before inputs were capped) are six times `i64::MAX`, not a negative revenue.
#[test]
fn sourced_revenue_past_i64_is_exact_not_wrapped() {
    let sourced = Attribution {
        sourcing: Some(PartnerId(Uuid::nil())),
        influencers: Default::default(),
    };
    let mut m = ProgramMetrics::default();
    for i in 0..6 {
        let id = RegistrationId(Uuid::now_v7());
        m.apply(
            dealreg_domain::Position::at(i + 1),
            &won(id, Motion::Reseller, i64::MAX, sourced.clone(), 30),
        );
    }
    let usd = dealreg_domain::Currency::try_from("USD".to_string()).expect("usd");
    assert_eq!(
        m.motions[&Motion::Reseller]
            .sourced_minor
            .get(&usd)
            .copied(),
        Some(6 * i128::from(i64::MAX))
    );
}
