//! Invariant 7: a partner actor only ever receives partner-safe data, in views as in
//! replies. Over the whole seeded demo, every partner's pipeline view and every reply a
//! partner got (to every command the demo sends as a partner, accepted or refused) is
//! checked by key *and* by value: no pricing, discounts, notes, rationales, reasons,
//! commission, attribution, vendor users, and nothing of another partner (its id, its name,
//! its registrations). A second test sends every command as a partner on an account where
//! another partner works, so that every kind of refusal is seen too.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use dealreg_clock::ControlledClock;
use dealreg_engine::{Engine, ReplyLine};
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, Position};
use dealreg_host::runner::{catch_up, CatchUp};
use dealreg_projections::pipeline::Pipeline;
use dealreg_views::MemoryCheckpoints;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// Keys that name vendor-only data; none may appear in anything a partner receives.
const FORBIDDEN_KEYS: &[&str] = &[
    "amount",
    "amount_minor",
    "currency",
    "estimated_amount",
    "won_amount",
    "price",
    "discount",
    "discount_percent",
    "last_quoted_discount_percent",
    "commission",
    "rate_bps",
    "attribution",
    "sourcing",
    "influencers",
    "percent",
    "internal_notes",
    "note",
    "notes",
    "rationale",
    "reason",
    "reasons",
    "reason_code",
    "proof_of_work",
    "evidence",
    "partner_id",
    "parties",
    "revision",
    "protected_by",
    "outranked_by",
];

/// Every key and every leaf value of a JSON document.
fn walk(value: &Value, keys: &mut BTreeSet<String>, leaves: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                keys.insert(k.clone());
                walk(v, keys, leaves);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, keys, leaves)),
        leaf => leaves.push(leaf.clone()),
    }
}

/// What partner `me` may never be shown: vendor-only values of the whole log, and every
/// trace of the other partners.
struct Forbidden {
    /// Texts (rationales, reasons, notes, proof of work, vendor users, other partners'
    /// names and ids, their registrations' ids).
    texts: BTreeSet<String>,
    /// Amounts in minor units.
    amounts: BTreeSet<i64>,
}

fn forbidden_for(me: &str, log: &[Value], partners: &BTreeMap<String, String>) -> Forbidden {
    let mut texts = BTreeSet::new();
    let mut amounts = BTreeSet::new();
    const VENDOR_TEXT: &[&str] = &[
        "rationale",
        "reason",
        "reason_code",
        "note",
        "proof_of_work",
        "evidence",
        "owner",
        "reference",
    ];
    for event in log {
        for key in VENDOR_TEXT {
            if let Some(Value::String(text)) = event.get(*key) {
                if text.len() >= 8 {
                    texts.insert(text.clone());
                }
            }
        }
        if let Some(Value::String(note)) = event.pointer("/evidence/note") {
            texts.insert(note.clone());
        }
        for pointer in ["/estimated_amount/amount_minor", "/amount/amount_minor"] {
            if let Some(minor) = event.pointer(pointer).and_then(Value::as_i64) {
                amounts.insert(minor);
            }
        }
    }
    // Registrations `me` was never part of (submitted by another partner, never
    // reassigned to `me`, never influenced by `me`): an influencer sees the registrations
    // it influences (docs/RULES.md, "Visibility"; issue 30, item 8).
    let mut ever_mine = BTreeSet::new();
    let mut others = BTreeSet::new();
    for event in log {
        let id = event["registration_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event["type"].as_str() {
            Some("registration_submitted") if event["partner_id"] == json!(me) => {
                ever_mine.insert(id);
            }
            Some("registration_reassigned") if event["to"] == json!(me) => {
                ever_mine.insert(id);
            }
            Some("influencer_added") if event["partner_id"] == json!(me) => {
                ever_mine.insert(id);
            }
            Some("registration_submitted") => {
                others.insert(id);
            }
            _ => {}
        }
    }
    texts.extend(others.difference(&ever_mine).cloned());
    for (id, name) in partners {
        if id != me {
            texts.insert(id.clone());
            texts.insert(name.clone());
        }
    }
    for user in [
        "maria.cm@vendor.example",
        "tom.ae@vendor.example",
        "ines.revops@vendor.example",
    ] {
        texts.insert(user.to_string());
    }
    Forbidden { texts, amounts }
}

