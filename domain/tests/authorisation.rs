//! Authorisation is decided in the domain (docs/ARCHITECTURE.md, invariant 7; docs/RULES.md "Actors" and
//! "Visibility"): a partner user acts on its own organisation's registrations only and never
//! learns of another's; channel managers decide; auditors read and change nothing; the
//! timekeeper alone runs the deadlines; only vendor admins manage partner agreements.

mod fixtures;
use fixtures::*;

use uuid::Uuid;

/// Two resellers; `owner` has a protected deal on acme.com that `snoop` knows the id of.
fn two_partners_one_deal() -> (TestPartner, TestPartner, Deal, Vec<Event>) {
    let owner = reseller(Tier::Gold);
    let snoop = reseller(Tier::Gold);
    let deal = Deal::new(&owner, Motion::Reseller);
    let given = history([owner.events(), snoop.events(), deal.approved()]);
    (owner, snoop, deal, given)
}

/// Every account command a partner user may send about a registration, aimed at `deal`
/// and naming `me` where the command names a partner.
fn partner_commands(deal: &Deal, me: PartnerId) -> Vec<Command> {
    vec![
        deal.withdraw(),
        deal.advance("qualification", note("done")),
        deal.set_sourcing(me),
        deal.add_influencer(me, 10),
        deal.remove_influencer(me),
        deal.mark_lost(),
        deal.appeal(),
    ]
}

#[test]
fn a_partner_acting_on_another_partners_registration_is_told_it_does_not_exist() {
    let (_, snoop, deal, given) = two_partners_one_deal();
    for command in partner_commands(&deal, snoop.id) {
        let name = command.name();
        let err = Scenario::given(given.clone())
            .by(snoop.user())
            .when(command)
            .then_error(RejectionCode::UnknownRegistration);
        assert_eq!(err.details, json!({ "registration_id": deal.id }), "{name}");
    }
}

#[test]
fn the_refusal_reads_exactly_as_for_a_registration_that_does_not_exist() {
    let (owner, snoop, deal, given) = two_partners_one_deal();
    let phantom = deal.clone().with_id(RegistrationId(Uuid::now_v7()));
    let refusal = |deal: &Deal| {
        let err = Scenario::given(given.clone())
            .by(snoop.user())
            .when(deal.withdraw())
            .then_error(RejectionCode::UnknownRegistration);
        err.message.replace(&deal.id.to_string(), "<id>")
    };
    let hidden = refusal(&deal);
    assert_eq!(hidden, refusal(&phantom));
    assert!(!hidden.contains(&owner.id.to_string()), "{hidden}");
    assert!(!hidden.contains("analytics"), "{hidden}");
}

#[test]
fn the_owning_partner_may_act_on_its_own_registration() {
    let (owner, _, deal, given) = two_partners_one_deal();
    Scenario::given(given.clone())
        .by(owner.user())
        .when(deal.set_sourcing(owner.id))
        .then_ok();
    Scenario::given(given)
        .by(owner.user())
        .when(deal.withdraw())
        .then_ok();
}

#[test]
fn a_partner_cannot_register_for_another_partner() {
    let (owner, snoop, _, given) = two_partners_one_deal();
    let on_behalf = Deal::new(&owner, Motion::Reseller).on("globex.com");
    Scenario::given(given)
        .by(snoop.user())
        .when(on_behalf.submit())
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_partner_cannot_approve_or_decline_even_its_own_registration() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), deal.submitted()]);
    for command in [deal.approve(), deal.decline()] {
        Scenario::given(given.clone())
            .by(partner.user())
            .when(command)
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn registrations_are_decided_by_channel_managers_only() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), deal.submitted()]);
    for actor in [revops(), direct_sales(), timekeeper(), auditor()] {
        for command in [deal.approve(), deal.decline()] {
            Scenario::given(given.clone())
                .by(actor.clone())
                .when(command)
                .then_error(RejectionCode::NotAuthorised);
        }
    }
}

