//! Issue 33's rules: notes and next steps on a registration (the weekly action cycle, an
//! overdue next step flagged well before the inactivity rule), the partner's request for
//! an extension, the vendor's request for more information, announcements with read
//! receipts, acknowledgements, the timekeeper's chase and the registration gate, and alert
//! subscriptions (who hears of what).

mod fixtures;
use fixtures::*;

use dealreg_domain::values::ContactOnRecord;
use dealreg_domain::values::{Audience, NoteVisibility, QuietHours};
use dealreg_domain::{ids::AnnouncementId, ids::NoteId};
use uuid::Uuid;

fn note(deal: &Deal, text: &str, visibility: NoteVisibility) -> (NoteId, Command) {
    let id = NoteId(Uuid::now_v7());
    (
        id,
        Command::AddNote(AddNote {
            account: deal.domain.clone(),
            registration_id: deal.id,
            note_id: id,
            text: text.into(),
            visibility,
        }),
    )
}

fn next_step(deal: &Deal, due_on: &str) -> Command {
    Command::SetNextStep(SetNextStep {
        account: deal.domain.clone(),
        registration_id: deal.id,
        text: "demo with the CFO".into(),
        due_on: date(due_on),
    })
}

fn overdue(deal: &Deal) -> Command {
    Command::FlagNextStepOverdue(FlagNextStepOverdue {
        account: deal.domain.clone(),
        registration_id: deal.id,
    })
}

// ------------------------------------------------------------------------------- notes

#[test]
fn the_owner_adds_a_partner_visible_note_and_the_vendor_an_internal_one() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let given = history([partner.events(), deal.approved()]);
    let (id, command) = note(&deal, "  CFO meeting booked  ", NoteVisibility::Partner);
    Scenario::given(given.clone())
        .by(partner.user())
        .when(command)
        .then(vec![Event::NoteAdded {
            account: deal.account.clone(),
            registration_id: deal.id,
            partner_id: partner.id,
            note_id: id,
            text: "CFO meeting booked".into(),
            visibility: NoteVisibility::Partner,
            by: "rep@partner.example".into(),
            from_partner: true,
            at: t0(),
        }]);
    let (_, internal) = note(&deal, "margin is thin", NoteVisibility::Internal);
    Scenario::given(given.clone())
        .by(partner.user())
        .when(internal.clone())
        .then_error(RejectionCode::NotAuthorised);
    let events = Scenario::given(given)
        .by(channel_manager())
        .when(internal)
        .then_ok();
    assert!(matches!(
        events[0],
        Event::NoteAdded {
            visibility: NoteVisibility::Internal,
            ..
        }
    ));
}

#[test]
fn another_partner_cannot_note_a_deal_it_does_not_own_nor_learn_it_exists() {
    let owner = reseller(Tier::Gold);
    let other = reseller(Tier::Gold);
    let deal = Deal::new(&owner, Motion::Reseller);
    let (_, command) = note(&deal, "mine now", NoteVisibility::Partner);
    Scenario::given(history([owner.events(), other.events(), deal.approved()]))
        .by(other.user())
        .when(command)
        .then_error(RejectionCode::UnknownRegistration);
}

#[test]
fn a_note_id_is_used_once_and_an_empty_note_is_refused() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let (id, command) = note(&deal, "first", NoteVisibility::Partner);
    let first = Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(command.clone())
        .then_ok();
    let Command::AddNote(mut again) = command else {
        unreachable!()
    };
    again.text = "second".into();
    Scenario::given(history([partner.events(), deal.approved(), first]))
        .by(partner.user())
        .when(Command::AddNote(again.clone()))
        .then_error(RejectionCode::AlreadyRecorded);
    again.note_id = NoteId(Uuid::now_v7());
    again.text = "   ".into();
    assert_ne!(again.note_id, id);
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(Command::AddNote(again))
        .then_error(RejectionCode::MissingField);
}

// -------------------------------------------------------------------------- next steps

