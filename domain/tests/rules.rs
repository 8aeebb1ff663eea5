//! The first scenarios written for docs/RULES.md, as `given(events).when(command)
//! .then(events | error)`, one or more per rule. The rules are covered in depth, by concern,
//! in the files beside this one:
//!
//! | docs/RULES.md | tests |
//! |---|---|
//! | Actors; Visibility | `authorisation.rs` |
//! | Partner motions (stages, exit criteria) | `stages_and_attribution.rs` |
//! | Partner facts: motions, tier, capacity, status, certification | `partners_and_policy.rs`, `certification_gates.rs` |
//! | Partner facts: territories, named accounts, exclusivity | `partner_reach.rs` |
//! | 1 eligibility, 8 uniqueness | `registration_rules.rs`, `input_limits.rs` |
//! | 2 protection window, extensions | `protection_window.rs` |
//! | 3 renewal and expansion ownership | `renewals_and_conflicts.rs`, `renewal_window.rs` |
//! | 4 conflict hierarchy | `conflict_hierarchy.rs` |
//! | 5 appeals | `appeals.rs` |
//! | 6 SLAs (decision 48 h, referral 24 h, conflict 24 h / 5 business days, reminder 7 d) | `protection_window.rs`, `partner_reach.rs`, `renewals_and_conflicts.rs` |
//! | 7 inactivity and reassignment | `protection_window.rs`, `reassignment.rs` |
//! | Conflict types, signals, status and SLA | `renewals_and_conflicts.rs`, `conflict_lifecycle.rs` |
//! | Attribution | `stages_and_attribution.rs` |
//! | Commission, metrics | `projections/tests/ledger.rs`, `projections/tests/metrics.rs` |
//!
//! Histories are built by running earlier commands through the same harness (`World`), so
//! the given events are exactly what the rules produce, and each test reads like its rule.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use dealreg_domain::command::*;
use dealreg_domain::harness::{t0, Scenario};
use dealreg_domain::policy::TieBreak;
use dealreg_domain::{
    Actor, Command, ConflictKind, Contact, Customer, DealKind, Event, Money, Motion, OpportunityId,
    PartnerId, Policy, RegistrationId, RejectionCode, StageEvidence, Tier, VendorRole,
};
use serde_json::json;
use uuid::Uuid;

fn cm() -> Actor {
    Actor::Vendor {
        role: VendorRole::ChannelManager,
        user: "cm".into(),
    }
}
fn auditor() -> Actor {
    Actor::Vendor {
        role: VendorRole::Auditor,
        user: "audit".into(),
    }
}
fn revops() -> Actor {
    Actor::Vendor {
        role: VendorRole::RevOps,
        user: "revops".into(),
    }
}
fn direct() -> Actor {
    Actor::Vendor {
        role: VendorRole::DirectSales,
        user: "ae".into(),
    }
}
fn system() -> Actor {
    Actor::System {
        component: "timekeeper".into(),
    }
}
fn partner(p: PartnerId) -> Actor {
    Actor::Partner {
        partner_id: p,
        user: "rep".into(),
    }
}
fn day(d: &str) -> NaiveDate {
    d.parse().expect("date")
}
fn usd(minor: i64) -> Money {
    Money::new(minor, "USD").expect("money")
}

/// A growing history, built by running commands through the harness.
struct World {
    events: Vec<Event>,
    policy: Policy,
}

impl World {
    fn new() -> World {
        World {
            events: Vec::new(),
            policy: Policy::default_program(),
        }
    }
    fn with_policy(policy: Policy) -> World {
        World {
            events: Vec::new(),
            policy,
        }
    }
    fn scenario(&self, actor: Actor, at: DateTime<Utc>) -> Scenario {
        Scenario::given(self.events.clone())
            .with_policy(self.policy.clone())
            .by(actor)
            .at(at)
    }
    fn run(&mut self, actor: Actor, at: DateTime<Utc>, command: Command) -> Vec<Event> {
        let events = self.scenario(actor, at).when(command).then_ok();
        self.events.extend(events.clone());
        events
    }
    /// An active partner in `motion` and `tier`, certified in analytics and security.
    fn partner(&mut self, motion: Motion, tier: Tier, capacity: u32) -> PartnerId {
        let id = PartnerId(Uuid::now_v7());
        self.run(
            cm(),
            t0(),
            Command::OnboardPartner(OnboardPartner {
                partner_id: id,
                name: format!("P-{id}"),
                motions: vec![motion],
                tier,
                territories: vec![],
                capacity,
            }),
        );
        for line in ["analytics", "security"] {
            self.run(
                cm(),
                t0(),
                Command::CertifyPartner(CertifyPartner {
                    partner_id: id,
                    product_line: line.into(),
                    expires_on: day("2027-12-31"),
                }),
            );
        }
        id
    }
    fn submit(&mut self, p: PartnerId, domain: &str, line: &str, motion: Motion) -> RegistrationId {
        let id = RegistrationId(Uuid::now_v7());
        self.run(partner(p), t0(), submit(id, p, domain, line, motion));
        id
    }
    fn approve(&mut self, id: RegistrationId, domain: &str) {
        self.run(cm(), t0(), approve(id, domain));
    }
    /// Advances a protected, attributed registration to its motion's closing stage, each
    /// exit with the evidence it needs (a discount inside every tier's band).
    fn advance_to_closing_stage(&mut self, id: RegistrationId, domain: &str) {
        let motion = self
            .events
            .iter()
            .find_map(|e| match e {
                Event::RegistrationSubmitted {
                    registration_id,
                    motion,
                    ..
                } if *registration_id == id => Some(*motion),
                _ => None,
            })
            .expect("a submitted registration");
        let names = dealreg_domain::stages::stages(motion);
        let closing = dealreg_domain::stages::closing_stage(motion);
        for stage in names.iter().take(closing + 1).skip(1) {
            let evidence = StageEvidence {
                note: "exit criteria met".into(),
                discount_percent: Some(5),
                vendor_owner: Some("ae@vendor.example".into()),
                offer_reference: Some("offer-1".into()),
                transaction_reference: Some("txn-1".into()),
                success_criteria: Some("go-live in Q3".into()),
                integration: Some("Snowflake".into()),
                next_step: None,
            };
            self.run(
                cm(),
                t0(),
                Command::AdvanceStage(AdvanceStage {
                    account: domain.into(),
                    registration_id: id,
                    to_stage: (*stage).into(),
                    evidence,
                }),
            );
        }
    }
}

fn submit(id: RegistrationId, p: PartnerId, domain: &str, line: &str, motion: Motion) -> Command {
    Command::SubmitRegistration(SubmitRegistration {
        registration_id: id,
        partner_id: p,
        customer: Customer {
            company: "Acme Robotics".into(),
            domain: domain.into(),
            contact: Contact {
                name: "Dana".into(),
                email: "dana@acme.com".into(),
                phone: None,
            },
            region: None,
            vertical: None,
        },
        product_line: line.into(),
        motion,
        estimated_amount: usd(5_000_000),
        expected_close: day("2026-06-30"),
        proof_of_work: "Workshop with the CFO on 2026-02-20".into(),
        kind: DealKind::NewBusiness,
    })
}

