//! The commission ledger: a worked example in exact cents, and the property that on any
//! sequence of wins and reversals the ledger balances and creates no money.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dealreg_domain::{
    AccountKey, Attribution, Currency, Event, Money, Motion, PartnerId, Policy, RegistrationId,
    Tier,
};
use dealreg_projections::ledger::{EntryKind, Ledger};
use dealreg_projections::Projection;
use proptest::prelude::*;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date")
}

fn usd(minor: i64) -> Money {
    Money::new(minor, "USD").expect("usd")
}

fn onboarded(p: PartnerId, motion: Motion) -> Event {
    Event::PartnerOnboarded {
        partner_id: p,
        name: "p".into(),
        motions: vec![motion],
        tier: Tier::Gold,
        territories: vec![],
        capacity: 10,
        at: t0(),
    }
}

fn won(
    id: RegistrationId,
    partner: PartnerId,
    motion: Motion,
    minor: i64,
    attribution: Attribution,
    at: DateTime<Utc>,
) -> Event {
    Event::DealWon {
        account: AccountKey("acme.com".into()),
        registration_id: id,
        partner_id: partner,
        motion,
        product_line: "analytics".into(),
        amount: usd(minor),
        attribution,
        renewal_date: None,
        order_reference: None,
        policy_version: 1,
        at,
    }
}

fn reversed(id: RegistrationId, minor: i64, at: DateTime<Utc>) -> Event {
    Event::RevenueReversed {
        account: AccountKey("acme.com".into()),
        registration_id: id,
        amount: usd(minor),
        reason: "refund".into(),
        at,
    }
}

fn fold(events: &[Event]) -> Ledger {
    let mut ledger = Ledger::default();
    for (i, e) in events.iter().enumerate() {
        ledger.apply(dealreg_domain::Position::at(i as u64 + 1), e);
    }
    ledger
}

/// The worked example of docs/ARCHITECTURE.md ("Commission ledger: a worked example").
#[test]
fn worked_example_in_exact_cents() {
    let reseller = PartnerId(Uuid::now_v7());
    let tech = PartnerId(Uuid::now_v7());
    let deal = RegistrationId(Uuid::now_v7());
    let attribution = Attribution {
        sourcing: Some(reseller),
        influencers: BTreeMap::from([(tech, 30)]),
    };
    let events = vec![
        Event::PolicyAdopted {
            policy: Policy::default_program(),
            at: t0(),
        },
        onboarded(reseller, Motion::Reseller),
        onboarded(tech, Motion::TechIsv),
        // USD 12,345.67 won on a reseller deal: the reseller sourced it (70 % left after
        // the influencer), the tech partner influenced 30 %.
        won(
            deal,
            reseller,
            Motion::Reseller,
            1_234_567,
            attribution,
            t0(),
        ),
        // USD 2,000.00 refunded 30 days later, inside the 90-day clawback window.
        reversed(deal, 200_000, t0() + Duration::days(30)),
    ];
    let ledger = fold(&events);
    let usd = Currency::try_from("USD".to_string()).expect("usd");
    let lines: Vec<(PartnerId, EntryKind, u32, i64)> = ledger
        .entries()
        .map(|e| (e.partner_id, e.kind, e.rate_bps, e.amount_minor))
        .collect();
    assert_eq!(
        lines,
        vec![
            // 1,234,567 × 70 % × 20.00 % = 172,839.38 → 172,839 (USD 1,728.39)
            (reseller, EntryKind::Accrual, 2000, 172_839),
            // 1,234,567 × 30 % × 3.00 % = 11,111.10 → 11,111 (USD 111.11)
            (tech, EntryKind::Accrual, 300, 11_111),
            // 172,839 × 200,000 / 1,234,567 = 27,999.9 → 27,999
            (reseller, EntryKind::Clawback, 2000, -27_999),
            // 11,111 × 200,000 / 1,234,567 = 1,799.99 → 1,799
            (tech, EntryKind::Clawback, 300, -1_799),
        ]
    );
    assert_eq!(ledger.balance(reseller, &usd), 144_840, "USD 1,448.40");
    assert_eq!(ledger.balance(tech, &usd), 9_312, "USD 93.12");

    // Finance pays the reseller what it is owed: the balance settles to zero.
    let mut paid = events.clone();
    paid.push(Event::CommissionPaidOut {
        partner_id: reseller,
        amount: Money::new(144_840, "USD").expect("usd"),
        reference: "PAY-2026-04-001".into(),
        at: t0() + Duration::days(40),
    });
    let settled = fold(&paid);
    assert_eq!(settled.balance(reseller, &usd), 0);
    assert_eq!(
        settled
            .entries()
            .last()
            .map(|e| (e.kind, e.amount_minor, e.registration_id)),
        Some((EntryKind::Payout, -144_840, None))
    );

    // Outside the window nothing is clawed back.
    let mut late = events.clone();
    late[4] = reversed(deal, 200_000, t0() + Duration::days(91));
    assert_eq!(fold(&late).balance(reseller, &usd), 172_839);
}

