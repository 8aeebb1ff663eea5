//! Offboarding is orderly: the partner's open registrations are released on their
//! accounts (nothing lost: they keep their history), and every decision records the
//! policy version it applied.

mod support;

use dealreg_clock::ControlledClock;
use dealreg_domain::{Boundary, PartnerId, RegistrationStatus, State};
use dealreg_engine::Engine;
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, Position};
use dealreg_host::reactor;
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};
use dealreg_views::MemoryCheckpoints;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test]
async fn offboarding_releases_open_registrations_and_keeps_their_history() {
    let store = MemoryStore::new();
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine opens");
    let partner = ready_partner(&engine, "Litware", "reseller").await;
    let mut registrations = Vec::new();
    for (i, domain) in ["alpha.com", "beta.com", "gamma.com"].iter().enumerate() {
        let id = Uuid::now_v7();
        let reply = must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(partner),
                    submit(id, partner, domain, "analytics", "reseller"),
                ))
                .await,
        );
        assert!(reply.ok, "{reply:?}");
        if i == 0 {
            let approved = must(
                engine
                    .execute(envelope(None, channel_manager(), approve(id, domain)))
                    .await,
            );
            assert!(approved.ok, "{approved:?}");
        }
        registrations.push((id, *domain));
    }

    let offboarded = must(
        engine
            .execute(envelope(
                Some("offboard-litware"),
                channel_manager(),
                json!({ "type": "offboard_partner", "partner_id": partner, "reason": "agreement ended" }),
            ))
            .await,
    );
    assert!(offboarded.ok, "{offboarded:?}");
    // The reply does not wait on the other accounts: it carries the offboarding only.
    assert_eq!(event_types(&offboarded), vec!["partner_offboarded"]);
    let reacted = reactor::catch_up(&engine, &MemoryCheckpoints::new())
        .await
        .expect("reactor");
    assert_eq!(reacted.issued.len(), 3, "one release per open registration");
    let open = serde_json::to_value(&offboarded.events[0].event).expect("json")
        ["open_registrations"]
        .clone();
    assert_eq!(
        open.as_array().map(Vec::len),
        Some(3),
        "all three open registrations are listed: {open}"
    );

    for (id, domain) in &registrations {
        let loaded = engine
            .load(&Boundary::Account(dealreg_domain::AccountKey(
                domain.to_string(),
            )))
            .await
            .expect("load");
        let State::Account(account) = &loaded.state else {
            panic!("account state")
        };
        let registration = account
            .registration(&dealreg_domain::RegistrationId(*id))
            .expect("kept");
        assert_eq!(
            registration.status,
            RegistrationStatus::Released,
            "{domain}"
        );
    }
    let loaded = engine
        .load(&Boundary::Partner(PartnerId(partner)))
        .await
        .expect("load partner");
    let State::Partner(facts) = &loaded.state else {
        panic!("partner state")
    };
    assert!(
        facts.open_slots.is_empty(),
        "every capacity slot was released"
    );

    // The released protection frees the product line for another partner.
    let rival = ready_partner(&engine, "Contoso", "reseller").await;
    let reply = must(
        engine
            .execute(envelope(
                None,
                partner_actor(rival),
                submit(Uuid::now_v7(), rival, "alpha.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert!(reply.ok, "the account is free again: {reply:?}");

    // Replaying the offboarding (same key) changes nothing more.
    let events_before = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .len();
    let again = engine
        .execute(envelope(
            Some("offboard-litware"),
            channel_manager(),
            json!({ "type": "offboard_partner", "partner_id": partner, "reason": "agreement ended" }),
        ))
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(
        store
            .read_all(Position::ORIGIN, 10_000)
            .await
            .expect("read")
            .len(),
        events_before
    );
}

/// Three open registrations on three accounts, and the offboarding of their partner.
async fn offboard_with_open_registrations<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
) -> (Uuid, Vec<(Uuid, &'static str)>) {
    let partner = ready_partner(engine, "Litware", "reseller").await;
    let mut registrations = Vec::new();
    for domain in ["alpha.com", "beta.com", "gamma.com"] {
        let id = Uuid::now_v7();
        let reply = must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(partner),
                    submit(id, partner, domain, "analytics", "reseller"),
                ))
                .await,
        );
        assert!(reply.ok, "{reply:?}");
        registrations.push((id, domain));
    }
    let offboarded = must(
        engine
            .execute(envelope(
                Some("offboard-litware"),
                channel_manager(),
                json!({ "type": "offboard_partner", "partner_id": partner, "reason": "agreement ended" }),
            ))
            .await,
    );
    assert!(offboarded.ok, "{offboarded:?}");
    (partner, registrations)
}