fn approve(id: RegistrationId, domain: &str) -> Command {
    Command::ApproveRegistration(ApproveRegistration {
        account: domain.into(),
        registration_id: id,
        rationale: "qualified".into(),
    })
}

fn with_submit(
    command: Command,
    f: impl FnOnce(&mut Customer, &mut String, &mut String),
) -> Command {
    match command {
        Command::SubmitRegistration(SubmitRegistration {
            registration_id,
            partner_id,
            mut customer,
            mut product_line,
            motion,
            estimated_amount,
            expected_close,
            mut proof_of_work,
            kind,
        }) => {
            f(&mut customer, &mut product_line, &mut proof_of_work);
            Command::SubmitRegistration(SubmitRegistration {
                registration_id,
                partner_id,
                customer,
                product_line,
                motion,
                estimated_amount,
                expected_close,
                proof_of_work,
                kind,
            })
        }
        other => other,
    }
}

/// Blanks one field of a submission.
type Blank = Box<dyn Fn(&mut Customer, &mut String, &mut String)>;

fn new_id() -> RegistrationId {
    RegistrationId(Uuid::now_v7())
}

// ---------------------------------------------------------------- eligibility

#[test]
fn a_complete_submission_is_recorded_with_its_capacity_slot() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = new_id();
    let events = w
        .scenario(partner(p), t0())
        .when(submit(
            id,
            p,
            "https://www.Acme.com/contact",
            "analytics",
            Motion::Reseller,
        ))
        .then_ok();
    assert_eq!(events.len(), 2);
    let submitted = serde_json::to_value(&events[0]).expect("json");
    assert_eq!(submitted["type"], "registration_submitted");
    assert_eq!(
        submitted["account"], "acme.com",
        "the account is the normalised registrable domain"
    );
    assert_eq!(
        submitted["approval_due_at"],
        json!((t0() + Duration::hours(48)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    assert_eq!(submitted["policy_version"], 1);
    assert_eq!(
        events[1],
        Event::CapacitySlotTaken {
            partner_id: p,
            registration_id: id,
            account: dealreg_domain::AccountKey("acme.com".into()),
            at: t0()
        }
    );
}

#[test]
fn each_required_field_is_named_when_missing() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let cases: Vec<(&str, Blank)> = vec![
        ("customer.company", Box::new(|c, _, _| c.company.clear())),
        (
            "customer.contact.name",
            Box::new(|c, _, _| c.contact.name = " ".into()),
        ),
        (
            "customer.contact.email",
            Box::new(|c, _, _| c.contact.email.clear()),
        ),
        ("product_line", Box::new(|_, l, _| l.clear())),
        ("proof_of_work", Box::new(|_, _, pow| pow.clear())),
    ];
    for (field, blank) in cases {
        let command = with_submit(
            submit(new_id(), p, "acme.com", "analytics", Motion::Reseller),
            |c, l, pow| blank(c, l, pow),
        );
        let err = w
            .scenario(partner(p), t0())
            .when(command)
            .then_error(RejectionCode::MissingField);
        assert_eq!(err.details["field"], field);
    }
    let bad_email = with_submit(
        submit(new_id(), p, "acme.com", "analytics", Motion::Reseller),
        |c, _, _| c.contact.email = "dana".into(),
    );
    assert_eq!(
        w.scenario(partner(p), t0())
            .when(bad_email)
            .then_error(RejectionCode::InvalidField)
            .details["field"],
        "customer.contact.email"
    );
    let bad_domain = submit(new_id(), p, "not a domain", "analytics", Motion::Reseller);
    w.scenario(partner(p), t0())
        .when(bad_domain)
        .then_error(RejectionCode::InvalidField);
}

#[test]
fn partner_gates_active_motion_and_unknown() {
    let mut w = World::new();
    let p = w.partner(Motion::Referral, Tier::Silver, 10);
    w.scenario(partner(p), t0())
        .when(submit(
            new_id(),
            p,
            "acme.com",
            "analytics",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::MotionNotInAgreement);
    let stranger = PartnerId(Uuid::now_v7());
    w.scenario(cm(), t0())
        .when(submit(
            new_id(),
            stranger,
            "acme.com",
            "analytics",
            Motion::Referral,
        ))
        .then_error(RejectionCode::UnknownPartner);
    w.run(
        cm(),
        t0(),
        Command::OffboardPartner(OffboardPartner {
            partner_id: p,
            reason: "ended".into(),
        }),
    );
    w.scenario(partner(p), t0())
        .when(submit(
            new_id(),
            p,
            "acme.com",
            "analytics",
            Motion::Referral,
        ))
        .then_error(RejectionCode::PartnerNotActive);
}

#[test]
fn certification_gates_the_motions_the_policy_names_until_its_last_day() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    // Not certified in `platform`: a reseller registration needs it.
    w.scenario(partner(p), t0())
        .when(submit(
            new_id(),
            p,
            "acme.com",
            "platform",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::NotCertified);
    w.run(
        cm(),
        t0(),
        Command::CertifyPartner(CertifyPartner {
            partner_id: p,
            product_line: "platform".into(),
            expires_on: t0().date_naive() + Duration::days(10),
        }),
    );
    let last_day = t0() + Duration::days(10);
    w.scenario(partner(p), last_day)
        .when(submit(
            new_id(),
            p,
            "acme.com",
            "platform",
            Motion::Reseller,
        ))
        .then_ok();
    w.scenario(partner(p), last_day + Duration::days(1))
        .when(submit(
            new_id(),
            p,
            "acme.com",
            "platform",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::NotCertified);
    // Referral registrations need no certification under the default policy.
    let r = w.partner(Motion::Referral, Tier::Silver, 10);
    w.scenario(partner(r), t0())
        .when(submit(
            new_id(),
            r,
            "acme.com",
            "payments",
            Motion::Referral,
        ))
        .then_ok();
}

#[test]
fn capacity_counts_open_registrations_and_frees_on_close() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 2);
    let a = w.submit(p, "alpha.com", "analytics", Motion::Reseller);
    w.submit(p, "beta.com", "analytics", Motion::Reseller);
    let err = w
        .scenario(partner(p), t0())
        .when(submit(
            new_id(),
            p,
            "gamma.com",
            "analytics",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::CapacityReached);
    assert_eq!(err.details["capacity"], 2);
    w.run(
        partner(p),
        t0(),
        Command::WithdrawRegistration(WithdrawRegistration {
            account: "alpha.com".into(),
            registration_id: a,
            reason: "postponed".into(),
        }),
    );
    w.scenario(partner(p), t0())
        .when(submit(
            new_id(),
            p,
            "gamma.com",
            "analytics",
            Motion::Reseller,
        ))
        .then_ok();
}

// ---------------------------------------------------------------- uniqueness

#[test]
fn one_protected_registration_per_customer_and_product_line_across_domain_spellings() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(a, "acme.co.uk", "analytics", Motion::Reseller);
    w.approve(id, "acme.co.uk");
    for spelling in ["acme.co.uk", "https://EU.acme.co.uk/x", "www.acme.co.uk"] {
        let err = w
            .scenario(partner(b), t0())
            .when(submit(new_id(), b, spelling, "analytics", Motion::Reseller))
            .then_error(RejectionCode::DuplicateRegistration);
        assert_eq!(err.details["protected_by"], json!(id), "{spelling}");
    }
    w.scenario(partner(b), t0())
        .when(submit(
            new_id(),
            b,
            "acme.co.uk",
            "security",
            Motion::Reseller,
        ))
        .then_ok();
    // The same partner cannot hold two open registrations for one line either.
    w.scenario(partner(a), t0())
        .when(submit(
            new_id(),
            a,
            "acme.co.uk",
            "analytics",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::DuplicateRegistration);
}

#[test]
fn expiry_clears_the_registered_partner() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    let expiry = t0() + Duration::days(90);
    w.run(
        system(),
        expiry,
        Command::ExpireProtection(ExpireProtection {
            account: "acme.com".into(),
            registration_id: id,
        }),
    );
    w.scenario(partner(b), expiry)
        .when(submit(
            new_id(),
            b,
            "acme.com",
            "analytics",
            Motion::Reseller,
        ))
        .then_ok();
}

// ---------------------------------------------------------------- conflicts

fn kinds(events: &[Event]) -> Vec<ConflictKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ConflictDetected { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

#[test]
fn horizontal_multi_channel_vertical_and_renewal_conflicts_are_caught_when_they_appear() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    let r = w.partner(Motion::Referral, Tier::Gold, 10);
    w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let second = w.run(
        partner(b),
        t0(),
        submit(new_id(), b, "acme.com", "analytics", Motion::Reseller),
    );
    assert_eq!(kinds(&second), vec![ConflictKind::Horizontal]);
    let Event::ConflictDetected {
        acknowledge_by,
        parties,
        ..
    } = first_conflict(&second)
    else {
        panic!("conflict")
    };
    assert_eq!(
        *acknowledge_by,
        t0() + Duration::hours(24),
        "acknowledged within 24 h"
    );
    assert_eq!(parties.len(), 2);
    let referral = w.run(
        partner(r),
        t0(),
        submit(new_id(), r, "acme.com", "analytics", Motion::Referral),
    );
    assert_eq!(kinds(&referral), vec![ConflictKind::MultiChannel]);
    let opportunity = w.run(
        direct(),
        t0(),
        Command::RecordDirectOpportunity(RecordDirectOpportunity {
            account: "acme.com".into(),
            opportunity_id: OpportunityId(Uuid::now_v7()),
            owner: "ae".into(),
            product_line: "analytics".into(),
            amount: usd(9_000_000),
        }),
    );
    assert_eq!(kinds(&opportunity), vec![ConflictKind::Vertical]);
    let c = w.partner(Motion::Reseller, Tier::Gold, 10);
    let onto_direct = w.run(
        partner(c),
        t0(),
        submit(new_id(), c, "globex.com", "security", Motion::Reseller),
    );
    assert!(kinds(&onto_direct).is_empty());
    w.run(
        direct(),
        t0(),
        Command::RecordDirectOpportunity(RecordDirectOpportunity {
            account: "initech.com".into(),
            opportunity_id: OpportunityId(Uuid::now_v7()),
            owner: "ae".into(),
            product_line: "security".into(),
            amount: usd(1),
        }),
    );
    let after_direct = w.run(
        partner(c),
        t0(),
        submit(new_id(), c, "initech.com", "security", Motion::Reseller),
    );
    assert_eq!(kinds(&after_direct), vec![ConflictKind::Vertical]);
    let renewal = match submit(new_id(), a, "umbrella.com", "security", Motion::Reseller) {
        Command::SubmitRegistration(SubmitRegistration {
            registration_id,
            partner_id,
            customer,
            product_line,
            motion,
            estimated_amount,
            expected_close,
            proof_of_work,
            ..
        }) => Command::SubmitRegistration(SubmitRegistration {
            registration_id,
            partner_id,
            customer,
            product_line,
            motion,
            estimated_amount,
            expected_close,
            proof_of_work,
            kind: DealKind::Renewal,
        }),
        other => other,
    };
    let unclear = w.run(partner(a), t0(), renewal);
    assert_eq!(kinds(&unclear), vec![ConflictKind::RenewalOwnership]);
}

#[test]
fn conflicts_are_acknowledged_then_resolved_with_a_party_as_winner() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    let first = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let events = w.run(
        partner(b),
        t0(),
        submit(new_id(), b, "acme.com", "analytics", Motion::Reseller),
    );
    let Event::ConflictDetected { conflict_id, .. } = first_conflict(&events) else {
        panic!("conflict")
    };
    w.run(
        cm(),
        t0(),
        Command::AcknowledgeConflict(AcknowledgeConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            note: "looking".into(),
        }),
    );
    w.scenario(cm(), t0())
        .when(Command::AcknowledgeConflict(AcknowledgeConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            note: String::new(),
        }))
        .then_error(RejectionCode::AlreadyRecorded);
    w.scenario(cm(), t0())
        .when(Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            winner: Some(new_id()),
            rationale: "x".into(),
        }))
        .then_error(RejectionCode::InvalidField);
    w.scenario(cm(), t0())
        .when(Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            winner: Some(first),
            rationale: "registered first".into(),
        }))
        .then_ok();
}