#[test]
fn a_partner_cannot_take_the_vendors_decisions_on_its_registration() {
    let (owner, _, deal, given) = two_partners_one_deal();
    let won = history([given.clone(), vec![deal.sourcing_set_by_partner()]]);
    for (given, command) in [
        (given.clone(), deal.extend()),
        (won.clone(), deal.mark_won(usd(1_000))),
        (given.clone(), deal.release()),
        (given.clone(), deal.decide_appeal(true)),
    ] {
        Scenario::given(given)
            .at(t0() + days(80))
            .by(owner.user())
            .when(command)
            .then_error(RejectionCode::NotAuthorised);
    }
}

#[test]
fn auditors_change_nothing() {
    let (owner, _, deal, given) = two_partners_one_deal();
    let conflict = ConflictId("acme.com/analytics/1".into());
    let account_commands = vec![
        Deal::new(&owner, Motion::Reseller)
            .on("globex.com")
            .submit(),
        deal.approve(),
        deal.decline(),
        deal.extend(),
        deal.withdraw(),
        deal.expire(),
        deal.remind(),
        deal.flag_inactive(),
        deal.flag_sla(),
        deal.appeal(),
        deal.decide_appeal(true),
        deal.advance("qualification", note("done")),
        deal.set_sourcing(owner.id),
        deal.add_influencer(owner.id, 10),
        deal.remove_influencer(owner.id),
        deal.mark_won(usd(1_000)),
        deal.mark_lost(),
        deal.reverse(usd(1_000)),
        deal.release(),
        Command::RecordDirectOpportunity(RecordDirectOpportunity {
            account: "acme.com".into(),
            opportunity_id: OpportunityId(Uuid::now_v7()),
            owner: "tom".into(),
            product_line: "analytics".into(),
            amount: usd(1_000),
        }),
        Command::AcknowledgeConflict(AcknowledgeConflict {
            account: "acme.com".into(),
            conflict_id: conflict.clone(),
            note: String::new(),
        }),
        Command::ResolveConflict(ResolveConflict {
            account: "acme.com".into(),
            conflict_id: conflict.clone(),
            winner: None,
            rationale: "x".into(),
        }),
        Command::FlagConflictSlaBreached(FlagConflictSlaBreached {
            account: "acme.com".into(),
            conflict_id: conflict,
            sla: ConflictSla::Acknowledgement,
        }),
        Command::FlagRenewalOwnershipDue(FlagRenewalOwnershipDue {
            account: "acme.com".into(),
            product_line: "analytics".into(),
        }),
        Command::ConfirmRenewalOwnership(ConfirmRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            renewal_date: date("2027-06-01"),
        }),
        Command::ReassignRenewalOwnership(ReassignRenewalOwnership {
            account: "acme.com".into(),
            product_line: "analytics".into(),
            to_partner: owner.id,
            reason: "x".into(),
        }),
    ];
    let partner_commands = vec![
        Command::OnboardPartner(OnboardPartner {
            partner_id: PartnerId(Uuid::now_v7()),
            name: "New".into(),
            motions: vec![Motion::Referral],
            tier: Tier::Silver,
            territories: vec![],
            capacity: 5,
        }),
        Command::ChangePartnerTier(ChangePartnerTier {
            partner_id: owner.id,
            tier: Tier::Platinum,
            reason: "x".into(),
        }),
        Command::CertifyPartner(CertifyPartner {
            partner_id: owner.id,
            product_line: "platform".into(),
            expires_on: far_future(),
        }),
        Command::SetTerritories(SetTerritories {
            partner_id: owner.id,
            territories: vec![],
        }),
        Command::SetCapacity(SetCapacity {
            partner_id: owner.id,
            capacity: 99,
        }),
        Command::OffboardPartner(OffboardPartner {
            partner_id: owner.id,
            reason: "x".into(),
        }),
        Command::RecordCommissionPayout(RecordCommissionPayout {
            partner_id: owner.id,
            amount: usd(1),
            reference: "x".into(),
        }),
        Command::AdoptPolicy(AdoptPolicy {
            policy: policy_version(2),
        }),
    ];
    for command in account_commands.into_iter().chain(partner_commands) {
        let name = command.name();
        let result = Scenario::given(given.clone())
            .at(t0() + days(200))
            .by(auditor())
            .when(command)
            .result;
        assert_eq!(
            result.map_err(|e| e.code),
            Err(RejectionCode::NotAuthorised),
            "an auditor sent {name}"
        );
    }
}

