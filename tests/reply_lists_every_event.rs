//! Issue 30 item 11: a command's reply lists every event it wrote, in the order written,
//! the capacity slot it took or gave back on the partner's stream included, and a retry
//! with the same idempotency key gets the same list rebuilt from the log. An auditor
//! matching replies to the log finds no event that no reply reported.

mod support;

use std::collections::BTreeSet;

use dealreg_clock::ControlledClock;
use dealreg_engine::{Engine, Reply, ReplyLine};
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, ExpectedVersion, LogPages, NewEvent, Position, RecordedEvent};
use dealreg_store_sqlite::SqliteStore;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

async fn log_of<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut pages = LogPages::new(store, Position::ORIGIN).await.expect("head");
    while let Some(page) = pages.next_page().await.expect("read") {
        all.extend(page);
    }
    all
}

fn command_id(recorded: &RecordedEvent) -> String {
    let metadata: Value = serde_json::from_slice(&recorded.metadata).expect("metadata");
    metadata["command_id"]
        .as_str()
        .expect("command_id")
        .to_string()
}

type Entry = (String, u64, Position, String);

/// What the log holds for the command that wrote the reply's first event: every event
/// with its command id, in log order.
fn written_by(log: &[RecordedEvent], reply: &Reply) -> Vec<Entry> {
    let first = reply.events.first().expect("the reply lists an event");
    let anchor = log
        .iter()
        .find(|r| r.position == first.position)
        .expect("the replied event is in the log");
    let id = command_id(anchor);
    log.iter()
        .filter(|r| command_id(r) == id)
        .map(|r| {
            (
                r.stream.clone(),
                r.revision,
                r.position,
                r.event_type.clone(),
            )
        })
        .collect()
}

fn listed(reply: &Reply) -> Vec<Entry> {
    reply
        .events
        .iter()
        .map(|e| {
            (
                e.stream.clone(),
                e.revision,
                e.position,
                e.event.event_type().to_string(),
            )
        })
        .collect()
}

fn streams(entries: &[Entry]) -> BTreeSet<&str> {
    entries.iter().map(|e| e.0.as_str()).collect()
}

/// Sends `command` twice with one key: both replies list exactly what the command wrote,
/// in the order written, and the second is the first again.
async fn once_and_again<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
    store: &S,
    key: &str,
    actor: Value,
    command: Value,
    expect: &str,
) -> Reply {
    let first = engine
        .execute(envelope(Some(key), actor.clone(), command.clone()))
        .await
        .expect("first delivery");
    assert!(!first.replayed);
    assert!(first.reply.ok, "{:?}", first.reply);
    let log = log_of(store).await;
    let written = written_by(&log, &first.reply);
    assert_eq!(
        listed(&first.reply),
        written,
        "{key}: the reply lists every event the command wrote, in order"
    );
    assert!(
        written.iter().any(|e| e.3 == expect),
        "{key}: the command wrote {expect}: {written:?}"
    );
    assert_eq!(
        streams(&written).len(),
        2,
        "{key}: the account's and the partner's stream"
    );

    let again = engine
        .execute(envelope(Some(key), actor, command))
        .await
        .expect("duplicate delivery");
    assert!(again.replayed, "{key}: the duplicate is recognised");
    assert_eq!(
        again.reply, first.reply,
        "{key}: the duplicate gets the first reply, slot events included"
    );
    assert_eq!(
        log_of(store).await.len(),
        log.len(),
        "{key}: the duplicate wrote nothing"
    );
    first.reply
}