// ---------------------------------------------------------------- conflict hierarchy

#[test]
fn registered_beats_unregistered() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Platinum, 10);
    let first = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let second = w.submit(b, "acme.com", "analytics", Motion::Reseller);
    w.approve(first, "acme.com");
    let err = w
        .scenario(cm(), t0())
        .when(approve(second, "acme.com"))
        .then_error(RejectionCode::AlreadyProtected);
    assert_eq!(err.details["rule"], "registered_beats_unregistered");
}

#[test]
fn incumbent_beats_net_new() {
    let mut w = World::new();
    let incumbent = w.partner(Motion::Reseller, Tier::Silver, 10);
    let newcomer = w.partner(Motion::Reseller, Tier::Platinum, 10);
    let old = w.submit(incumbent, "acme.com", "analytics", Motion::Reseller);
    w.approve(old, "acme.com");
    w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: old,
            partner_id: incumbent,
            reason: "originated".into(),
        }),
    );
    w.advance_to_closing_stage(old, "acme.com");
    w.run(
        cm(),
        t0(),
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: old,
            amount: usd(1_000_000),
            order_reference: Some("PO-1".into()),
        }),
    );
    let net_new = w.submit(newcomer, "acme.com", "analytics", Motion::Reseller);
    let expansion = w.submit(incumbent, "acme.com", "analytics", Motion::Reseller);
    let err = w
        .scenario(cm(), t0())
        .when(approve(net_new, "acme.com"))
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "incumbent_beats_net_new");
    assert_eq!(err.details["outranked_by"], json!(expansion));
    w.scenario(cm(), t0())
        .when(approve(expansion, "acme.com"))
        .then_ok();
}

