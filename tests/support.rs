//! Shared test fixtures: commands written as the JSON a real client sends.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use dealreg_clock::ControlledClock;
use dealreg_engine::{CommandEnvelope, Engine, Reply};
use dealreg_events::EventStore;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid date")
}

pub fn envelope(key: Option<&str>, actor: Value, command: Value) -> CommandEnvelope {
    let mut body = json!({ "actor": actor, "command": command });
    if let Some(key) = key {
        body["idempotency_key"] = json!(key);
    }
    CommandEnvelope::parse(body.to_string().as_bytes()).expect("test envelope parses")
}

pub fn channel_manager() -> Value {
    json!({ "kind": "vendor", "role": "channel_manager", "user": "cm@vendor.example" })
}

pub fn system() -> Value {
    json!({ "kind": "system", "component": "timekeeper" })
}

pub fn partner_actor(partner: Uuid) -> Value {
    json!({ "kind": "partner", "partner_id": partner, "user": "rep@partner.example" })
}

pub fn onboard(partner: Uuid, name: &str, motions: &[&str], tier: &str, capacity: u32) -> Value {
    json!({
        "type": "onboard_partner",
        "partner_id": partner,
        "name": name,
        "motions": motions,
        "tier": tier,
        "territories": [{ "region": "emea", "vertical": "manufacturing" }],
        "capacity": capacity
    })
}

pub fn certify(partner: Uuid, product_line: &str, expires_on: &str) -> Value {
    json!({ "type": "certify_partner", "partner_id": partner, "product_line": product_line, "expires_on": expires_on })
}

pub fn submit(
    registration: Uuid,
    partner: Uuid,
    domain: &str,
    product_line: &str,
    motion: &str,
) -> Value {
    json!({
        "type": "submit_registration",
        "registration_id": registration,
        "partner_id": partner,
        "customer": {
            "company": format!("Customer of {domain}"),
            "domain": domain,
            "contact": { "name": "Dana Buyer", "email": format!("dana@{domain}") }
        },
        "product_line": product_line,
        "motion": motion,
        "estimated_amount": { "amount_minor": 4_800_000, "currency": "EUR" },
        "expected_close": "2026-06-30",
        "proof_of_work": "Discovery workshop held with the CFO on 2026-02-20; notes attached",
        "kind": "new_business"
    })
}

pub fn approve(registration: Uuid, domain: &str) -> Value {
    json!({ "type": "approve_registration", "account": domain, "registration_id": registration, "rationale": "Qualified, proof of work checked" })
}

/// The `advance_stage` commands that bring a protected, attributed registration of
/// `motion` to its closing stage (where it is won), each with the evidence its exit needs
/// (a 10 % discount where a quote is checked: inside every tier's band but `registered`'s).
pub fn to_closing_stage(registration: Uuid, domain: &str, motion: &str) -> Vec<Value> {
    let motion: dealreg_domain::Motion =
        serde_json::from_value(json!(motion)).expect("a motion's wire name");
    let names = dealreg_domain::stages::stages(motion);
    (1..=dealreg_domain::stages::closing_stage(motion))
        .map(|next| {
            json!({ "type": "advance_stage", "account": domain, "registration_id": registration,
                    "to_stage": names[next],
                    "evidence": { "note": "exit criteria met", "discount_percent": 10,
                                  "vendor_owner": "ae@vendor.example", "offer_reference": "offer-1",
                                  "transaction_reference": "txn-1", "success_criteria": "go-live in Q3",
                                  "integration": "warehouse connector" } })
        })
        .collect()
}

/// `mark_won` for `amount` (minor units) in `currency`, with an order reference.
pub fn won(registration: Uuid, domain: &str, amount_minor: i64, currency: &str) -> Value {
    json!({ "type": "mark_won", "account": domain, "registration_id": registration,
            "amount": { "amount_minor": amount_minor, "currency": currency }, "order_reference": "PO-4711" })
}

/// Onboards and certifies a partner for `analytics`, asserting each step succeeds.
pub async fn ready_partner<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
    name: &str,
    motion: &str,
) -> Uuid {
    let partner = Uuid::now_v7();
    for command in [
        onboard(partner, name, &[motion], "gold", 50),
        certify(partner, "analytics", "2027-12-31"),
    ] {
        let reply = must(
            engine
                .execute(envelope(None, channel_manager(), command))
                .await,
        );
        assert!(reply.ok, "setting up {name}: {reply:?}");
    }
    partner
}

pub fn must(result: Result<dealreg_engine::Executed, dealreg_engine::EngineError>) -> Reply {
    match result {
        Ok(executed) => executed.reply,
        Err(e) => panic!("engine failed: {e}"),
    }
}

pub fn event_types(reply: &Reply) -> Vec<String> {
    reply
        .events
        .iter()
        .map(|e| e.event.event_type().to_string())
        .collect()
}

/// Runs `dealreg demo` into a store in `dir` and returns its path.
pub fn demo_store(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("demo.db");
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .arg("demo")
        .output()
        .expect("run dealreg demo");
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    path
}

/// Runs the `dealreg` binary on the store at `store` with `args`, as a user would.
pub fn dealreg(store: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run dealreg")
}

/// The number of a one-number position (SQLite's: the row id) as a reply, a query answer
/// or an export names it: a token string, or a bare number as logs written before
/// positions were tokens hold.
/// The highest position among a reply's events: where its writes are all visible (a
/// submission's reply lists the capacity slot taken on the partner's stream first, before
/// the account's events).
pub fn last_position(reply: &serde_json::Value) -> Option<u64> {
    reply["events"]
        .as_array()?
        .iter()
        .filter_map(|e| position_number(&e["position"]))
        .max()
}

pub fn position_number(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(token) => token
            .parse::<dealreg_events::Position>()
            .ok()
            .and_then(|p| p.sequence()),
        other => other.as_u64(),
    }
}