#[derive(Debug, Clone)]
enum Step {
    Win {
        deal: usize,
        minor: i64,
        sourcing: Option<usize>,
        influencers: Vec<(usize, u32)>,
        day: i64,
        motion: usize,
    },
    Reverse {
        deal: usize,
        minor: i64,
        day: i64,
    },
    Payout {
        partner: usize,
        minor: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0..6usize,
            1..10_000_000i64,
            proptest::option::of(0..4usize),
            proptest::collection::vec((0..4usize, 1..60u32), 0..3),
            0..200i64,
            0..5usize
        )
            .prop_map(
                |(deal, minor, sourcing, influencers, day, motion)| Step::Win {
                    deal,
                    minor,
                    sourcing,
                    influencers,
                    day,
                    motion
                }
            ),
        (0..6usize, 1..10_000_000i64, 0..200i64).prop_map(|(deal, minor, day)| Step::Reverse {
            deal,
            minor,
            day
        }),
        (0..4usize, 1..500_000i64).prop_map(|(partner, minor)| Step::Payout { partner, minor }),
    ]
}

proptest! {
    #[test]
    fn the_ledger_always_balances_and_creates_no_money(steps in proptest::collection::vec(step(), 1..40)) {
        let partners: Vec<PartnerId> = (0..4).map(|_| PartnerId(Uuid::now_v7())).collect();
        let deals: Vec<RegistrationId> = (0..6).map(|_| RegistrationId(Uuid::now_v7())).collect();
        let motions = [Motion::Referral, Motion::Reseller, Motion::Marketplace, Motion::Services, Motion::TechIsv];
        let mut events = vec![Event::PolicyAdopted { policy: Policy::default_program(), at: t0() }];
        events.extend(partners.iter().map(|p| onboarded(*p, Motion::Reseller)));
        // Only histories the domain allows: a deal is won once; reversals after the win,
        // never beyond what is left of the won amount.
        let mut won_amounts: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        let mut payouts = [0i64; 4];
        for s in &steps {
            match s {
                Step::Win { deal, minor, sourcing, influencers, day, motion } => {
                    if won_amounts.contains_key(deal) {
                        continue;
                    }
                    let mut attribution = Attribution { sourcing: sourcing.map(|i| partners[i]), influencers: BTreeMap::new() };
                    let mut total = 0;
                    for (i, pct) in influencers {
                        if Some(*i) == *sourcing || attribution.influencers.contains_key(&partners[*i]) || total + pct > 100 {
                            continue;
                        }
                        total += pct;
                        attribution.influencers.insert(partners[*i], *pct);
                    }
                    won_amounts.insert(*deal, (*minor, 0));
                    events.push(won(deals[*deal], partners[0], motions[*motion], *minor, attribution, t0() + Duration::days(*day)));
                }
                Step::Payout { partner, minor } => {
                    payouts[*partner] += *minor;
                    events.push(Event::CommissionPaidOut { partner_id: partners[*partner], amount: usd(*minor), reference: "PAY".into(), at: t0() + Duration::days(250) });
                }
                Step::Reverse { deal, minor, day } => {
                    let Some((amount, reversed_so_far)) = won_amounts.get_mut(deal) else { continue };
                    let take = (*minor).min(*amount - *reversed_so_far);
                    if take <= 0 {
                        continue;
                    }
                    *reversed_so_far += take;
                    events.push(reversed(deals[*deal], take, t0() + Duration::days(*day + 1)));
                }
            }
        }
        let ledger = fold(&events);

        // Entries sum to balances, per partner and currency.
        let mut sums: BTreeMap<(PartnerId, Currency), i128> = BTreeMap::new();
        for e in ledger.entries() {
            *sums.entry((e.partner_id, e.currency.clone())).or_default() += i128::from(e.amount_minor);
        }
        for (partner, by_currency) in ledger.balances() {
            for (currency, balance) in by_currency {
                prop_assert_eq!(sums.get(&(*partner, currency.clone())).copied().unwrap_or(0), *balance);
            }
        }
        prop_assert_eq!(sums.values().sum::<i128>(), ledger.balances().flat_map(|(_, b)| b.values()).sum::<i128>());

        // No money created or lost: per deal, clawbacks never exceed accruals, accruals never
        // exceed the highest rate on the whole amount, and a fully reversed deal nets zero
        // when every reversal fell inside the window.
        for (index, (amount, reversed_total)) in &won_amounts {
            let entries: Vec<_> = ledger.entries().filter(|e| e.registration_id == Some(deals[*index])).collect();
            let accrued: i64 = entries.iter().filter(|e| e.kind == EntryKind::Accrual).map(|e| e.amount_minor).sum();
            let clawed: i64 = -entries.iter().filter(|e| e.kind == EntryKind::Clawback).map(|e| e.amount_minor).sum::<i64>();
            prop_assert!(clawed >= 0 && clawed <= accrued, "clawed {} of {}", clawed, accrued);
            prop_assert!(accrued <= amount * 2000 / 10_000, "accrued {} on {}", accrued, amount);
            prop_assert!(entries.iter().all(|e| (e.kind == EntryKind::Accrual) == (e.amount_minor > 0)));
            if reversed_total == amount {
                let late = events.iter().any(|e| matches!(e, Event::RevenueReversed { registration_id, at, .. } if *registration_id == deals[*index] && *at > won_at(&events, deals[*index]) + Duration::days(90)));
                if !late {
                    prop_assert_eq!(accrued, clawed, "a fully reversed deal nets zero");
                }
            }
        }

        // Every payout is in the ledger as a negative entry of the same amount.
        for (i, paid) in payouts.iter().enumerate() {
            let booked: i64 = ledger.entries_for(partners[i]).filter(|e| e.kind == EntryKind::Payout).map(|e| e.amount_minor).sum();
            prop_assert_eq!(booked, -paid);
        }

        // The same log gives the same bytes.
        let again = fold(&events);
        prop_assert_eq!(dealreg_projections::snapshot(&again).expect("json"), dealreg_projections::snapshot(&ledger).expect("json"));
    }
}