#[test]
fn certification_breaks_ties() {
    let mut w = World::new();
    let certified = w.partner(Motion::Referral, Tier::Silver, 10);
    let uncertified = w.partner(Motion::Referral, Tier::Platinum, 10);
    // Referral needs no certification to register `payments`; only `certified` gets one.
    w.run(
        cm(),
        t0(),
        Command::CertifyPartner(CertifyPartner {
            partner_id: certified,
            product_line: "payments".into(),
            expires_on: day("2027-01-01"),
        }),
    );
    let mine = w.submit(uncertified, "acme.com", "payments", Motion::Referral);
    let theirs = w.submit(certified, "acme.com", "payments", Motion::Referral);
    let err = w
        .scenario(cm(), t0())
        .when(approve(mine, "acme.com"))
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "certification_breaks_tie");
    w.scenario(cm(), t0())
        .when(approve(theirs, "acme.com"))
        .then_ok();
}

#[test]
fn first_submitted_wins_under_the_default_tie_break() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Silver, 10);
    let b = w.partner(Motion::Reseller, Tier::Platinum, 10);
    let first = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let second = w.submit(b, "acme.com", "analytics", Motion::Reseller);
    // Registration order decides, not approval order and not tier.
    let err = w
        .scenario(cm(), t0())
        .when(approve(second, "acme.com"))
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "first_submitted");
    w.approve(first, "acme.com");
}

#[test]
fn first_approved_when_the_policy_says_so() {
    let mut policy = Policy::default_program();
    policy.conflict.tie_break = TieBreak::FirstApproved;
    let mut w = World::with_policy(policy);
    let a = w.partner(Motion::Reseller, Tier::Silver, 10);
    let b = w.partner(Motion::Reseller, Tier::Platinum, 10);
    let first = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let second = w.submit(b, "acme.com", "analytics", Motion::Reseller);
    // Either may be approved first; the second approval is then refused.
    w.scenario(cm(), t0())
        .when(approve(first, "acme.com"))
        .then_ok();
    w.approve(second, "acme.com");
    w.scenario(cm(), t0())
        .when(approve(first, "acme.com"))
        .then_error(RejectionCode::AlreadyProtected);
}

#[test]
fn tier_priority_when_the_policy_says_so() {
    let mut policy = Policy::default_program();
    policy.conflict.tie_break = TieBreak::TierPriority;
    let mut w = World::with_policy(policy);
    let silver = w.partner(Motion::Reseller, Tier::Silver, 10);
    let platinum = w.partner(Motion::Reseller, Tier::Platinum, 10);
    let low = w.submit(silver, "acme.com", "analytics", Motion::Reseller);
    let high = w.submit(platinum, "acme.com", "analytics", Motion::Reseller);
    let err = w
        .scenario(cm(), t0())
        .when(approve(low, "acme.com"))
        .then_error(RejectionCode::Outranked);
    assert_eq!(err.details["rule"], "tier_priority");
    w.scenario(cm(), t0())
        .when(approve(high, "acme.com"))
        .then_ok();
}

// ---------------------------------------------------------------- protection window

#[test]
fn approval_opens_the_protection_window_by_motion_and_tier() {
    let mut w = World::new();
    let reseller = w.partner(Motion::Reseller, Tier::Gold, 10);
    let referral = w.partner(Motion::Referral, Tier::Gold, 10);
    let r1 = w.submit(reseller, "acme.com", "analytics", Motion::Reseller);
    let r2 = w.submit(referral, "globex.com", "analytics", Motion::Referral);
    w.scenario(cm(), t0())
        .when(approve(r1, "acme.com"))
        .then(vec![Event::RegistrationApproved {
            account: dealreg_domain::AccountKey("acme.com".into()),
            registration_id: r1,
            partner_id: reseller,
            rationale: "qualified".into(),
            protection_days: 90,
            expires_at: t0() + Duration::days(90),
            policy_version: 1,
            at: t0(),
        }]);
    let events = w
        .scenario(cm(), t0())
        .when(approve(r2, "globex.com"))
        .then_ok();
    let Event::RegistrationApproved {
        protection_days,
        expires_at,
        ..
    } = &events[0]
    else {
        panic!("approved")
    };
    assert_eq!(
        (*protection_days, *expires_at),
        (60, t0() + Duration::days(60)),
        "referral protection is 60 days"
    );
    let mut policy = Policy::default_program();
    policy.protection.by_tier.insert(Tier::Gold, 75);
    let events = Scenario::given(w.events.clone())
        .with_policy(policy)
        .by(cm())
        .when(approve(r2, "globex.com"))
        .then_ok();
    let Event::RegistrationApproved {
        protection_days, ..
    } = &events[0]
    else {
        panic!("approved")
    };
    assert_eq!(*protection_days, 75, "a tier entry wins over the motion");
}