#[test]
fn deadline_commands_are_the_timekeepers_alone() {
    let (owner, _, deal, given) = two_partners_one_deal();
    let pending = Deal::new(&owner, Motion::Reseller).line(&owner, "security");
    let given = history([given, pending.submitted()]);
    // All of them are due by then, so only who asks decides.
    let late = t0() + days(90);
    for command in [
        deal.expire(),
        deal.remind(),
        deal.flag_inactive(),
        pending.flag_sla(),
    ] {
        let name = command.name();
        for actor in humans(owner.id) {
            let label = actor.label();
            let result = Scenario::given(given.clone())
                .at(late)
                .by(actor)
                .when(command.clone())
                .result;
            assert_eq!(
                result.map_err(|e| e.code),
                Err(RejectionCode::NotAuthorised),
                "{label} sent {name}"
            );
        }
        Scenario::given(given.clone())
            .at(late)
            .by(timekeeper())
            .when(command)
            .then_ok();
    }
}

#[test]
fn only_vendor_admins_manage_partners() {
    let partner = reseller(Tier::Gold);
    let commands = |id: PartnerId| {
        vec![
            Command::ChangePartnerTier(ChangePartnerTier {
                partner_id: id,
                tier: Tier::Platinum,
                reason: "annual review".into(),
            }),
            Command::CertifyPartner(CertifyPartner {
                partner_id: id,
                product_line: "platform".into(),
                expires_on: far_future(),
            }),
            Command::SetTerritories(SetTerritories {
                partner_id: id,
                territories: vec![],
            }),
            Command::SetCapacity(SetCapacity {
                partner_id: id,
                capacity: 99,
            }),
            Command::OffboardPartner(OffboardPartner {
                partner_id: id,
                reason: "agreement ended".into(),
            }),
        ]
    };
    let newcomer = PartnerId(Uuid::now_v7());
    let onboard = Command::OnboardPartner(OnboardPartner {
        partner_id: newcomer,
        name: "Newcomer".into(),
        motions: vec![Motion::Referral],
        tier: Tier::Silver,
        territories: vec![],
        capacity: 5,
    });
    let all = || commands(partner.id).into_iter().chain([onboard.clone()]);
    for actor in [
        partner.user(),
        user_of(newcomer),
        auditor(),
        direct_sales(),
        timekeeper(),
    ] {
        for command in all() {
            let name = command.name();
            let result = Scenario::given(partner.events())
                .by(actor.clone())
                .when(command)
                .result;
            assert_eq!(
                result.map_err(|e| e.code),
                Err(RejectionCode::NotAuthorised),
                "{} sent {name}",
                actor.label()
            );
        }
    }
    for admin in [channel_manager(), revops()] {
        for command in all() {
            Scenario::given(partner.events())
                .by(admin.clone())
                .when(command)
                .then_ok();
        }
    }
}

#[test]
fn direct_opportunities_come_from_direct_sales_a_channel_manager_or_the_crm() {
    let partner = reseller(Tier::Gold);
    let record = || {
        Command::RecordDirectOpportunity(RecordDirectOpportunity {
            account: "acme.com".into(),
            opportunity_id: OpportunityId(Uuid::now_v7()),
            owner: "tom.ae@vendor.example".into(),
            product_line: "analytics".into(),
            amount: usd(1_000),
        })
    };
    for actor in [direct_sales(), channel_manager(), timekeeper()] {
        Scenario::given(vec![]).by(actor).when(record()).then_ok();
    }
    for actor in [partner.user(), revops()] {
        Scenario::given(vec![])
            .by(actor)
            .when(record())
            .then_error(RejectionCode::NotAuthorised);
    }
}