/// Panics, naming `what`, when `output` carries a forbidden key or value.
fn assert_partner_safe(what: &str, output: &Value, forbidden: &Forbidden) {
    let (mut keys, mut leaves) = (BTreeSet::new(), Vec::new());
    walk(output, &mut keys, &mut leaves);
    for key in FORBIDDEN_KEYS {
        assert!(
            !keys.contains(*key),
            "{what} carries the key `{key}`: {output}"
        );
    }
    for leaf in &leaves {
        match leaf {
            Value::String(text) => {
                for bad in &forbidden.texts {
                    assert!(
                        !text.contains(bad.as_str()),
                        "{what} carries `{bad}` (in `{text}`): {output}"
                    );
                }
            }
            Value::Number(n) => {
                if let Some(n) = n.as_i64() {
                    assert!(
                        !forbidden.amounts.contains(&n) || n < 100_000,
                        "{what} carries the amount {n}: {output}"
                    );
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_partner_receives_in_the_demo_leaks_vendor_data_or_other_partners() {
    let store = MemoryStore::new();
    let checkpoints = MemoryCheckpoints::new();
    let mut replies: Vec<(String, Value)> = Vec::new();
    let vault = std::sync::Arc::new(dealreg_vault::MemoryVault::new(
        dealreg_vault::KeyMaterial::Seeded(42),
    ));
    let run = dealreg_demo::run_observed(
        store.clone(),
        &checkpoints,
        42,
        vault,
        &mut |actor, line| {
            if let Some(partner) = actor.get("partner_id").and_then(Value::as_str) {
                let json = serde_json::to_value(line).unwrap_or(Value::Null);
                replies.push((partner.to_string(), json));
            }
            if actor["kind"] == "partner" {
                assert!(
                    matches!(line, ReplyLine::Partner { .. } | ReplyLine::Refused { .. }),
                    "a partner got a full reply: {line:?}"
                );
            }
        },
    )
    .await
    .expect("the demo runs");
    assert!(run.chains_intact);

    let log: Vec<Value> = store
        .read_all(Position::ORIGIN, 1_000_000)
        .await
        .expect("read")
        .iter()
        .map(|e| serde_json::from_slice(&e.data).expect("json"))
        .collect();
    let pipeline = catch_up::<Pipeline, _, _>(&store, &checkpoints, CatchUp::default(), |_| {})
        .await
        .expect("fold")
        .state;
    let partners: BTreeMap<String, String> = pipeline
        .partners()
        .map(|(id, name)| (id.to_string(), name.clone()))
        .collect();
    assert!(partners.len() >= 6, "the demo onboards its partners");

    let mut refusals: BTreeSet<String> = BTreeSet::new();
    let mut commands: BTreeSet<String> = BTreeSet::new();
    for (partner, name) in &partners {
        let forbidden = forbidden_for(partner, &log, &partners);
        assert!(forbidden.texts.len() > 50 && !forbidden.amounts.is_empty());
        let id = partner.parse().expect("uuid");
        let view = serde_json::to_value(pipeline.partner_view(dealreg_domain::PartnerId(id)))
            .expect("json");
        assert_partner_safe(&format!("{name}'s pipeline view"), &view, &forbidden);
        // Its own registrations now (submitted by it, or reassigned to it, and not away),
        // and those of others it influences now (added and not removed; a win locks them).
        let mut owners: BTreeMap<&str, &Value> = BTreeMap::new();
        let mut influencers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for e in &log {
            let id = e["registration_id"].as_str().unwrap_or_default();
            let who = e["partner_id"].as_str().unwrap_or_default().to_string();
            match e["type"].as_str() {
                Some("registration_submitted") => {
                    owners.insert(id, &e["partner_id"]);
                }
                Some("registration_reassigned") => {
                    owners.insert(id, &e["to"]);
                }
                Some("influencer_added") => {
                    influencers.entry(id).or_default().insert(who);
                }
                Some("influencer_removed") => {
                    influencers.entry(id).or_default().remove(&who);
                }
                Some("deal_won") => {
                    let locked = e["attribution"]["influencers"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    influencers.insert(id, locked);
                }
                _ => {}
            }
        }
        let own = owners.values().filter(|p| ***p == json!(partner)).count();
        let influenced = owners
            .iter()
            .filter(|(id, owner)| {
                ***owner != json!(partner)
                    && influencers.get(*id).is_some_and(|i| i.contains(partner))
            })
            .count();
        let shown = view.to_string().matches("\"registration_id\"").count();
        assert_eq!(
            shown,
            own + influenced,
            "{name}'s view shows each of its own registrations and each it influences"
        );
        let marked = view.to_string().matches("\"role\":\"influencer\"").count();
        assert_eq!(marked, influenced, "{name}'s influenced rows are marked so");
        for (_, reply) in replies.iter().filter(|(to, _)| to == partner) {
            assert_partner_safe(&format!("a reply to {name}"), reply, &forbidden);
            if let Some(command) = reply["command"].as_str() {
                commands.insert(command.to_string());
            }
            if let Some(code) = reply.pointer("/error/code").and_then(Value::as_str) {
                refusals.insert(code.to_string());
            }
        }
    }
    // The demo's partners submit, appeal, advance, withdraw, and are refused in many ways.
    for command in [
        "submit_registration",
        "appeal_decision",
        "advance_stage",
        "withdraw_registration",
    ] {
        assert!(
            commands.contains(command),
            "no partner sent {command}: {commands:?}"
        );
    }
    for code in ["duplicate_registration", "not_certified"] {
        assert!(
            refusals.contains(code),
            "no partner was refused with {code}: {refusals:?}"
        );
    }
}

/// Sends every command as partner `me` on an account where `rival` is protected,
/// sourcing and credited; collects what `me` is told.
#[tokio::test]
async fn every_command_and_refusal_a_partner_can_meet_is_answered_partner_safe() {
    let store = MemoryStore::new();
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine");
    let rival = ready_partner(&engine, "Rival Resale Ltd", "reseller").await;
    let me = ready_partner(&engine, "My Resale Ltd", "reseller").await;
    let cm = channel_manager();
    let theirs = Uuid::now_v7();
    let mine = Uuid::now_v7();
    for (actor, command) in [
        (
            partner_actor(rival),
            submit(theirs, rival, "acme.com", "analytics", "reseller"),
        ),
        (cm.clone(), approve(theirs, "acme.com")),
        (
            cm.clone(),
            json!({ "type": "set_sourcing_partner", "account": "acme.com", "registration_id": theirs, "partner_id": rival, "reason": "VENDOR-ONLY sourcing rationale" }),
        ),
        (cm.clone(), certify(me, "security", "2027-12-31")),
        (
            partner_actor(me),
            submit(mine, me, "acme.com", "security", "reseller"),
        ),
        (cm.clone(), approve(mine, "acme.com")),
        (
            cm.clone(),
            json!({ "type": "add_influencer", "account": "acme.com", "registration_id": mine, "partner_id": rival, "percent": 40, "reason": "VENDOR-ONLY influence rationale" }),
        ),
    ] {
        let reply = must(engine.execute(envelope(None, actor, command)).await);
        assert!(reply.ok, "setting up: {reply:?}");
    }
    let acct = "acme.com";
    let as_me = |command: Value| json!({ "actor": partner_actor(me), "command": command });
    let lines = [
        // Refused with codes whose full text would speak of the rival: its protection, its
        // share of the attribution on my deal.
        as_me(submit(Uuid::now_v7(), me, acct, "analytics", "reseller")),
        as_me(
            json!({ "type": "add_influencer", "account": acct, "registration_id": mine, "partner_id": me, "percent": 70, "reason": "x" }),
        ),
        // Accepted for its own deal.
        as_me(
            json!({ "type": "set_sourcing_partner", "account": acct, "registration_id": mine, "partner_id": me, "reason": "we originated it" }),
        ),
        as_me(
            json!({ "type": "withdraw_registration", "account": acct, "registration_id": theirs, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "set_sourcing_partner", "account": acct, "registration_id": theirs, "partner_id": me, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "advance_stage", "account": acct, "registration_id": mine, "to_stage": "qualification", "evidence": { "note": "" } }),
        ),
        as_me(
            json!({ "type": "advance_stage", "account": acct, "registration_id": mine, "to_stage": "qualification", "evidence": { "note": "met the buyer", "next_step": "scope the pilot" } }),
        ),
        as_me(
            json!({ "type": "appeal_decision", "account": acct, "registration_id": mine, "evidence": "x" }),
        ),
        as_me(
            json!({ "type": "mark_lost", "account": acct, "registration_id": theirs, "reason": "x" }),
        ),
        // Commands that are not a partner's at all.
        as_me(approve(theirs, acct)),
        as_me(
            json!({ "type": "decline_registration", "account": acct, "registration_id": theirs, "reason_code": "x", "rationale": "x" }),
        ),
        as_me(
            json!({ "type": "extend_protection", "account": acct, "registration_id": theirs, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "mark_won", "account": acct, "registration_id": theirs, "amount": { "amount_minor": 100, "currency": "EUR" } }),
        ),
        as_me(
            json!({ "type": "record_revenue_reversal", "account": acct, "registration_id": theirs, "amount": { "amount_minor": 100, "currency": "EUR" }, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "release_registration", "account": acct, "registration_id": theirs, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "reassign_registration", "account": acct, "registration_id": theirs, "to_partner": me, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "record_direct_opportunity", "account": acct, "opportunity_id": Uuid::now_v7(), "owner": "x", "product_line": "analytics", "amount": { "amount_minor": 100, "currency": "EUR" } }),
        ),
        as_me(
            json!({ "type": "resolve_conflict", "account": acct, "conflict_id": "acme.com/analytics/1", "rationale": "x" }),
        ),
        as_me(
            json!({ "type": "reassign_renewal_ownership", "account": acct, "product_line": "analytics", "to_partner": me, "reason": "x" }),
        ),
        as_me(
            json!({ "type": "assign_named_account", "account": acct, "partner_id": me, "exclusive": true, "reason": "x" }),
        ),
        as_me(json!({ "type": "expire_protection", "account": acct, "registration_id": theirs })),
        as_me(json!({ "type": "offboard_partner", "partner_id": rival, "reason": "x" })),
        as_me(
            json!({ "type": "record_commission_payout", "partner_id": me, "amount": { "amount_minor": 100, "currency": "EUR" }, "reference": "x" }),
        ),
        as_me(
            json!({ "type": "adopt_policy", "policy": serde_json::to_value(dealreg_domain::Policy::default_program()).expect("policy") }),
        ),
    ];
    let log: Vec<Value> = store
        .read_all(Position::ORIGIN, 100_000)
        .await
        .expect("read")
        .iter()
        .map(|e| serde_json::from_slice(&e.data).expect("json"))
        .collect();
    let partners: BTreeMap<String, String> = [
        (rival.to_string(), "Rival Resale Ltd".to_string()),
        (me.to_string(), "My Resale Ltd".to_string()),
    ]
    .into();
    let mut forbidden = forbidden_for(&me.to_string(), &log, &partners);
    forbidden.texts.insert("VENDOR-ONLY".into());
    let mut codes = BTreeSet::new();
    for line in lines {
        let reply = engine.execute_line(line.to_string().as_bytes()).await;
        assert!(matches!(reply, ReplyLine::Partner { .. }), "{reply:?}");
        let json = serde_json::to_value(&reply).expect("json");
        assert_partner_safe(
            &format!("the reply to {}", line["command"]["type"]),
            &json,
            &forbidden,
        );
        codes.insert(
            json.pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("ok")
                .to_string(),
        );
    }
    for code in [
        "ok",
        "duplicate_registration",
        "attribution_over_100",
        "unknown_registration",
        "exit_criteria_not_met",
        "not_authorised",
    ] {
        assert!(codes.contains(code), "no `{code}` among {codes:?}");
    }
}