#[test]
fn extensions_follow_the_policy_count_length_and_roles() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    let extend = || {
        Command::ExtendProtection(ExtendProtection {
            account: "acme.com".into(),
            registration_id: id,
            reason: "procurement delay".into(),
        })
    };
    w.scenario(partner(p), t0())
        .when(extend())
        .then_error(RejectionCode::NotAuthorised);
    let first = w.run(cm(), t0() + Duration::days(80), extend());
    let Event::ProtectionExtended {
        expires_at,
        extension_number,
        days,
        ..
    } = &first[0]
    else {
        panic!("extended")
    };
    assert_eq!(
        (*expires_at, *extension_number, *days),
        (t0() + Duration::days(120), 1, 30)
    );
    w.run(cm(), t0() + Duration::days(100), extend());
    let err = w
        .scenario(cm(), t0() + Duration::days(110))
        .when(extend())
        .then_error(RejectionCode::ExtensionLimit);
    assert_eq!(err.details["max"], 2);
    // Not after the window ended.
    let mut v = World::new();
    let q = v.partner(Motion::Reseller, Tier::Gold, 10);
    let late = v.submit(q, "acme.com", "analytics", Motion::Reseller);
    v.approve(late, "acme.com");
    v.scenario(cm(), t0() + Duration::days(90))
        .when(Command::ExtendProtection(ExtendProtection {
            account: "acme.com".into(),
            registration_id: late,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn expiry_reminder_and_expiry_fall_due_exactly_on_time_and_once() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    let expires = t0() + Duration::days(90);
    let remind = || {
        Command::SendExpiryReminder(SendExpiryReminder {
            account: "acme.com".into(),
            registration_id: id,
        })
    };
    let expire = || {
        Command::ExpireProtection(ExpireProtection {
            account: "acme.com".into(),
            registration_id: id,
        })
    };
    let due = w
        .scenario(system(), expires - Duration::days(7) - Duration::seconds(1))
        .when(remind())
        .then_error(RejectionCode::NotDue);
    assert_eq!(
        due.details["due_at"],
        json!((expires - Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    w.run(system(), expires - Duration::days(7), remind());
    w.scenario(system(), expires - Duration::days(6))
        .when(remind())
        .then_error(RejectionCode::AlreadyRecorded);
    w.scenario(cm(), expires)
        .when(expire())
        .then_error(RejectionCode::NotAuthorised);
    w.scenario(system(), expires - Duration::seconds(1))
        .when(expire())
        .then_error(RejectionCode::NotDue);
    let events = w.scenario(system(), expires).when(expire()).then_ok();
    assert!(matches!(
        events[0],
        Event::ProtectionExpired {
            policy_version: 1,
            ..
        }
    ));
    assert!(
        matches!(events[1], Event::CapacitySlotReleased { .. }),
        "expiry frees the capacity slot"
    );
    // After an extension a new reminder is due for the new expiry.
    w.run(
        cm(),
        expires - Duration::days(5),
        Command::ExtendProtection(ExtendProtection {
            account: "acme.com".into(),
            registration_id: id,
            reason: "slip".into(),
        }),
    );
    w.scenario(system(), expires + Duration::days(23))
        .when(remind())
        .then_ok();
}

#[test]
fn inactivity_is_flagged_after_thirty_days_without_a_touch() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    let flag = || {
        Command::FlagInactive(FlagInactive {
            account: "acme.com".into(),
            registration_id: id,
        })
    };
    w.scenario(system(), t0() + Duration::days(30) - Duration::seconds(1))
        .when(flag())
        .then_error(RejectionCode::NotDue);
    w.run(system(), t0() + Duration::days(30), flag());
    w.scenario(system(), t0() + Duration::days(31))
        .when(flag())
        .then_error(RejectionCode::AlreadyRecorded);
    // A touch (attribution, stage change) restarts the clock.
    w.run(
        partner(p),
        t0() + Duration::days(32),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: p,
            reason: "originated".into(),
        }),
    );
    w.scenario(system(), t0() + Duration::days(61))
        .when(flag())
        .then_error(RejectionCode::NotDue);
    w.scenario(system(), t0() + Duration::days(62))
        .when(flag())
        .then_ok();
}

#[test]
fn approval_sla_breach_is_recorded_at_48_hours_once() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    let flag = || {
        Command::FlagApprovalSlaBreached(FlagApprovalSlaBreached {
            account: "acme.com".into(),
            registration_id: id,
        })
    };
    w.scenario(system(), t0() + Duration::hours(48) - Duration::seconds(1))
        .when(flag())
        .then_error(RejectionCode::NotDue);
    w.run(system(), t0() + Duration::hours(48), flag());
    w.scenario(system(), t0() + Duration::hours(49))
        .when(flag())
        .then_error(RejectionCode::AlreadyRecorded);
}

// ---------------------------------------------------------------- appeals

#[test]
fn appeals_within_ten_days_by_the_declined_partner_once() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let other = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    let declined = w.run(
        cm(),
        t0(),
        Command::DeclineRegistration(DeclineRegistration {
            account: "acme.com".into(),
            registration_id: id,
            reason_code: "no_proof".into(),
            rationale: "no meeting notes".into(),
        }),
    );
    let Event::RegistrationDeclined { appeal_until, .. } = &declined[0] else {
        panic!("declined")
    };
    assert_eq!(*appeal_until, t0() + Duration::days(10));
    assert!(matches!(declined[1], Event::CapacitySlotReleased { .. }));
    let appeal = || {
        Command::AppealDecision(AppealDecision {
            account: "acme.com".into(),
            registration_id: id,
            evidence: "minutes of 2026-02-20".into(),
        })
    };
    w.scenario(partner(other), t0())
        .when(appeal())
        .then_error(RejectionCode::UnknownRegistration);
    let late = w
        .scenario(partner(p), t0() + Duration::days(10) + Duration::seconds(1))
        .when(appeal())
        .then_error(RejectionCode::AppealWindowClosed);
    assert!(late.details["appeal_until"].is_string());
    w.run(partner(p), t0() + Duration::days(10), appeal());
    w.scenario(partner(p), t0() + Duration::days(10))
        .when(appeal())
        .then_error(RejectionCode::AlreadyRecorded);
    let decided = w
        .scenario(cm(), t0() + Duration::days(11))
        .when(Command::DecideAppeal(DecideAppeal {
            account: "acme.com".into(),
            registration_id: id,
            upheld: true,
            rationale: "evidence predates".into(),
        }))
        .then_ok();
    let Event::AppealDecided {
        approval_due_at,
        policy_version,
        ..
    } = &decided[0]
    else {
        panic!("decided")
    };
    assert_eq!(
        (*approval_due_at, *policy_version),
        (Some(t0() + Duration::days(11) + Duration::hours(48)), 1)
    );
    assert!(
        matches!(decided[1], Event::CapacitySlotTaken { .. }),
        "reinstated registrations count against capacity again"
    );
}

// ---------------------------------------------------------------- stages and attribution