async fn events<S: EventStore>(store: &S) -> Vec<dealreg_events::RecordedEvent> {
    store
        .read_all(Position::ORIGIN, 100_000)
        .await
        .expect("read")
}

/// The process stops after the offboarding was acknowledged and one release went out,
/// before the reactor saved its checkpoint. On restart the reactor finishes the releases:
/// each registration is released exactly once, and a second run changes nothing.
#[tokio::test]
async fn a_crash_between_an_offboarding_and_its_releases_is_finished_by_the_reactor_once_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("offboarding.db");
    let (partner, registrations) = {
        let store = SqliteStore::open(&path).expect("open");
        let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
            .await
            .expect("engine");
        let (partner, registrations) = offboard_with_open_registrations(&engine).await;
        // The reactor had issued the first release when the process died.
        let offboarding = events(&store)
            .await
            .into_iter()
            .find(|e| e.event_type == "partner_offboarded")
            .expect("recorded");
        let follow_ups =
            reactor::follow_ups(&dealreg_engine::decode_event(&offboarding).expect("decode"));
        assert_eq!(follow_ups.len(), 3);
        let first = engine
            .execute(follow_ups[0].clone())
            .await
            .expect("first release");
        assert!(first.reply.ok && !first.replayed);
        (partner, registrations)
    };

    // Restart: a new process, the same file.
    let store = SqliteStore::open(&path).expect("reopen");
    let checkpoints = SqliteCheckpoints::open(&path).expect("checkpoints");
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine after restart");
    let reacted = reactor::catch_up(&engine, &checkpoints)
        .await
        .expect("reactor");
    assert_eq!(reacted.issued.len(), 3);
    assert_eq!(
        reacted.issued.iter().filter(|e| e.replayed).count(),
        1,
        "the release issued before the crash replays instead of acting again"
    );
    assert!(reacted.issued.iter().all(|e| e.reply.ok));

    let log = events(&store).await;
    for (id, domain) in &registrations {
        let releases = log
            .iter()
            .filter(|e| {
                e.event_type == "registration_released"
                    && String::from_utf8_lossy(&e.data).contains(&id.to_string())
            })
            .count();
        assert_eq!(releases, 1, "{domain} released exactly once");
    }
    let loaded = engine
        .load(&Boundary::Partner(PartnerId(partner)))
        .await
        .expect("load partner");
    let State::Partner(facts) = &loaded.state else {
        panic!("partner state")
    };
    assert!(
        facts.open_slots.is_empty(),
        "every capacity slot was released"
    );

    // Once more: the checkpoint is past the offboarding; nothing is issued or written.
    let again = reactor::catch_up(&engine, &checkpoints)
        .await
        .expect("reactor again");
    assert!(again.issued.is_empty());
    assert_eq!(events(&store).await.len(), log.len());
}

#[tokio::test]
async fn every_event_records_the_policy_version_and_the_clock_time() {
    let store = MemoryStore::new();
    let mut policy = dealreg_domain::Policy::default_program();
    policy.version = 7;
    let engine = Engine::open(
        store.clone(),
        ControlledClock::starting_at(start()),
        Some(policy),
    )
    .await
    .expect("engine opens");
    let partner = ready_partner(&engine, "Fabrikam", "reseller").await;
    let id = Uuid::now_v7();
    assert!(
        must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(partner),
                    submit(id, partner, "delta.com", "analytics", "reseller")
                ))
                .await
        )
        .ok
    );
    let approved = must(
        engine
            .execute(envelope(None, channel_manager(), approve(id, "delta.com")))
            .await,
    );
    let event = serde_json::to_value(&approved.events[0].event).expect("json");
    assert_eq!(
        event["policy_version"],
        json!(7),
        "the decision names its policy"
    );
    assert_eq!(
        event["at"],
        json!("2026-03-02T09:00:00Z"),
        "time comes from the clock adapter"
    );
    assert_eq!(
        event["expires_at"],
        json!("2026-05-31T09:00:00Z"),
        "90 days of reseller protection"
    );
    for recorded in store.read_all(Position::ORIGIN, 1000).await.expect("read") {
        let metadata: Value = serde_json::from_slice(&recorded.metadata).expect("metadata");
        assert_eq!(
            metadata["policy_version"],
            json!(7),
            "{}",
            recorded.event_type
        );
        assert_eq!(metadata["decided_at"], json!("2026-03-02T09:00:00Z"));
        assert!(metadata["command_id"].is_string() && metadata["actor"].is_object());
    }
}
