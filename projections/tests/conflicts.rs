//! Conflict flags: SLA clocks, resolution, and likely duplicates across accounts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use dealreg_domain::{
    AccountKey, ConflictId, ConflictKind, Contact, Customer, DealKind, Event, Money, Motion,
    PartnerId, Policy, RegistrationId,
};
use dealreg_projections::conflicts::{
    add_business_days, normalise_company, ConflictFlags, FlagStatus,
};
use dealreg_projections::Projection;
use uuid::Uuid;

fn friday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 6, 15, 0, 0)
        .single()
        .expect("date")
}

fn submitted(domain: &str, company: &str) -> Event {
    Event::RegistrationSubmitted {
        account: AccountKey::from_domain(domain).expect("domain"),
        registration_id: RegistrationId(Uuid::now_v7()),
        partner_id: PartnerId(Uuid::now_v7()),
        customer: Customer {
            company: company.into(),
            domain: domain.into(),
            contact: Contact {
                name: "n".into(),
                email: "e@x.com".into(),
                phone: None,
            },
            region: None,
            vertical: None,
        }
        .on_record(),
        product_line: "analytics".into(),
        motion: Motion::Reseller,
        kind: DealKind::NewBusiness,
        estimated_amount: Money::new(1, "USD").expect("usd"),
        expected_close: friday().date_naive(),
        proof_of_work: "p".into(),
        certified: true,
        incumbent: false,
        approval_due_at: friday(),
        intro_due_at: None,
        policy_version: 1,
        at: friday(),
    }
}

#[test]
fn legal_suffixes_and_punctuation_do_not_hide_a_company() {
    assert_eq!(normalise_company("Acme Inc."), "acme");
    assert_eq!(normalise_company("ACME Corporation"), "acme");
    assert_eq!(normalise_company("Acme GmbH"), "acme");
    assert_eq!(
        normalise_company("Wonka Confections, Ltd"),
        "wonka confections"
    );
}

#[test]
fn resolution_plans_are_due_five_business_days_later() {
    // Friday 15:00 + 5 business days = the next Friday 15:00 (the weekend does not count).
    assert_eq!(add_business_days(friday(), 5), friday() + Duration::days(7));
}

#[test]
fn likely_duplicates_across_accounts_are_flagged_as_risks() {
    let mut flags = ConflictFlags::default();
    for (i, (domain, company)) in [
        ("acme.com", "Acme Inc."),
        ("www.acme.de", "ACME Corporation"),
        ("shop.acme.co.uk", "Acme GmbH"),
        ("acme-robotics.com", "Acme Inc"),
        ("globex.com", "Globex"),
        ("initech.com", "Initrode"),
    ]
    .iter()
    .enumerate()
    {
        flags.apply(
            dealreg_domain::Position::at(i as u64 + 1),
            &submitted(domain, company),
        );
    }
    let pairs: Vec<(String, String)> = flags
        .duplicates()
        .map(|d| (d.accounts[0].0.clone(), d.accounts[1].0.clone()))
        .collect();
    assert!(
        pairs.contains(&("acme.com".into(), "acme.de".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("acme.co.uk".into(), "acme.com".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("acme-robotics.com".into(), "acme.com".into())),
        "same company name on another domain: {pairs:?}"
    );
    assert!(
        !pairs.iter().any(|(a, b)| a.contains("globex")
            || b.contains("globex")
            || a.contains("initech")
            || b.contains("initech")),
        "{pairs:?}"
    );
    assert!(flags
        .duplicates()
        .all(|d| d.status == FlagStatus::Risk && !d.reasons.is_empty()));
}

#[test]
fn a_detected_conflict_carries_its_sla_clock_until_resolved() {
    let mut flags = ConflictFlags::default();
    flags.apply(
        dealreg_domain::Position::at(1),
        &Event::PolicyAdopted {
            policy: Policy::default_program(),
            at: friday(),
        },
    );
    let account = AccountKey("acme.com".into());
    let id = ConflictId("acme.com/analytics/1".into());
    flags.apply(
        dealreg_domain::Position::at(2),
        &Event::ConflictDetected {
            account: account.clone(),
            conflict_id: id.clone(),
            kind: ConflictKind::Horizontal,
            product_line: "analytics".into(),
            parties: vec![],
            reasons: vec!["two partners".into()],
            acknowledge_by: friday() + Duration::hours(24),
            resolution_plan_by: None,
            policy_version: 1,
            at: friday(),
        },
    );
    let (open, _) = flags.account(&account);
    assert_eq!(
        (
            open[0].status,
            open[0].acknowledge_by,
            open[0].resolution_plan_by
        ),
        (
            FlagStatus::Active,
            friday() + Duration::hours(24),
            friday() + Duration::days(7)
        )
    );
    flags.apply(
        dealreg_domain::Position::at(3),
        &Event::ConflictAcknowledged {
            account: account.clone(),
            conflict_id: id.clone(),
            by: "cm".into(),
            note: String::new(),
            at: friday() + Duration::hours(2),
        },
    );
    flags.apply(
        dealreg_domain::Position::at(4),
        &Event::ConflictResolved {
            account: account.clone(),
            conflict_id: id,
            winner: None,
            rationale: "r".into(),
            at: friday() + Duration::days(3),
        },
    );
    let (done, _) = flags.account(&account);
    assert_eq!(
        (done[0].status, done[0].acknowledged_at, done[0].resolved_at),
        (
            FlagStatus::None,
            Some(friday() + Duration::hours(2)),
            Some(friday() + Duration::days(3))
        )
    );
}

#[test]
fn numbered_names_are_different_companies_and_similar_names_are_flagged_a_few_at_a_time() {
    let mut flags = ConflictFlags::default();
    // 3,000 stores of one chain: alike but for their numbers.
    for n in 0..3_000u64 {
        flags.apply(
            dealreg_domain::Position::at(n + 1),
            &submitted(&format!("store{n}.example"), &format!("Store {n}")),
        );
    }
    assert_eq!(
        flags.duplicates().count(),
        0,
        "`Store 12` and `Store 13` are not one company"
    );
    // 300 names that are alike and carry no number: each new one is flagged against at
    // most 8 earlier ones, the closest first.
    for n in 0..300u64 {
        let suffix: String = format!("{n:03}")
            .chars()
            .map(|d| char::from(b'a' + (d as u8 - b'0')))
            .collect();
        flags.apply(
            dealreg_domain::Position::at(10_000 + n),
            &submitted(
                &format!("north{n}.example"),
                &format!("Northwind Traders {suffix}"),
            ),
        );
    }
    let flagged = flags.duplicates().count();
    assert!(flagged > 0, "alike names are still flagged");
    assert!(flagged <= 300 * 8, "{flagged} flags for 300 accounts");
    // The stored state stays small: one first word's row keeps the last 256 accounts.
    let snapshot = dealreg_projections::snapshot(&flags).expect("snapshot");
    let kept = snapshot
        .pointer("/tables/first_word/store")
        .or_else(|| snapshot.pointer("/first_word/store"))
        .and_then(|v| v.as_array())
        .map(Vec::len);
    assert_eq!(kept, Some(256), "{}", &snapshot.to_string()[..300]);
}