#[test]
fn stages_move_one_step_in_order_only_with_attribution_and_evidence() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    let advance = |to: &str, pct: Option<u32>| {
        Command::AdvanceStage(AdvanceStage {
            account: "acme.com".into(),
            registration_id: id,
            to_stage: to.into(),
            evidence: StageEvidence {
                note: "criteria met".into(),
                discount_percent: pct,
                ..StageEvidence::default()
            },
        })
    };
    w.scenario(partner(p), t0())
        .when(advance("qualification", None))
        .then_error(RejectionCode::InvalidTransition);
    w.approve(id, "acme.com");
    w.scenario(partner(p), t0())
        .when(advance("qualification", None))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.run(
        partner(p),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: p,
            reason: "originated".into(),
        }),
    );
    let skip = w
        .scenario(partner(p), t0())
        .when(advance("configure_and_quote", None))
        .then_error(RejectionCode::InvalidTransition);
    assert_eq!(skip.details["next_stage"], "qualification");
    let no_note = Command::AdvanceStage(AdvanceStage {
        account: "acme.com".into(),
        registration_id: id,
        to_stage: "qualification".into(),
        evidence: StageEvidence::default(),
    });
    w.scenario(partner(p), t0())
        .when(no_note)
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.run(partner(p), t0(), advance("qualification", None));
    w.run(partner(p), t0(), advance("configure_and_quote", None));
    // Configure & Quote: the discount must be quoted and within the gold band (20 %).
    w.scenario(partner(p), t0())
        .when(advance("transact", None))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.scenario(partner(p), t0())
        .when(advance("transact", Some(21)))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.run(partner(p), t0(), advance("transact", Some(20)));
    // Transact's exit is the win: Launch & Enable comes after it.
    let early = w
        .scenario(partner(p), t0())
        .when(advance("launch_and_enable", None))
        .then_error(RejectionCode::InvalidTransition);
    assert_eq!(early.details["closing_stage"], "transact");
    w.run(
        cm(),
        t0(),
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: id,
            amount: usd(4_000_000),
            order_reference: Some("PO-1".into()),
        }),
    );
    w.run(partner(p), t0(), advance("launch_and_enable", None));
    w.scenario(partner(p), t0())
        .when(advance("launch_and_enable", None))
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn referral_intro_needs_the_partner_as_sourcing_and_tech_credit_is_influence() {
    let mut w = World::new();
    let referrer = w.partner(Motion::Referral, Tier::Gold, 10);
    let other = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(referrer, "acme.com", "analytics", Motion::Referral);
    w.approve(id, "acme.com");
    let validate = Command::AdvanceStage(AdvanceStage {
        account: "acme.com".into(),
        registration_id: id,
        to_stage: "validate".into(),
        evidence: StageEvidence {
            note: "intro done".into(),
            vendor_owner: Some("ae@vendor.example".into()),
            ..StageEvidence::default()
        },
    });
    w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: other,
            reason: "mistake".into(),
        }),
    );
    w.scenario(partner(referrer), t0())
        .when(validate.clone())
        .then_error(RejectionCode::ExitCriteriaNotMet);
    let changed = w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: referrer,
            reason: "corrected".into(),
        }),
    );
    let Event::SourcingPartnerSet {
        previous,
        actor,
        reason,
        ..
    } = &changed[0]
    else {
        panic!("set")
    };
    assert_eq!((previous, reason.as_str()), (&Some(other), "corrected"));
    assert!(actor.contains("cm"), "the actor is recorded: {actor}");
    w.scenario(partner(referrer), t0()).when(validate).then_ok();

    let tech = w.partner(Motion::TechIsv, Tier::Silver, 10);
    let t = w.submit(tech, "globex.com", "analytics", Motion::TechIsv);
    w.approve(t, "globex.com");
    w.scenario(cm(), t0())
        .when(Command::SetSourcingPartner(SetSourcingPartner {
            account: "globex.com".into(),
            registration_id: t,
            partner_id: tech,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::SourcingNotAllowed);
    let fit = Command::AdvanceStage(AdvanceStage {
        account: "globex.com".into(),
        registration_id: t,
        to_stage: "field_readiness".into(),
        evidence: StageEvidence {
            note: "integration certified".into(),
            integration: Some("Snowflake connector".into()),
            ..StageEvidence::default()
        },
    });
    w.run(
        cm(),
        t0(),
        Command::AddInfluencer(AddInfluencer {
            account: "globex.com".into(),
            registration_id: t,
            partner_id: other,
            percent: 10,
            reason: "helped".into(),
        }),
    );
    w.scenario(partner(tech), t0())
        .when(fit.clone())
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.run(
        cm(),
        t0(),
        Command::AddInfluencer(AddInfluencer {
            account: "globex.com".into(),
            registration_id: t,
            partner_id: tech,
            percent: 40,
            reason: "integration".into(),
        }),
    );
    w.scenario(partner(tech), t0()).when(fit).then_ok();
}

#[test]
fn attribution_has_one_sourcing_partner_never_exceeds_100_and_locks_on_the_win() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let i1 = w.partner(Motion::TechIsv, Tier::Gold, 10);
    let i2 = w.partner(Motion::Services, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    w.run(
        partner(p),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: p,
            reason: "originated".into(),
        }),
    );
    // A partner cannot take sourcing from another; only a channel manager changes it.
    let err = w
        .scenario(partner(p), t0())
        .when(Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: i2,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::NotAuthorised);
    assert!(err.message.contains("attribution"));
    w.run(
        cm(),
        t0(),
        Command::AddInfluencer(AddInfluencer {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: i1,
            percent: 60,
            reason: "integration".into(),
        }),
    );
    let over = w
        .scenario(cm(), t0())
        .when(Command::AddInfluencer(AddInfluencer {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: i2,
            percent: 41,
            reason: "workshop".into(),
        }))
        .then_error(RejectionCode::AttributionOver100);
    assert_eq!(over.details["total"], 101);
    w.run(
        cm(),
        t0(),
        Command::AddInfluencer(AddInfluencer {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: i2,
            percent: 40,
            reason: "workshop".into(),
        }),
    );
    w.advance_to_closing_stage(id, "acme.com");
    let won = w.run(
        cm(),
        t0(),
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: id,
            amount: usd(4_200_000),
            order_reference: Some("PO-1".into()),
        }),
    );
    let Event::DealWon {
        attribution,
        policy_version,
        ..
    } = &won[0]
    else {
        panic!("won")
    };
    assert_eq!(
        (
            attribution.sourcing,
            attribution.influenced_total(),
            attribution.sourcing_share(),
            *policy_version
        ),
        (Some(p), 100, 0, 1)
    );
    w.scenario(cm(), t0())
        .when(Command::RemoveInfluencer(RemoveInfluencer {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: i2,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::AttributionLocked);
}

#[test]
fn wins_need_attribution_and_the_deal_currency_and_reversals_stay_within_the_win() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    let win = |m: Money| {
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: id,
            amount: m,
            order_reference: Some("PO-1".into()),
        })
    };
    w.scenario(cm(), t0())
        .when(win(usd(100)))
        .then_error(RejectionCode::ExitCriteriaNotMet);
    w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: p,
            reason: "originated".into(),
        }),
    );
    w.scenario(cm(), t0())
        .when(win(Money::new(100, "EUR").expect("eur")))
        .then_error(RejectionCode::InvalidField);
    w.scenario(partner(p), t0())
        .when(win(usd(100)))
        .then_error(RejectionCode::NotAuthorised);
    w.advance_to_closing_stage(id, "acme.com");
    w.run(cm(), t0(), win(usd(10_000)));
    let reverse = |minor| {
        Command::RecordRevenueReversal(RecordRevenueReversal {
            account: "acme.com".into(),
            registration_id: id,
            amount: usd(minor),
            reason: "refund".into(),
        })
    };
    w.run(revops(), t0(), reverse(6_000));
    w.scenario(revops(), t0())
        .when(reverse(4_001))
        .then_error(RejectionCode::InvalidField);
    w.scenario(revops(), t0()).when(reverse(4_000)).then_ok();
}

// ---------------------------------------------------------------- renewals

#[test]
fn the_incumbent_owns_the_renewal_unless_reassigned_confirmed_90_days_ahead() {
    let mut w = World::new();
    let incumbent = w.partner(Motion::Reseller, Tier::Gold, 10);
    let challenger = w.partner(Motion::Reseller, Tier::Gold, 10);
    let renewal_by =
        |p: PartnerId| match submit(new_id(), p, "acme.com", "analytics", Motion::Reseller) {
            Command::SubmitRegistration(SubmitRegistration {
                registration_id,
                partner_id,
                customer,
                product_line,
                motion,
                estimated_amount,
                expected_close,
                proof_of_work,
                ..
            }) => Command::SubmitRegistration(SubmitRegistration {
                registration_id,
                partner_id,
                customer,
                product_line,
                motion,
                estimated_amount,
                expected_close,
                proof_of_work,
                kind: DealKind::Renewal,
            }),
            other => other,
        };
    let confirm = |date: NaiveDate| {
        Command::ConfirmRenewalOwnership(ConfirmRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            renewal_date: date,
        })
    };
    w.scenario(cm(), t0())
        .when(confirm(day("2027-03-01")))
        .then_error(RejectionCode::NoIncumbent);
    let id = w.submit(incumbent, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: incumbent,
            reason: "originated".into(),
        }),
    );
    w.advance_to_closing_stage(id, "acme.com");
    w.run(
        cm(),
        t0(),
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: id,
            amount: usd(1_000_000),
            order_reference: Some("PO-1".into()),
        }),
    );
    let err = w
        .scenario(partner(challenger), t0())
        .when(renewal_by(challenger))
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
    assert!(
        err.details.get("owner").is_none(),
        "a partner is not told who the incumbent is: {}",
        err.details
    );
    let for_vendor = w
        .scenario(cm(), t0())
        .when(renewal_by(challenger))
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
    assert_eq!(
        for_vendor.details["owner"],
        json!(incumbent),
        "the vendor is"
    );
    let exactly_90 = t0().date_naive() + Duration::days(90);
    let confirmed = w.scenario(cm(), t0()).when(confirm(exactly_90)).then_ok();
    assert!(
        matches!(&confirmed[0], Event::RenewalOwnershipConfirmed { partner_id, .. } if *partner_id == incumbent)
    );
    w.scenario(cm(), t0())
        .when(confirm(exactly_90 - Duration::days(1)))
        .then_error(RejectionCode::RenewalConfirmationTooLate);
    w.run(
        cm(),
        t0(),
        Command::ReassignRenewalOwnership(ReassignRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            to_partner: challenger,
            reason: "incumbent exited the region".into(),
        }),
    );
    w.scenario(partner(challenger), t0())
        .when(renewal_by(challenger))
        .then_ok();
    w.scenario(partner(incumbent), t0())
        .when(renewal_by(incumbent))
        .then_error(RejectionCode::RenewalOwnedByIncumbent);
}

