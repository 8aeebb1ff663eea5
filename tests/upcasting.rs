//! Invariant 2: stored events are never rewritten; older payloads are upcast on read.
//!
//! A store holding events of schema 1 (written before product lines were stored
//! normalised) is read by this build: the upcaster chain lifts each payload to the current
//! schema, so the old protected registration on ` Analytics ` still blocks a new one on
//! `analytics`, exactly as if it had been written today.

mod support;

use dealreg_clock::ControlledClock;
use dealreg_domain::{Event, Policy};
use dealreg_engine::{decode_event, Engine, EVENT_SCHEMA_VERSION};
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, ExpectedVersion, NewEvent, Position};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

fn v1_metadata(command: &str, actor: Value) -> Vec<u8> {
    json!({
        "schema": 1,
        "command_id": Uuid::now_v7(),
        "command": command,
        "actor": actor,
        "policy_version": 1,
        "decided_at": "2026-03-01T09:00:00Z"
    })
    .to_string()
    .into_bytes()
}

async fn append_raw(store: &MemoryStore, stream: &str, events: Vec<(Value, Vec<u8>)>) {
    let events = events
        .into_iter()
        .map(|(payload, metadata)| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: payload["type"].as_str().expect("a type").to_string(),
            data: payload.to_string().into_bytes(),
            metadata,
        })
        .collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
}

#[tokio::test]
async fn schema_1_events_are_read_as_the_current_shape_by_decoding_and_by_the_rules() {
    const {
        assert!(
            EVENT_SCHEMA_VERSION >= 2,
            "this build writes a newer schema than 1"
        )
    };
    let store = MemoryStore::new();
    let at = "2026-03-01T09:00:00Z";
    let old = Uuid::now_v7();
    let registration = Uuid::now_v7();
    // An older build's log: the program, a partner certified in ` Analytics `, and its
    // approved registration on acme.com / `Analytics `.
    let policy = serde_json::to_value(Policy::default_program()).expect("policy");
    append_raw(
        &store,
        "program",
        vec![(
            json!({ "type": "policy_adopted", "policy": policy, "at": at }),
            v1_metadata("adopt_policy", system()),
        )],
    )
    .await;
    append_raw(&store, &format!("partner-{old}"), vec![
        (json!({ "type": "partner_onboarded", "partner_id": old, "name": "Old Partner", "motions": ["reseller"], "tier": "gold", "territories": [], "capacity": 10, "at": at }),
         v1_metadata("onboard_partner", channel_manager())),
        (json!({ "type": "partner_certified", "partner_id": old, "product_line": " Analytics", "expires_on": "2027-12-31", "at": at }),
         v1_metadata("certify_partner", channel_manager())),
        (json!({ "type": "capacity_slot_taken", "partner_id": old, "registration_id": registration, "account": "acme.com", "at": at }),
         v1_metadata("submit_registration", partner_actor(old))),
    ]).await;
    append_raw(&store, "account-acme.com", vec![
        (json!({ "type": "registration_submitted", "account": "acme.com", "registration_id": registration, "partner_id": old,
                 "customer": { "company": "Acme", "domain": "acme.com", "contact": { "name": "Dana", "email": "dana@acme.com" } },
                 "product_line": "Analytics ", "motion": "reseller", "kind": "new_business",
                 "estimated_amount": { "amount_minor": 100000, "currency": "USD" }, "expected_close": "2026-09-30",
                 "proof_of_work": "met the CFO", "certified": true, "incumbent": false,
                 "approval_due_at": "2026-03-03T09:00:00Z", "policy_version": 1, "at": at }),
         v1_metadata("submit_registration", partner_actor(old))),
        (json!({ "type": "registration_approved", "account": "acme.com", "registration_id": registration, "partner_id": old,
                 "rationale": "ok", "protection_days": 90, "expires_at": "2026-05-30T09:00:00Z", "policy_version": 1, "at": at }),
         v1_metadata("approve_registration", channel_manager())),
    ]).await;

    // Decoding lifts the payload: the stored bytes say `Analytics `, the event says `analytics`.
    let stored = store.read_all(Position::ORIGIN, 100).await.expect("read");
    let submitted = stored
        .iter()
        .find(|e| e.event_type == "registration_submitted")
        .expect("the old submission");
    assert!(String::from_utf8_lossy(&submitted.data).contains("\"Analytics \""));
    match decode_event(submitted).expect("decodes") {
        Event::RegistrationSubmitted { product_line, .. } => assert_eq!(product_line, "analytics"),
        other => panic!("decoded as {other:?}"),
    }

    // The rules see the current shape too: the old protection blocks a new registration
    // of the same line, spelled the way this build stores it.
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine on the old log");
    let rival = ready_partner(&engine, "New Partner", "reseller").await;
    let reply = must(
        engine
            .execute(envelope(
                None,
                partner_actor(rival),
                submit(Uuid::now_v7(), rival, "acme.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert_eq!(
        reply.error.as_ref().map(|e| e.code.to_string()).as_deref(),
        Some("duplicate_registration"),
        "{reply:?}"
    );
    // The old partner's certification in ` Analytics` counts for `analytics`.
    let mine = must(
        engine
            .execute(envelope(
                None,
                partner_actor(old),
                submit(Uuid::now_v7(), old, "globex.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert!(mine.ok, "{mine:?}");
}

#[tokio::test]
async fn a_payload_of_a_newer_schema_is_refused_with_what_to_do() {
    let store = MemoryStore::new();
    let mut metadata: Value =
        serde_json::from_slice(&v1_metadata("adopt_policy", system())).expect("json");
    metadata["schema"] = json!(EVENT_SCHEMA_VERSION + 1);
    let policy = serde_json::to_value(Policy::default_program()).expect("policy");
    append_raw(
        &store,
        "program",
        vec![(
            json!({ "type": "policy_adopted", "policy": policy, "at": "2026-03-01T09:00:00Z" }),
            metadata.to_string().into_bytes(),
        )],
    )
    .await;
    let stored = store.read_all(Position::ORIGIN, 1).await.expect("read");
    let error = decode_event(&stored[0])
        .expect_err("a newer schema")
        .to_string();
    assert!(error.contains("upgrade dealreg"), "{error}");
}