async fn every_event_listed<S: EventStore + Clone>(store: S) {
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine opens");
    let partner = ready_partner(&engine, "Contoso", "reseller").await;
    let partner_stream = format!("partner-{partner}");

    // A submission takes a slot on the partner's stream before the account records it.
    let kept = Uuid::now_v7();
    let submitted = once_and_again(
        &engine,
        &store,
        "submit-kept",
        partner_actor(partner),
        submit(kept, partner, "globex.com", "analytics", "reseller"),
        "capacity_slot_taken",
    )
    .await;
    assert_eq!(submitted.events[0].stream, partner_stream);
    assert_eq!(
        submitted.events[0].event.event_type(),
        "capacity_slot_taken",
        "the reservation comes first: it was written first"
    );

    // Withdrawn by the partner: the slot is given back after the account's write.
    let withdrawn = once_and_again(
        &engine,
        &store,
        "withdraw-kept",
        partner_actor(partner),
        json!({ "type": "withdraw_registration", "account": "globex.com", "registration_id": kept, "reason": "lost the deal" }),
        "capacity_slot_released",
    )
    .await;
    let last = withdrawn.events.last().expect("events");
    assert_eq!(last.stream, partner_stream);
    assert_eq!(last.event.event_type(), "capacity_slot_released");

    // Declined by the vendor.
    let declined = Uuid::now_v7();
    once_and_again(
        &engine,
        &store,
        "submit-declined",
        partner_actor(partner),
        submit(declined, partner, "initech.com", "analytics", "reseller"),
        "capacity_slot_taken",
    )
    .await;
    once_and_again(
        &engine,
        &store,
        "decline",
        channel_manager(),
        json!({ "type": "decline_registration", "account": "initech.com", "registration_id": declined, "reason_code": "no_proof", "rationale": "no notes" }),
        "capacity_slot_released",
    )
    .await;

    // Approved, then reassigned to another partner: the old partner's slot is given back
    // and the new one's taken, both listed (three streams).
    let approved = Uuid::now_v7();
    let other = ready_partner(&engine, "Fabrikam", "reseller").await;
    let reply = must(
        engine
            .execute(envelope(
                None,
                partner_actor(partner),
                submit(approved, partner, "umbrella.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert!(reply.ok, "{reply:?}");
    let reply = must(
        engine
            .execute(envelope(
                Some("approve"),
                channel_manager(),
                approve(approved, "umbrella.com"),
            ))
            .await,
    );
    assert!(reply.ok, "{reply:?}");
    engine.clock().set(start() + chrono::Duration::days(31));
    let flag =
        json!({ "type": "flag_inactive", "account": "umbrella.com", "registration_id": approved });
    let reply = must(engine.execute(envelope(None, system(), flag)).await);
    assert!(reply.ok, "{reply:?}");
    let reassign = json!({ "type": "reassign_registration", "account": "umbrella.com", "registration_id": approved, "to_partner": other, "reason": "the partner went quiet" });
    let first = engine
        .execute(envelope(
            Some("reassign"),
            channel_manager(),
            reassign.clone(),
        ))
        .await
        .expect("reassign");
    assert!(first.reply.ok, "{:?}", first.reply);
    let log = log_of(&store).await;
    let written = written_by(&log, &first.reply);
    assert_eq!(
        listed(&first.reply),
        written,
        "reassign: every event, in order"
    );
    assert_eq!(
        streams(&written).len(),
        3,
        "the account's, the old partner's (released) and the new one's (taken): {written:?}"
    );
    // The old partner holds nothing on the account any more: the retry still finds the
    // slot given back on its stream.
    let again = engine
        .execute(envelope(Some("reassign"), channel_manager(), reassign))
        .await
        .expect("reassign again");
    assert!(again.replayed);
    assert_eq!(again.reply, first.reply);

    // Another engine on the store (a restart: nothing cached) rebuilds the same reply.
    let later = Engine::open(
        store.clone(),
        ControlledClock::starting_at(start() + chrono::Duration::days(31)),
        None,
    )
    .await
    .expect("engine opens again");
    let again = later
        .execute(envelope(
            Some("submit-kept"),
            partner_actor(partner),
            submit(kept, partner, "globex.com", "analytics", "reseller"),
        ))
        .await
        .expect("retry after a restart");
    assert!(again.replayed);
    // (Its vault is another, in memory: the contact reads as erased; the events are the same.)
    assert_eq!(listed(&again.reply), listed(&submitted));

    // A slot an interrupted command left (taken, never backed by the account) is lapsed
    // on the account and given back on the partner's stream: both in the reply.
    let orphan_partner = ready_partner(&later, "Initrode", "reseller").await;
    let orphan = Uuid::now_v7();
    let at = start() + chrono::Duration::days(31);
    store
        .append(
            &format!("partner-{orphan_partner}"),
            ExpectedVersion::Any,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "capacity_slot_taken".into(),
                data: json!({ "type": "capacity_slot_taken", "partner_id": orphan_partner, "registration_id": orphan, "account": "lapsed.example", "at": at })
                    .to_string()
                    .into_bytes(),
                metadata: json!({ "schema": 3, "command_id": Uuid::now_v7(), "command": "submit_registration", "actor": partner_actor(orphan_partner), "policy_version": 1, "decided_at": at })
                    .to_string()
                    .into_bytes(),
            }],
        )
        .await
        .expect("an interrupted command's reservation");
    let fresh = Engine::open(
        store.clone(),
        ControlledClock::starting_at(at + chrono::Duration::minutes(5)),
        None,
    )
    .await
    .expect("engine opens again");
    once_and_again(
        &fresh,
        &store,
        "lapse",
        system(),
        json!({ "type": "lapse_capacity_slot", "account": "lapsed.example", "registration_id": orphan, "partner_id": orphan_partner, "slot": 1 }),
        "capacity_slot_released",
    )
    .await;
}

#[tokio::test]
async fn memory_store_replies_list_every_event() {
    every_event_listed(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_replies_list_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("log.db")).expect("store");
    every_event_listed(store).await;
}

/// A partner's reply shows its own slot events (partner-safe), at the positions written;
/// the duplicate shows the same.
#[tokio::test]
async fn partner_reply_lists_its_own_slot_events() {
    let store = MemoryStore::new();
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine opens");
    let partner = ready_partner(&engine, "Contoso", "reseller").await;
    let line = json!({
        "idempotency_key": "partner-submit",
        "actor": partner_actor(partner),
        "command": submit(Uuid::now_v7(), partner, "globex.com", "analytics", "reseller"),
    })
    .to_string();
    let first = engine.execute_line(line.as_bytes()).await;
    let ReplyLine::Partner { reply, replayed } = &first else {
        panic!("a partner gets the partner reply: {first:?}");
    };
    assert!(reply.ok && !replayed, "{reply:?}");
    let log = log_of(&store).await;
    let anchor = log
        .iter()
        .find(|r| r.position == reply.events[0].position)
        .expect("in the log");
    let id = command_id(anchor);
    let written: Vec<(Position, String)> = log
        .iter()
        .filter(|r| command_id(r) == id)
        .map(|r| (r.position, r.event_type.clone()))
        .collect();
    let shown: Vec<(Position, String)> = reply
        .events
        .iter()
        .map(|e| {
            let v = serde_json::to_value(&e.event).expect("json");
            (e.position, v["type"].as_str().expect("type").to_string())
        })
        .collect();
    assert_eq!(shown, written, "its own slot and registration, in order");
    let shown_json = serde_json::to_string(reply).expect("json");
    assert!(
        !shown_json.contains("\"stream\""),
        "a partner's reply names no stream: {shown_json}"
    );

    let again = engine.execute_line(line.as_bytes()).await;
    let ReplyLine::Partner {
        reply: replayed_reply,
        replayed,
    } = &again
    else {
        panic!("{again:?}");
    };
    assert!(replayed);
    assert_eq!(replayed_reply, reply);
}