// ---------------------------------------------------------------- partners and policy

#[test]
fn partner_lifecycle_is_recorded_and_offboarding_lists_what_it_leaves() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Silver, 10);
    w.scenario(cm(), t0())
        .when(Command::OnboardPartner(OnboardPartner {
            partner_id: p,
            name: "again".into(),
            motions: vec![Motion::Reseller],
            tier: Tier::Gold,
            territories: vec![],
            capacity: 1,
        }))
        .then_error(RejectionCode::PartnerExists);
    w.scenario(partner(p), t0())
        .when(Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: p,
            tier: Tier::Platinum,
            reason: "self-promotion".into(),
        }))
        .then_error(RejectionCode::NotAuthorised);
    let tier = w.run(
        cm(),
        t0(),
        Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: p,
            tier: Tier::Gold,
            reason: "review".into(),
        }),
    );
    assert_eq!(
        tier,
        vec![Event::PartnerTierChanged {
            partner_id: p,
            from: Tier::Silver,
            to: Tier::Gold,
            reason: "review".into(),
            at: t0()
        }]
    );
    w.scenario(cm(), t0())
        .when(Command::CertifyPartner(CertifyPartner {
            partner_id: p,
            product_line: "x".into(),
            expires_on: day("2026-01-01"),
        }))
        .then_error(RejectionCode::InvalidField);
    w.scenario(cm(), t0())
        .when(Command::SetCapacity(SetCapacity {
            partner_id: p,
            capacity: 0,
        }))
        .then_error(RejectionCode::InvalidField);
    let a = w.submit(p, "alpha.com", "analytics", Motion::Reseller);
    let b = w.submit(p, "beta.com", "analytics", Motion::Reseller);
    w.run(
        partner(p),
        t0(),
        Command::WithdrawRegistration(WithdrawRegistration {
            account: "beta.com".into(),
            registration_id: b,
            reason: "lost interest".into(),
        }),
    );
    let off = w.run(
        cm(),
        t0(),
        Command::OffboardPartner(OffboardPartner {
            partner_id: p,
            reason: "agreement ended".into(),
        }),
    );
    let Event::PartnerOffboarded {
        open_registrations, ..
    } = &off[0]
    else {
        panic!("offboarded")
    };
    assert_eq!(open_registrations.len(), 1);
    assert_eq!(open_registrations[0].registration_id, a);
    let released = w
        .scenario(system(), t0())
        .when(Command::ReleaseRegistration(ReleaseRegistration {
            account: "alpha.com".into(),
            registration_id: a,
            reason: "partner offboarded".into(),
        }))
        .then_ok();
    assert!(matches!(released[1], Event::CapacitySlotReleased { .. }));
}

#[test]
fn policies_are_versioned_and_decisions_record_the_version_in_force() {
    let mut v7 = Policy::default_program();
    v7.version = 7;
    let adopted = Scenario::given(vec![])
        .by(revops())
        .when(Command::AdoptPolicy(AdoptPolicy { policy: v7.clone() }))
        .then_ok();
    let older = Scenario::given(adopted)
        .by(revops())
        .when(Command::AdoptPolicy(AdoptPolicy {
            policy: Policy::default_program(),
        }))
        .then_error(RejectionCode::PolicyVersionNotNewer);
    assert_eq!(older.details["current_version"], 7);
    let mut w = World::with_policy(v7);
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    let approved = w
        .scenario(cm(), t0())
        .when(approve(id, "acme.com"))
        .then_ok();
    assert!(matches!(
        approved[0],
        Event::RegistrationApproved {
            policy_version: 7,
            ..
        }
    ));
    Scenario::given(vec![])
        .by(partner(p))
        .when(Command::AdoptPolicy(AdoptPolicy {
            policy: Policy::default_program(),
        }))
        .then_error(RejectionCode::NotAuthorised);
}

// ---------------------------------------------------------------- authorisation

