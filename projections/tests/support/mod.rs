//! Events for the projection tests, written as a channel team's history: who registered
//! what, who influenced it, what was decided and won. Each builder takes the few facts a
//! test is about and fills the rest.
#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use dealreg_domain::{
    AccountKey, Attribution, Contact, Currency, Customer, DealKind, Event, Money, Motion,
    OpportunityId, PartnerId, Position, RegistrationId, Tier,
};
use dealreg_projections::Projection;
use uuid::Uuid;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date")
}

pub fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

pub fn usd() -> Currency {
    Currency::try_from("USD".to_string()).expect("usd")
}

pub fn dollars(minor: i64) -> Money {
    Money::new(minor, "USD").expect("usd")
}

pub fn account(domain: &str) -> AccountKey {
    AccountKey(domain.into())
}

pub fn partner() -> PartnerId {
    PartnerId(Uuid::now_v7())
}

pub fn registration() -> RegistrationId {
    RegistrationId(Uuid::now_v7())
}

/// Folds `events` in order into a fresh projection.
pub fn fold<P: Projection>(events: &[Event]) -> P {
    let mut p = P::default();
    for (i, e) in events.iter().enumerate() {
        p.apply(Position::at(i as u64 + 1), e);
    }
    p
}

pub fn onboarded(partner_id: PartnerId, name: &str) -> Event {
    Event::PartnerOnboarded {
        partner_id,
        name: name.into(),
        motions: Motion::ALL.to_vec(),
        tier: Tier::Gold,
        territories: vec![],
        capacity: 10,
        at: t0(),
    }
}

/// An event from its JSON, as the log holds it: the events a domain change may add
/// optional fields to (submissions, wins) are written so, and read with their defaults.
pub fn event(json: serde_json::Value) -> Event {
    serde_json::from_value(json).expect("an event")
}

pub fn submitted(
    id: RegistrationId,
    partner_id: PartnerId,
    on: &AccountKey,
    motion: Motion,
    estimate_minor: i64,
) -> Event {
    let customer = Customer {
        company: "Acme".into(),
        domain: on.0.clone(),
        contact: Contact {
            name: "n".into(),
            email: format!("e@{}", on.0),
            phone: None,
        },
        region: None,
        vertical: None,
    }
    .on_record();
    event(serde_json::json!({
        "type": "registration_submitted",
        "account": on,
        "registration_id": id,
        "partner_id": partner_id,
        "customer": customer,
        "product_line": "analytics",
        "motion": motion,
        "kind": DealKind::NewBusiness,
        "estimated_amount": dollars(estimate_minor),
        "expected_close": t0().date_naive(),
        "proof_of_work": "p",
        "certified": true,
        "incumbent": false,
        "approval_due_at": t0() + Duration::hours(48),
        "policy_version": 1,
        "at": t0(),
    }))
}

pub fn approved(id: RegistrationId, partner_id: PartnerId, on: &AccountKey) -> Event {
    Event::RegistrationApproved {
        account: on.clone(),
        registration_id: id,
        partner_id,
        rationale: "r".into(),
        protection_days: 90,
        expires_at: day(90),
        policy_version: 1,
        at: day(1),
    }
}

pub fn declined(id: RegistrationId, partner_id: PartnerId, on: &AccountKey) -> Event {
    Event::RegistrationDeclined {
        account: on.clone(),
        registration_id: id,
        partner_id,
        reason_code: "not_eligible".into(),
        rationale: "r".into(),
        appeal_until: day(10),
        policy_version: 1,
        at: day(1),
    }
}

pub fn sourcing_set(id: RegistrationId, partner_id: PartnerId, on: &AccountKey) -> Event {
    Event::SourcingPartnerSet {
        account: on.clone(),
        registration_id: id,
        partner_id,
        previous: None,
        actor: "cm".into(),
        reason: "r".into(),
        at: day(2),
    }
}

pub fn influencer_added(
    id: RegistrationId,
    partner_id: PartnerId,
    on: &AccountKey,
    percent: u32,
) -> Event {
    Event::InfluencerAdded {
        account: on.clone(),
        registration_id: id,
        partner_id,
        percent,
        actor: "cm".into(),
        reason: "r".into(),
        at: day(2),
    }
}

pub fn influencer_removed(id: RegistrationId, partner_id: PartnerId, on: &AccountKey) -> Event {
    Event::InfluencerRemoved {
        account: on.clone(),
        registration_id: id,
        partner_id,
        actor: "cm".into(),
        reason: "r".into(),
        at: day(3),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn won(
    id: RegistrationId,
    partner_id: PartnerId,
    on: &AccountKey,
    motion: Motion,
    minor: i64,
    attribution: Attribution,
    on_day: i64,
    renewal_date: Option<NaiveDate>,
) -> Event {
    event(serde_json::json!({
        "type": "deal_won",
        "account": on,
        "registration_id": id,
        "partner_id": partner_id,
        "motion": motion,
        "product_line": "analytics",
        "amount": dollars(minor),
        "attribution": attribution,
        "renewal_date": renewal_date,
        "policy_version": 1,
        "at": day(on_day),
    }))
}

pub fn lost(id: RegistrationId, partner_id: PartnerId, on: &AccountKey) -> Event {
    Event::DealLost {
        account: on.clone(),
        registration_id: id,
        partner_id,
        reason: "r".into(),
        policy_version: 1,
        at: day(20),
    }
}

pub fn direct_opportunity(on: &AccountKey, minor: i64) -> Event {
    Event::DirectOpportunityRecorded {
        account: on.clone(),
        opportunity_id: OpportunityId(Uuid::now_v7()),
        owner: "tom.ae@vendor.example".into(),
        product_line: "analytics".into(),
        amount: dollars(minor),
        at: day(1),
    }
}

/// Sourcing `sourcing`, with `influencers` at their percents.
pub fn attribution(sourcing: Option<PartnerId>, influencers: &[(PartnerId, u32)]) -> Attribution {
    Attribution {
        sourcing,
        influencers: influencers.iter().copied().collect(),
    }
}