fn won_at(events: &[Event], deal: RegistrationId) -> DateTime<Utc> {
    events
        .iter()
        .find_map(|e| match e {
            Event::DealWon {
                registration_id,
                at,
                ..
            } if *registration_id == deal => Some(*at),
            _ => None,
        })
        .unwrap_or_else(t0)
}

/// Sums are exact past `i64`: six wins of `i64::MAX` (a log written before inputs were
/// capped at 10^15, or 9,300 wins at the cap) give the partner the exact positive sum of
/// its accruals, not a balance wrapped negative.
#[test]
fn a_balance_past_i64_is_exact_not_wrapped() {
    let reseller = PartnerId(Uuid::now_v7());
    let mut events = vec![
        Event::PolicyAdopted {
            policy: Policy::default_program(),
            at: t0(),
        },
        onboarded(reseller, Motion::Reseller),
    ];
    for _ in 0..6 {
        let attribution = Attribution {
            sourcing: Some(reseller),
            influencers: BTreeMap::new(),
        };
        let deal = RegistrationId(Uuid::now_v7());
        events.push(won(
            deal,
            reseller,
            Motion::Reseller,
            i64::MAX,
            attribution,
            t0(),
        ));
    }
    let ledger = fold(&events);
    let accrued: i128 = ledger.entries().map(|e| i128::from(e.amount_minor)).sum();
    assert!(
        accrued > i128::from(i64::MAX),
        "six accruals near i64::MAX each"
    );
    let usd = Currency::try_from("USD".to_string()).expect("usd");
    assert_eq!(ledger.balance(reseller, &usd), accrued);
}