#[test]
fn partners_only_see_and_change_their_own_registrations() {
    let mut w = World::new();
    let owner = w.partner(Motion::Reseller, Tier::Gold, 10);
    let snoop = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(owner, "acme.com", "analytics", Motion::Reseller);
    w.scenario(partner(snoop), t0())
        .when(submit(
            new_id(),
            owner,
            "globex.com",
            "analytics",
            Motion::Reseller,
        ))
        .then_error(RejectionCode::NotAuthorised);
    let hidden = w
        .scenario(partner(snoop), t0())
        .when(Command::WithdrawRegistration(WithdrawRegistration {
            account: "acme.com".into(),
            registration_id: id,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::UnknownRegistration);
    assert!(
        !hidden.message.contains(&owner.to_string()),
        "the refusal does not reveal the owner"
    );
    w.scenario(partner(owner), t0())
        .when(approve(id, "acme.com"))
        .then_error(RejectionCode::NotAuthorised);
    w.scenario(auditor(), t0())
        .when(approve(id, "acme.com"))
        .then_error(RejectionCode::NotAuthorised);
    w.scenario(auditor(), t0())
        .when(Command::WithdrawRegistration(WithdrawRegistration {
            account: "acme.com".into(),
            registration_id: id,
            reason: "x".into(),
        }))
        .then_error(RejectionCode::NotAuthorised);
    for command in [
        Command::FlagApprovalSlaBreached(FlagApprovalSlaBreached {
            account: "acme.com".into(),
            registration_id: id,
        }),
        Command::FlagInactive(FlagInactive {
            account: "acme.com".into(),
            registration_id: id,
        }),
        Command::ExpireProtection(ExpireProtection {
            account: "acme.com".into(),
            registration_id: id,
        }),
        Command::SendExpiryReminder(SendExpiryReminder {
            account: "acme.com".into(),
            registration_id: id,
        }),
    ] {
        w.scenario(cm(), t0() + Duration::days(200))
            .when(command)
            .then_error(RejectionCode::NotAuthorised);
    }
    Scenario::given(vec![])
        .by(partner(owner))
        .when(Command::OnboardPartner(OnboardPartner {
            partner_id: PartnerId(Uuid::now_v7()),
            name: "me".into(),
            motions: vec![Motion::Reseller],
            tier: Tier::Platinum,
            territories: vec![],
            capacity: 99,
        }))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn commission_payouts_are_recorded_by_finance_even_after_offboarding() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let payout = |minor| {
        Command::RecordCommissionPayout(RecordCommissionPayout {
            partner_id: p,
            amount: usd(minor),
            reference: "PAY-1".into(),
        })
    };
    w.scenario(cm(), t0())
        .when(payout(100))
        .then_error(RejectionCode::NotAuthorised);
    w.scenario(partner(p), t0())
        .when(payout(100))
        .then_error(RejectionCode::NotAuthorised);
    w.scenario(revops(), t0())
        .when(payout(0))
        .then_error(RejectionCode::InvalidField);
    w.run(
        cm(),
        t0(),
        Command::OffboardPartner(OffboardPartner {
            partner_id: p,
            reason: "ended".into(),
        }),
    );
    w.scenario(revops(), t0())
        .when(payout(12_345))
        .then(vec![Event::CommissionPaidOut {
            partner_id: p,
            amount: usd(12_345),
            reference: "PAY-1".into(),
            at: t0(),
        }]);
    Scenario::given(vec![])
        .by(revops())
        .when(Command::RecordCommissionPayout(RecordCommissionPayout {
            partner_id: PartnerId(Uuid::now_v7()),
            amount: usd(1),
            reference: "x".into(),
        }))
        .then_error(RejectionCode::UnknownPartner);
}

#[test]
fn conflict_slas_breach_at_24_hours_and_5_business_days_once() {
    use dealreg_domain::ConflictSla;
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    w.submit(a, "acme.com", "analytics", Motion::Reseller);
    let events = w.run(
        partner(b),
        t0(),
        submit(new_id(), b, "acme.com", "analytics", Motion::Reseller),
    );
    let Event::ConflictDetected {
        conflict_id,
        resolution_plan_by,
        ..
    } = first_conflict(&events)
    else {
        panic!("conflict")
    };
    // Monday 09:00 + 5 business days = next Monday 09:00.
    assert_eq!(*resolution_plan_by, Some(t0() + Duration::days(7)));
    let flag = |sla| {
        Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            sla,
        })
    };
    w.scenario(system(), t0() + Duration::hours(24) - Duration::seconds(1))
        .when(flag(ConflictSla::Acknowledgement))
        .then_error(RejectionCode::NotDue);
    w.scenario(cm(), t0() + Duration::hours(24))
        .when(flag(ConflictSla::Acknowledgement))
        .then_error(RejectionCode::NotAuthorised);
    w.run(
        system(),
        t0() + Duration::hours(24),
        flag(ConflictSla::Acknowledgement),
    );
    w.scenario(system(), t0() + Duration::hours(25))
        .when(flag(ConflictSla::Acknowledgement))
        .then_error(RejectionCode::AlreadyRecorded);
    w.run(
        cm(),
        t0() + Duration::hours(30),
        Command::AcknowledgeConflict(AcknowledgeConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            note: "late".into(),
        }),
    );
    w.scenario(system(), t0() + Duration::days(7) - Duration::seconds(1))
        .when(flag(ConflictSla::ResolutionPlan))
        .then_error(RejectionCode::NotDue);
    let breached = w
        .scenario(system(), t0() + Duration::days(7))
        .when(flag(ConflictSla::ResolutionPlan))
        .then_ok();
    assert!(
        matches!(&breached[0], Event::ConflictSlaBreached { due_at, policy_version: 1, .. } if *due_at == t0() + Duration::days(7))
    );
    w.run(
        cm(),
        t0() + Duration::days(2),
        Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: conflict_id.clone(),
            winner: None,
            rationale: "plan agreed".into(),
        }),
    );
    w.scenario(system(), t0() + Duration::days(8))
        .when(flag(ConflictSla::ResolutionPlan))
        .then_error(RejectionCode::InvalidTransition);
}

#[test]
fn renewal_ownership_is_reviewed_90_days_before_the_contract_renews_once() {
    let mut w = World::new();
    let p = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(p, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    w.run(
        cm(),
        t0(),
        Command::SetSourcingPartner(SetSourcingPartner {
            account: "acme.com".into(),
            registration_id: id,
            partner_id: p,
            reason: "originated".into(),
        }),
    );
    w.advance_to_closing_stage(id, "acme.com");
    let won = w.run(
        cm(),
        t0(),
        Command::MarkWon(MarkWon {
            account: "acme.com".into(),
            registration_id: id,
            amount: usd(1_000_000),
            order_reference: Some("PO-1".into()),
        }),
    );
    let Event::DealWon { renewal_date, .. } = &won[0] else {
        panic!("won")
    };
    let renews = t0().date_naive() + Duration::days(365);
    assert_eq!(
        *renewal_date,
        Some(renews),
        "a one-year term under the default policy"
    );
    let flag = || {
        Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
            account: "acme.com".into(),
            product_line: "analytics".into(),
        })
    };
    let due = renews - Duration::days(90);
    let early = w
        .scenario(
            system(),
            due.and_time(chrono::NaiveTime::MIN).and_utc() - Duration::seconds(1),
        )
        .when(flag())
        .then_error(RejectionCode::NotDue);
    assert_eq!(early.details["due_on"], json!(due));
    let at_due = due.and_time(chrono::NaiveTime::MIN).and_utc();
    let events = w.run(system(), at_due, flag());
    assert_eq!(
        events,
        vec![Event::RenewalOwnershipReviewDue {
            account: dealreg_domain::AccountKey("acme.com".into()),
            product_line: "analytics".into(),
            owner: Some(p),
            renewal_date: renews,
            policy_version: 1,
            at: at_due
        }]
    );
    w.scenario(system(), at_due + Duration::days(1))
        .when(flag())
        .then_error(RejectionCode::AlreadyRecorded);
    w.scenario(system(), at_due)
        .when(Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
            account: "acme.com".into(),
            product_line: "security".into(),
        }))
        .then_error(RejectionCode::NoIncumbent);
}

#[test]
fn product_lines_compare_regardless_of_case_and_spacing() {
    let mut w = World::new();
    let a = w.partner(Motion::Reseller, Tier::Gold, 10);
    let b = w.partner(Motion::Reseller, Tier::Gold, 10);
    let id = w.submit(a, "acme.com", "analytics", Motion::Reseller);
    w.approve(id, "acme.com");
    for spelling in ["Analytics", " analytics ", "ANALYTICS"] {
        w.scenario(partner(b), t0())
            .when(submit(new_id(), b, "acme.com", spelling, Motion::Reseller))
            .then_error(RejectionCode::DuplicateRegistration);
    }
    // Certifications are kept under the same spelling, so `Security` counts as certified.
    w.scenario(partner(b), t0())
        .when(submit(
            new_id(),
            b,
            "acme.com",
            "Security",
            Motion::Reseller,
        ))
        .then_ok();
}

/// The first conflict a decision raised (its events, then its capacity work).
fn first_conflict(events: &[Event]) -> &Event {
    events
        .iter()
        .find(|e| matches!(e, Event::ConflictDetected { .. }))
        .unwrap_or_else(|| panic!("no conflict raised: {events:?}"))
}
