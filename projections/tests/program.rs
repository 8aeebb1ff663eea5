//! The program view: given a history, the figures a channel team reads.

mod support;

use dealreg_domain::{Event, Motion};
use dealreg_projections::program::{Program, ProgramReport};
use support::*;

fn report(events: &[Event]) -> ProgramReport {
    fold::<Program>(events).report()
}

#[test]
fn a_deal_sourced_70_and_influenced_30_counts_30_percent_as_influenced() {
    let (acme, sourcer, influencer, id) =
        (account("acme.com"), partner(), partner(), registration());
    let split = attribution(Some(sourcer), &[(influencer, 30)]);
    let r = report(&[
        submitted(id, sourcer, &acme, Motion::Reseller, 900_000),
        approved(id, sourcer, &acme),
        won(
            id,
            sourcer,
            &acme,
            Motion::Reseller,
            1_000_000,
            split,
            30,
            None,
        ),
    ]);
    let reseller = &r.motions[&Motion::Reseller];
    assert_eq!(reseller.won_minor.get(&usd()), Some(&1_000_000));
    assert_eq!(reseller.sourced_minor.get(&usd()), Some(&700_000));
    assert_eq!(reseller.influenced_minor.get(&usd()), Some(&300_000));
}

#[test]
fn influencer_only_wins_are_influenced_whole_and_unattributed_ones_neither() {
    let (acme, owner, influencer) = (account("acme.com"), partner(), partner());
    let (a, b) = (registration(), registration());
    let r = report(&[
        submitted(a, owner, &acme, Motion::TechIsv, 1),
        submitted(b, owner, &acme, Motion::TechIsv, 1),
        won(
            a,
            owner,
            &acme,
            Motion::TechIsv,
            250_000,
            attribution(None, &[(influencer, 40)]),
            10,
            None,
        ),
        won(
            b,
            owner,
            &acme,
            Motion::TechIsv,
            100_000,
            attribution(None, &[]),
            10,
            None,
        ),
    ]);
    let tech = &r.motions[&Motion::TechIsv];
    assert_eq!(tech.won_minor.get(&usd()), Some(&350_000));
    assert_eq!(tech.influenced_minor.get(&usd()), Some(&250_000));
    assert_eq!(tech.sourced_minor.get(&usd()), Some(&0));
}

#[test]
fn a_share_rounds_the_sourced_part_down_and_the_parts_add_up() {
    let (acme, sourcer, influencer, id) =
        (account("acme.com"), partner(), partner(), registration());
    let r = report(&[
        submitted(id, sourcer, &acme, Motion::Reseller, 1),
        won(
            id,
            sourcer,
            &acme,
            Motion::Reseller,
            1_001,
            attribution(Some(sourcer), &[(influencer, 33)]),
            5,
            None,
        ),
    ]);
    let reseller = &r.motions[&Motion::Reseller];
    assert_eq!(
        reseller.sourced_minor.get(&usd()),
        Some(&670),
        "67 % of 1 001, rounded down"
    );
    assert_eq!(reseller.influenced_minor.get(&usd()), Some(&331));
}

#[test]
fn open_pipeline_sums_pending_and_protected_estimates_by_share() {
    let (acme, sourcer, influencer) = (account("acme.com"), partner(), partner());
    let (pending, protected, turned_down, won_one) = (
        registration(),
        registration(),
        registration(),
        registration(),
    );
    let r = report(&[
        submitted(pending, sourcer, &acme, Motion::Reseller, 100_000),
        submitted(protected, sourcer, &acme, Motion::Reseller, 400_000),
        approved(protected, sourcer, &acme),
        sourcing_set(protected, sourcer, &acme),
        influencer_added(protected, influencer, &acme, 25),
        submitted(turned_down, sourcer, &acme, Motion::Reseller, 800_000),
        declined(turned_down, sourcer, &acme),
        submitted(won_one, sourcer, &acme, Motion::Reseller, 50_000),
        won(
            won_one,
            sourcer,
            &acme,
            Motion::Reseller,
            60_000,
            attribution(Some(sourcer), &[]),
            9,
            None,
        ),
    ]);
    let open = &r.motions[&Motion::Reseller].open;
    assert_eq!(open.registrations, 2);
    assert_eq!(open.estimated_minor.get(&usd()), Some(&500_000));
    assert_eq!(
        open.sourced_minor.get(&usd()),
        Some(&300_000),
        "75 % of the protected one"
    );
    assert_eq!(
        open.influenced_minor.get(&usd()),
        Some(&100_000),
        "25 % of it"
    );
}

