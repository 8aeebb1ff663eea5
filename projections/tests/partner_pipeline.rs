//! What a partner sees in its pipeline: the registrations it owns, those it influences
//! (marked so, without the owner's name or plan), and after a win the renewal.

mod support;

use chrono::NaiveDate;
use dealreg_domain::{Event, Motion, PartnerId};
use dealreg_projections::pipeline::{PartnerRole, PartnerRow, Pipeline, RenewalOwner};
use support::*;

fn rows(pipeline: &Pipeline, viewer: PartnerId) -> Vec<PartnerRow> {
    pipeline.partner_rows(viewer).collect()
}

#[test]
fn an_influencer_sees_the_deal_it_influences_marked_as_influenced_and_nothing_of_the_owner() {
    let (acme, owner, influencer, id) = (account("acme.com"), partner(), partner(), registration());
    let pipeline: Pipeline = fold(&[
        onboarded(owner, "Northwind Traders"),
        onboarded(influencer, "Tailspin Toys"),
        submitted(id, owner, &acme, Motion::Reseller, 480_000),
        approved(id, owner, &acme),
        influencer_added(id, influencer, &acme, 20),
    ]);
    let seen = rows(&pipeline, influencer);
    assert_eq!(seen.len(), 1);
    let row = &seen[0];
    assert_eq!(row.registration_id, id);
    assert_eq!(row.role, PartnerRole::Influencer);
    assert_eq!(
        row.owner, None,
        "the owning partner is not named to an influencer"
    );
    assert_eq!(row.next_step, None, "the owner's plan is its own");
    assert_eq!(row.status, "protected");
    let json = serde_json::to_string(row).expect("json");
    for secret in [
        "480000",
        "Northwind",
        &owner.to_string(),
        "percent",
        "attribution",
    ] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }

    let own = rows(&pipeline, owner);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].role, PartnerRole::Owner);
    assert_eq!(own[0].owner.as_deref(), Some("Northwind Traders"));
}

#[test]
fn a_removed_influencer_stops_seeing_the_deal() {
    let (acme, owner, influencer, id) = (account("acme.com"), partner(), partner(), registration());
    let pipeline: Pipeline = fold(&[
        submitted(id, owner, &acme, Motion::Reseller, 1),
        influencer_added(id, influencer, &acme, 20),
        influencer_removed(id, influencer, &acme),
    ]);
    assert!(rows(&pipeline, influencer).is_empty());
    assert_eq!(rows(&pipeline, owner).len(), 1);
}

#[test]
fn a_partner_with_no_part_in_a_deal_never_sees_it() {
    let (acme, owner, influencer, stranger, id) = (
        account("acme.com"),
        partner(),
        partner(),
        partner(),
        registration(),
    );
    let pipeline: Pipeline = fold(&[
        submitted(id, owner, &acme, Motion::Reseller, 1),
        sourcing_set(id, owner, &acme),
        influencer_added(id, influencer, &acme, 20),
        won(
            id,
            owner,
            &acme,
            Motion::Reseller,
            5,
            attribution(Some(owner), &[(influencer, 20)]),
            9,
            None,
        ),
    ]);
    assert!(rows(&pipeline, stranger).is_empty());
    assert!(pipeline.partner_view(stranger).is_empty());
    assert_eq!(
        rows(&pipeline, influencer).len(),
        1,
        "the win keeps the influencer"
    );
}

#[test]
fn an_owner_that_also_influences_its_deal_sees_it_once_as_owner() {
    let (acme, owner, id) = (account("acme.com"), partner(), registration());
    let pipeline: Pipeline = fold(&[
        submitted(id, owner, &acme, Motion::TechIsv, 1),
        influencer_added(id, owner, &acme, 30),
    ]);
    let seen = rows(&pipeline, owner);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].role, PartnerRole::Owner);
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

#[test]
fn after_a_win_the_row_shows_the_renewal_date_and_owner_and_follows_a_reassignment() {
    let (acme, owner, influencer, other, id) = (
        account("acme.com"),
        partner(),
        partner(),
        partner(),
        registration(),
    );
    let renews = date(2027, 4, 1);
    let history = vec![
        submitted(id, owner, &acme, Motion::Reseller, 1),
        approved(id, owner, &acme),
        influencer_added(id, influencer, &acme, 20),
        won(
            id,
            owner,
            &acme,
            Motion::Reseller,
            5,
            attribution(Some(owner), &[(influencer, 20)]),
            9,
            Some(renews),
        ),
    ];
    let pipeline: Pipeline = fold(&history);
    let own = &rows(&pipeline, owner)[0];
    assert_eq!(own.renewal_date, Some(renews));
    assert_eq!(own.renewal_owner, Some(RenewalOwner::ThisPartner));
    let influenced = &rows(&pipeline, influencer)[0];
    assert_eq!(influenced.renewal_date, Some(renews));
    assert_eq!(influenced.renewal_owner, Some(RenewalOwner::AnotherPartner));

    let mut later = history.clone();
    later.push(Event::RenewalOwnershipReassigned {
        account: acme.clone(),
        product_line: "analytics".into(),
        from: Some(owner),
        to: other,
        reason: "r".into(),
        at: day(200),
    });
    let confirmed_on = date(2027, 5, 1);
    later.push(Event::RenewalOwnershipConfirmed {
        account: acme.clone(),
        product_line: "analytics".into(),
        partner_id: other,
        renewal_date: confirmed_on,
        policy_version: 1,
        at: day(300),
    });
    let pipeline: Pipeline = fold(&later);
    let own = &rows(&pipeline, owner)[0];
    assert_eq!(own.renewal_owner, Some(RenewalOwner::AnotherPartner));
    assert_eq!(own.renewal_date, Some(confirmed_on));
    assert!(
        rows(&pipeline, other).is_empty(),
        "a renewal owner is not shown the old deal"
    );
}

#[test]
fn before_a_win_no_renewal_and_the_vendor_rows_are_as_before() {
    let (acme, owner, influencer, id) = (account("acme.com"), partner(), partner(), registration());
    let pipeline: Pipeline = fold(&[
        submitted(id, owner, &acme, Motion::Reseller, 1),
        influencer_added(id, influencer, &acme, 20),
        won(
            id,
            owner,
            &acme,
            Motion::Reseller,
            5,
            attribution(None, &[(influencer, 20)]),
            9,
            Some(date(2027, 4, 1)),
        ),
    ]);
    let vendor = serde_json::to_value(pipeline.vendor_view()).expect("json");
    let text = vendor.to_string();
    assert!(
        !text.contains("renewal"),
        "vendor rows keep their shape: {text}"
    );
    assert!(!text.contains("\"role\""), "{text}");
    let fresh: Pipeline = fold(&[submitted(id, owner, &acme, Motion::Reseller, 1)]);
    let row = serde_json::to_value(&rows(&fresh, owner)[0]).expect("json");
    assert!(row.get("renewal_date").is_none() && row.get("renewal_owner").is_none());
}
