//! What every input must be, whichever command carries it: money positive in a real ISO
//! 4217 currency; dates written YYYY-MM-DD and within the policy's horizon; customer
//! domains that are domains, not IP addresses; no field the command does not have.

mod fixtures;
use fixtures::*;

/// `amount` in each kind of money input (a submission's estimate, a direct opportunity, a
/// commission payout): each is refused as an invalid field named in its details. Gives
/// the submission's refusal.
fn refused_in_every_money_input(partner: &TestPartner, amount: i64) -> DomainError {
    let deal = Deal::new(partner, Motion::Reseller);
    let submitted = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(|s| s.estimated_amount = usd(amount)))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(submitted.details["field"], "estimated_amount");
    let direct = Command::RecordDirectOpportunity(RecordDirectOpportunity {
        account: "acme.com".into(),
        opportunity_id: OpportunityId(uuid::Uuid::now_v7()),
        owner: "tom.ae@vendor.example".into(),
        product_line: "analytics".into(),
        amount: usd(amount),
    });
    let err = Scenario::given(partner.events())
        .when(direct)
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount");
    let payout = Command::RecordCommissionPayout(RecordCommissionPayout {
        partner_id: partner.id,
        amount: usd(amount),
        reference: "PAY-1".into(),
    });
    let err = Scenario::given(partner.events())
        .by(revops())
        .when(payout)
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "amount");
    submitted
}

#[test]
fn every_money_input_follows_one_rule_positive() {
    let partner = reseller(Tier::Gold);
    for amount in [0, -1] {
        refused_in_every_money_input(&partner, amount);
    }
}

/// No money input may exceed 10^15 minor units: six wins of `i64::MAX` once summed to a
/// negative balance in the ledger (issue 25). At the ceiling, over 9,000 inputs fit in
/// one `i64` sum.
#[test]
fn every_money_input_has_a_ceiling_so_sums_cannot_wrap() {
    let partner = reseller(Tier::Gold);
    for amount in [MAX_AMOUNT_MINOR + 1, i64::MAX] {
        let err = refused_in_every_money_input(&partner, amount);
        assert!(err.message.contains("at most"), "{}", err.message);
    }
    // The ceiling itself is an amount like any other.
    Scenario::given(partner.events())
        .by(partner.user())
        .when(
            Deal::new(&partner, Motion::Reseller)
                .submit_with(|s| s.estimated_amount = usd(MAX_AMOUNT_MINOR)),
        )
        .then_ok();
}

#[test]
fn currencies_are_iso_4217_codes_with_minor_units() {
    for code in ["ZZZ", "XAU", "usd", "DOLLAR"] {
        assert!(Money::new(100, code).is_err(), "{code}");
        let json = json!({ "amount_minor": 100, "currency": code });
        assert!(serde_json::from_value::<Money>(json).is_err(), "{code}");
    }
    assert_eq!(
        Money::new(1_975_308_600, "JPY").map(|m| m.to_string()),
        Ok("1,975,308,600 JPY".into())
    );
}

fn submission_json(expected_close: &str) -> serde_json::Value {
    json!({
        "type": "submit_registration",
        "registration_id": "0190a0a0-0000-7000-8000-000000000001",
        "partner_id": "0190a0a0-0000-7000-8000-000000000002",
        "customer": { "company": "Acme", "domain": "acme.com",
                      "contact": { "name": "Dana", "email": "dana@acme.com" } },
        "product_line": "analytics",
        "motion": "reseller",
        "estimated_amount": { "amount_minor": 100, "currency": "USD" },
        "expected_close": expected_close,
        "proof_of_work": "met the CFO"
    })
}

#[test]
fn dates_are_yyyy_mm_dd_exactly() {
    assert!(serde_json::from_value::<Command>(submission_json("2026-09-05")).is_ok());
    for bad in [
        "+10000-01-01",
        "2026-9-5",
        "2026-09-05 ",
        " 2026-09-05",
        "2026-02-30",
        "26-09-05",
        "2026/09/05",
    ] {
        let err = serde_json::from_value::<Command>(submission_json(bad));
        assert!(err.is_err(), "`{bad}` was accepted");
    }
}

#[test]
fn dates_beyond_the_policys_horizon_are_refused() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let err = Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(|s| s.expected_close = date("2062-06-30")))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "expected_close");
    Scenario::given(partner.events())
        .by(partner.user())
        .when(deal.submit_with(|s| s.expected_close = t0().date_naive() + days(730)))
        .then_ok();
    let certify = |expires_on| {
        Command::CertifyPartner(CertifyPartner {
            partner_id: partner.id,
            product_line: "analytics".into(),
            expires_on,
        })
    };
    let err = Scenario::given(partner.events())
        .when(certify(date("2126-01-01")))
        .then_error(RejectionCode::InvalidField);
    assert_eq!(err.details["field"], "expires_on");
    Scenario::given(partner.events())
        .when(certify(t0().date_naive() + days(1461)))
        .then_ok();
}

#[test]
fn ip_addresses_are_not_customer_domains() {
    let partner = reseller(Tier::Gold);
    for domain in [
        "192.168.1.10",
        "https://10.0.1.10/crm",
        "[2001:db8::1]",
        "2001:db8::1",
        "sales@192.168.1.10",
    ] {
        let deal = Deal::new(&partner, Motion::Reseller);
        let command = deal.submit_with(|s| s.customer.domain = domain.into());
        let err = Scenario::given(partner.events())
            .by(partner.user())
            .when(command)
            .then_error(RejectionCode::InvalidField);
        assert_eq!(err.details["field"], "customer.domain", "{domain}");
    }
}

#[test]
fn nested_input_refuses_fields_it_does_not_have() {
    let mut money = submission_json("2026-09-05");
    money["estimated_amount"]["cents"] = json!(1);
    assert!(
        serde_json::from_value::<Command>(money).is_err(),
        "an extra field in money"
    );
    let mut contact = submission_json("2026-09-05");
    contact["customer"]["contact"]["fax"] = json!("+1");
    assert!(serde_json::from_value::<Command>(contact).is_err());
    let actor = json!({ "kind": "partner", "partner_id": "0190a0a0-0000-7000-8000-000000000002", "user": "ann", "role": "channel_manager" });
    assert!(
        serde_json::from_value::<Actor>(actor).is_err(),
        "a role on a partner actor"
    );
    let evidence = json!({ "note": "x", "discount": 5 });
    assert!(serde_json::from_value::<StageEvidence>(evidence).is_err());
}