#[test]
fn per_partner_registrations_approval_rate_win_rate_and_won_revenue() {
    let (acme, northwind, contoso) = (account("acme.com"), partner(), partner());
    let ids: Vec<_> = (0..5).map(|_| registration()).collect();
    let sourced = |p| attribution(Some(p), &[]);
    let r = report(&[
        onboarded(northwind, "Northwind"),
        onboarded(contoso, "Contoso"),
        submitted(ids[0], northwind, &acme, Motion::Reseller, 1),
        submitted(ids[1], northwind, &acme, Motion::Reseller, 1),
        submitted(ids[2], northwind, &acme, Motion::Reseller, 1),
        submitted(ids[3], northwind, &acme, Motion::Reseller, 1),
        submitted(ids[4], contoso, &acme, Motion::Referral, 1),
        approved(ids[0], northwind, &acme),
        approved(ids[1], northwind, &acme),
        approved(ids[2], northwind, &acme),
        declined(ids[3], northwind, &acme),
        won(
            ids[0],
            northwind,
            &acme,
            Motion::Reseller,
            300_000,
            sourced(northwind),
            20,
            None,
        ),
        won(
            ids[1],
            northwind,
            &acme,
            Motion::Reseller,
            100_000,
            sourced(northwind),
            40,
            None,
        ),
        lost(ids[2], northwind, &acme),
    ]);
    let n = &r.partners[&northwind];
    assert_eq!(n.name, "Northwind");
    assert_eq!((n.registrations, n.approved, n.declined), (4, 3, 1));
    assert_eq!(n.approval_rate_bps, Some(7_500));
    assert_eq!((n.won, n.lost, n.win_rate_bps), (2, 1, Some(6_666)));
    assert_eq!(n.won_minor.get(&usd()), Some(&400_000));
    let c = &r.partners[&contoso];
    assert_eq!(
        (c.registrations, c.approval_rate_bps, c.win_rate_bps),
        (1, None, None)
    );

    let reseller = &r.motions[&Motion::Reseller];
    assert_eq!(reseller.average_deal_minor.get(&usd()), Some(&200_000));
    assert_eq!(reseller.average_cycle_days, Some(30), "20 and 40 days");
}

#[test]
fn partner_deals_beside_direct_opportunities_without_a_direct_win_rate() {
    let (acme, p, a, b) = (
        account("acme.com"),
        partner(),
        registration(),
        registration(),
    );
    let r = report(&[
        submitted(a, p, &acme, Motion::Reseller, 1),
        submitted(b, p, &acme, Motion::Reseller, 1),
        won(
            a,
            p,
            &acme,
            Motion::Reseller,
            10_000,
            attribution(Some(p), &[]),
            3,
            None,
        ),
        lost(b, p, &acme),
        direct_opportunity(&account("globex.com"), 70_000),
        direct_opportunity(&account("initech.com"), 30_000),
    ]);
    let d = &r.partner_vs_direct;
    assert_eq!(
        (d.partner_registrations, d.partner_won, d.partner_lost),
        (2, 1, 1)
    );
    assert_eq!(d.partner_win_rate_bps, Some(5_000));
    assert_eq!(d.direct_opportunities, 2);
    assert_eq!(d.direct_minor.get(&usd()), Some(&100_000));
    let json = serde_json::to_value(&r).expect("json");
    assert!(
        json["partner_vs_direct"]
            .get("direct_win_rate_bps")
            .is_none(),
        "no direct outcome is in the log, so no direct win rate is made up"
    );
}

#[test]
fn reversed_revenue_is_netted_from_the_win_and_its_shares() {
    let (acme, sourcer, influencer, id) =
        (account("acme.com"), partner(), partner(), registration());
    let r = report(&[
        submitted(id, sourcer, &acme, Motion::Reseller, 1),
        won(
            id,
            sourcer,
            &acme,
            Motion::Reseller,
            1_000_000,
            attribution(Some(sourcer), &[(influencer, 20)]),
            5,
            None,
        ),
        Event::RevenueReversed {
            account: acme.clone(),
            registration_id: id,
            amount: dollars(500_000),
            reason: "refund".into(),
            at: day(40),
        },
    ]);
    let reseller = &r.motions[&Motion::Reseller];
    assert_eq!(reseller.won_minor.get(&usd()), Some(&500_000));
    assert_eq!(reseller.sourced_minor.get(&usd()), Some(&400_000));
    assert_eq!(reseller.influenced_minor.get(&usd()), Some(&100_000));
}