#[test]
fn an_overdue_next_step_is_flagged_the_day_after_it_was_due_once() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let set = Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(next_step(&deal, "2026-03-06"))
        .then_ok();
    assert!(matches!(&set[0], Event::NextStepSet { due_on, .. } if *due_on == date("2026-03-06")));
    let given = history([partner.events(), deal.approved(), set]);
    // On its due day it is not overdue yet.
    Scenario::given(given.clone())
        .at(midnight(date("2026-03-06")) + hours(23))
        .by(timekeeper())
        .when(overdue(&deal))
        .then_error(RejectionCode::NotDue);
    let flagged = Scenario::given(given.clone())
        .at(midnight(date("2026-03-07")))
        .by(timekeeper())
        .when(overdue(&deal))
        .then(vec![Event::NextStepOverdue {
            account: deal.account.clone(),
            registration_id: deal.id,
            partner_id: partner.id,
            due_on: date("2026-03-06"),
            at: midnight(date("2026-03-07")),
        }]);
    // Once: flagged already.
    Scenario::given(history([given.clone(), flagged]))
        .at(midnight(date("2026-03-08")))
        .by(timekeeper())
        .when(overdue(&deal))
        .then_error(RejectionCode::AlreadyRecorded);
    // Only the timekeeper flags.
    Scenario::given(given)
        .at(midnight(date("2026-03-08")))
        .by(partner.user())
        .when(overdue(&deal))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_next_step_is_due_today_or_later_on_an_open_registration() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(next_step(&deal, "2026-03-01"))
        .then_error(RejectionCode::InvalidField);
    Scenario::given(history([partner.events(), deal.declined()]))
        .by(partner.user())
        .when(next_step(&deal, "2026-03-09"))
        .then_error(RejectionCode::InvalidTransition);
}

// ------------------------------------------------------------------------------ requests

#[test]
fn the_owner_requests_an_extension_of_a_protected_registration_only() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let request = Command::RequestExtension(RequestExtension {
        account: deal.domain.clone(),
        registration_id: deal.id,
        reason: "procurement slipped a month".into(),
    });
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(request.clone())
        .then(vec![Event::ExtensionRequested {
            account: deal.account.clone(),
            registration_id: deal.id,
            partner_id: partner.id,
            reason: "procurement slipped a month".into(),
            at: t0(),
        }]);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .by(partner.user())
        .when(request.clone())
        .then_error(RejectionCode::NotProtected);
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(channel_manager())
        .when(request)
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_channel_manager_asks_for_more_information_on_a_pending_registration() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let ask = Command::RequestMoreInformation(RequestMoreInformation {
        account: deal.domain.clone(),
        registration_id: deal.id,
        question: "who is the economic buyer?".into(),
    });
    let events = Scenario::given(history([partner.events(), deal.submitted()]))
        .when(ask.clone())
        .then_ok();
    assert!(matches!(events[0], Event::MoreInformationRequested { .. }));
    Scenario::given(history([partner.events(), deal.approved()]))
        .when(ask.clone())
        .then_error(RejectionCode::InvalidTransition);
    Scenario::given(history([partner.events(), deal.submitted()]))
        .by(partner.user())
        .when(ask)
        .then_error(RejectionCode::NotAuthorised);
}

// ------------------------------------------------------------------------- announcements

fn announcement(audience: Audience, policy_version: Option<u32>) -> (AnnouncementId, Event) {
    let id = AnnouncementId(Uuid::now_v7());
    (
        id,
        Event::AnnouncementPublished {
            announcement_id: id,
            title: "Protection shortens to 60 days".into(),
            text: "From policy 2, protection lasts 60 days.".into(),
            policy_version,
            audience,
            acknowledge_by: Some(t0() + days(7)),
            at: t0() - days(1),
        },
    )
}

fn acknowledge(partner: &TestPartner, id: AnnouncementId) -> Command {
    Command::AcknowledgeAnnouncement(AcknowledgeAnnouncement {
        partner_id: partner.id,
        announcement_id: id,
    })
}

