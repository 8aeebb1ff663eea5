//! What both benchmarks do to load the engine: partners onboarded and certified, then
//! registrations submitted by a partner and approved by the channel manager (3 events each:
//! the registration and the capacity slot, atomically; then the approval).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use dealreg_clock::ControlledClock;
use dealreg_engine::{CommandEnvelope, Engine};
use dealreg_events::EventStore;
use serde_json::json;
use uuid::Uuid;

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A command as a client sends it, with a fresh idempotency key.
pub fn envelope(actor: serde_json::Value, command: serde_json::Value) -> CommandEnvelope {
    let body = json!({ "actor": actor, "command": command, "idempotency_key": Uuid::now_v7().to_string() });
    match CommandEnvelope::parse(body.to_string().as_bytes()) {
        Ok(envelope) => envelope,
        Err(e) => panic!("benchmark command does not parse: {e}"),
    }
}

fn channel_manager() -> serde_json::Value {
    json!({ "kind": "vendor", "role": "channel_manager", "user": "cm" })
}

/// Onboards and certifies `count` reseller partners with room for a million registrations.
pub async fn onboard_partners<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
    count: usize,
) -> Vec<Uuid> {
    let partners: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for (i, p) in partners.iter().enumerate() {
        for command in [
            json!({ "type": "onboard_partner", "partner_id": p, "name": format!("Bench partner {i}"), "motions": ["reseller"], "tier": "gold",
                    "territories": [{ "region": "emea", "vertical": "retail" }], "capacity": 1_000_000 }),
            json!({ "type": "certify_partner", "partner_id": p, "product_line": "analytics", "expires_on": "2030-01-01" }),
        ] {
            let reply = engine.execute(envelope(channel_manager(), command)).await;
            assert!(
                matches!(&reply, Ok(e) if e.reply.ok),
                "bench setup failed: {reply:?}"
            );
        }
    }
    partners
}

/// Registration `n` for its own customer account: submitted, then approved. Returns the
/// number of events written.
pub async fn register_and_approve<S: EventStore + Clone>(
    engine: Arc<Engine<S, ControlledClock>>,
    partner: Uuid,
    n: usize,
) -> usize {
    let registration = Uuid::now_v7();
    let domain = format!("customer-{n}.com");
    let submit = json!({
        "type": "submit_registration", "registration_id": registration, "partner_id": partner,
        "customer": { "company": format!("Customer {n}"), "domain": domain, "contact": { "name": "Dana", "email": format!("dana@{domain}") } },
        "product_line": "analytics", "motion": "reseller",
        "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" }, "expected_close": "2026-06-30",
        "proof_of_work": "Joint discovery call held", "kind": "new_business" });
    let approve = json!({ "type": "approve_registration", "account": domain, "registration_id": registration, "rationale": "ok" });
    let partner_actor = json!({ "kind": "partner", "partner_id": partner, "user": "rep" });
    let mut events = 0;
    for (actor, command) in [(partner_actor, submit), (channel_manager(), approve)] {
        match engine.execute(envelope(actor, command)).await {
            Ok(done) if done.reply.ok => events += done.reply.events.len(),
            other => panic!("bench command failed: {other:?}"),
        }
    }
    events
}

/// Writes a log of about `target` events through the engine on `store`: 256 partners, then
/// registrations submitted and approved, 128 at a time (3 events each). The large log the
/// rebuild and what-if benches read.
#[allow(dead_code)] // the other benches load the engine their own way
pub async fn fill<S: EventStore + Clone>(store: S, target: usize) {
    let engine = Arc::new(
        Engine::open(store, ControlledClock::starting_at(start()), None)
            .await
            .unwrap_or_else(|e| panic!("engine: {e}")),
    );
    let partners = onboard_partners(&engine, 256).await;
    let registrations = target / 3 + 1;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = Vec::new();
    for n in 0..registrations {
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .unwrap_or_else(|e| panic!("semaphore: {e}"));
        let engine = Arc::clone(&engine);
        let partner = partners[n % partners.len()];
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            register_and_approve(engine, partner, n).await
        }));
        if tasks.len() >= 4096 {
            for task in tasks.drain(..) {
                task.await
                    .unwrap_or_else(|e| panic!("a command of the log failed: {e}"));
            }
        }
    }
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("a command of the log failed: {e}"));
    }
}