#[test]
fn revops_publishes_an_announcement_once_with_a_future_acknowledgement_date() {
    let id = AnnouncementId(Uuid::now_v7());
    let publish = |acknowledge_by| {
        Command::PublishAnnouncement(PublishAnnouncement {
            announcement_id: id,
            title: "New tie break".into(),
            text: "First submitted wins.".into(),
            policy_version: Some(2),
            audience: Audience {
                tiers: vec![Tier::Gold],
                ..Audience::default()
            },
            acknowledge_by,
        })
    };
    let published = Scenario::given(vec![])
        .by(revops())
        .when(publish(Some(t0() + days(7))))
        .then_ok();
    Scenario::given(published)
        .by(revops())
        .when(publish(Some(t0() + days(7))))
        .then_error(RejectionCode::AlreadyRecorded);
    Scenario::given(vec![])
        .by(revops())
        .when(publish(Some(t0() - days(1))))
        .then_error(RejectionCode::InvalidField);
    let partner = reseller(Tier::Gold);
    Scenario::given(vec![])
        .by(partner.user())
        .when(publish(None))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_partner_in_the_audience_acknowledges_once_and_one_outside_is_told_it_does_not_exist() {
    let gold = reseller(Tier::Gold);
    let silver = reseller(Tier::Silver);
    let (id, published) = announcement(
        Audience {
            tiers: vec![Tier::Gold],
            ..Audience::default()
        },
        Some(2),
    );
    let given = history([gold.events(), silver.events(), vec![published]]);
    let acknowledged = Scenario::given(given.clone())
        .by(gold.user())
        .when(acknowledge(&gold, id))
        .then(vec![Event::AnnouncementAcknowledged {
            partner_id: gold.id,
            announcement_id: id,
            by: "rep@partner.example".into(),
            at: t0(),
        }]);
    Scenario::given(history([given.clone(), acknowledged]))
        .by(gold.user())
        .when(acknowledge(&gold, id))
        .then_error(RejectionCode::AlreadyRecorded);
    Scenario::given(given.clone())
        .by(silver.user())
        .when(acknowledge(&silver, id))
        .then_error(RejectionCode::UnknownAnnouncement);
    // Only the partner's own users acknowledge for it.
    Scenario::given(given)
        .by(silver.user())
        .when(acknowledge(&gold, id))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn the_first_read_is_recorded_once() {
    let partner = reseller(Tier::Gold);
    let (id, published) = announcement(Audience::default(), None);
    let read = Command::RecordAnnouncementRead(RecordAnnouncementRead {
        partner_id: partner.id,
        announcement_id: id,
    });
    let given = history([partner.events(), vec![published]]);
    let first = Scenario::given(given.clone())
        .by(partner.user())
        .when(read.clone())
        .then_ok();
    assert!(matches!(first[0], Event::AnnouncementRead { .. }));
    Scenario::given(history([given, first]))
        .by(partner.user())
        .when(read)
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn the_timekeeper_chases_a_missing_acknowledgement_two_days_before_it_is_due_once() {
    let partner = reseller(Tier::Gold);
    let (id, published) = announcement(Audience::default(), Some(2));
    let chase = Command::ChaseAnnouncement(ChaseAnnouncement {
        partner_id: partner.id,
        announcement_id: id,
    });
    let given = history([partner.events(), vec![published]]);
    Scenario::given(given.clone())
        .at(t0() + days(4))
        .by(timekeeper())
        .when(chase.clone())
        .then_error(RejectionCode::NotDue);
    let chased = Scenario::given(given.clone())
        .at(t0() + days(5))
        .by(timekeeper())
        .when(chase.clone())
        .then(vec![Event::AnnouncementChased {
            partner_id: partner.id,
            announcement_id: id,
            acknowledge_by: t0() + days(7),
            at: t0() + days(5),
        }]);
    Scenario::given(history([given.clone(), chased]))
        .at(t0() + days(6))
        .by(timekeeper())
        .when(chase.clone())
        .then_error(RejectionCode::AlreadyRecorded);
    // Acknowledged: nothing to chase.
    let acknowledged = Scenario::given(given.clone())
        .by(partner.user())
        .when(acknowledge(&partner, id))
        .then_ok();
    Scenario::given(history([given, acknowledged]))
        .at(t0() + days(5))
        .by(timekeeper())
        .when(chase)
        .then_error(RejectionCode::AlreadyRecorded);
}

#[test]
fn under_a_policy_that_requires_it_a_partner_registers_only_after_acknowledging_its_change() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let mut policy = policy_version(2);
    policy.require_acknowledgement = true;
    let (id, published) = announcement(Audience::default(), Some(2));
    let given = history([partner.events(), vec![published.clone()]]);
    let err = Scenario::given(given.clone())
        .with_policy(policy.clone())
        .by(partner.user())
        .when(deal.submit())
        .then_error(RejectionCode::AnnouncementNotAcknowledged);
    assert_eq!(err.details["announcement_id"], json!(id));
    assert!(
        err.message.contains("Protection shortens to 60 days"),
        "{}",
        err.message
    );
    let acknowledged = Scenario::given(given.clone())
        .by(partner.user())
        .when(acknowledge(&partner, id))
        .then_ok();
    Scenario::given(history([given.clone(), acknowledged]))
        .with_policy(policy.clone())
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
    // Without the setting, or for an announcement of another version, no gate.
    let mut relaxed = policy.clone();
    relaxed.require_acknowledgement = false;
    Scenario::given(given)
        .with_policy(relaxed)
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
    let (_, other_version) = announcement(Audience::default(), Some(3));
    Scenario::given(history([partner.events(), vec![other_version]]))
        .with_policy(policy)
        .by(partner.user())
        .when(deal.submit())
        .then_ok();
}

// ------------------------------------------------------------------------- subscriptions

fn subscription(partner: Option<PartnerId>) -> SetAlertSubscription {
    SetAlertSubscription {
        partner_id: partner,
        user: "ana".into(),
        name: "Ana Silva".into(),
        email: "ana@reseller.example".into(),
        by_email: true,
        slack_channel: Some("C0123".into()),
        alerts: vec!["registration_approved".into(), "protection_expiring".into()],
        quiet_hours: Some(QuietHours {
            start_hour: 20,
            end_hour: 7,
        }),
        digest: false,
    }
}

#[test]
fn a_partner_user_subscribes_its_own_people_with_the_contact_in_clear_until_sealed() {
    let partner = reseller(Tier::Gold);
    let other = reseller(Tier::Gold);
    let events = Scenario::given(partner.events())
        .by(partner.user())
        .when(Command::SetAlertSubscription(subscription(Some(
            partner.id,
        ))))
        .then_ok();
    let Event::AlertSubscriptionSet {
        recipient, alerts, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert!(matches!(recipient, ContactOnRecord::Clear(c) if c.email == "ana@reseller.example"));
    assert_eq!(alerts, &["protection_expiring", "registration_approved"]);
    assert!(events[0].contact().is_some());
    Scenario::given(history([partner.events(), other.events()]))
        .by(other.user())
        .when(Command::SetAlertSubscription(subscription(Some(
            partner.id,
        ))))
        .then_error(RejectionCode::NotAuthorised);
    // A vendor user's subscription is the program's; a partner cannot set one.
    Scenario::given(vec![])
        .by(channel_manager())
        .when(Command::SetAlertSubscription(subscription(None)))
        .then_ok();
    Scenario::given(vec![])
        .by(partner.user())
        .when(Command::SetAlertSubscription(subscription(None)))
        .then_error(RejectionCode::NotAuthorised);
}

#[test]
fn a_subscription_names_known_alerts_a_real_address_and_sensible_quiet_hours() {
    let partner = reseller(Tier::Gold);
    let refused = |change: fn(&mut SetAlertSubscription)| {
        let mut c = subscription(Some(partner.id));
        change(&mut c);
        Scenario::given(partner.events())
            .by(partner.user())
            .when(Command::SetAlertSubscription(c))
            .then_error(RejectionCode::InvalidField)
    };
    let err = refused(|c| c.alerts = vec!["everything".into()]);
    assert_eq!(err.details["unknown"], "everything");
    refused(|c| c.email = "not an address".into());
    refused(|c| {
        c.quiet_hours = Some(QuietHours {
            start_hour: 25,
            end_hour: 7,
        })
    });
}

#[test]
fn a_next_step_is_one_short_line() {
    let partner = reseller(Tier::Gold);
    let deal = Deal::new(&partner, Motion::Reseller);
    let with_text = |text: String| {
        Command::SetNextStep(SetNextStep {
            account: deal.domain.clone(),
            registration_id: deal.id,
            text,
            due_on: date("2026-03-09"),
        })
    };
    for text in ["x".repeat(201), "call\nthe buyer".to_string()] {
        Scenario::given(history([partner.events(), deal.approved()]))
            .by(partner.user())
            .when(with_text(text))
            .then_error(RejectionCode::InvalidField);
    }
    Scenario::given(history([partner.events(), deal.approved()]))
        .by(partner.user())
        .when(with_text("y".repeat(200)))
        .then_ok();
}
