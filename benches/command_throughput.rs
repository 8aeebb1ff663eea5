//! Durable command throughput through the engine on the SQLite store, next to the floor of
//! raw batched SQLite inserts of the same rows with the same sync settings, in the same run.
//!
//! Run: `cargo bench --bench command_throughput` (env: `DEALREG_BENCH_REGISTRATIONS`,
//! default 4000, and `DEALREG_BENCH_IN_FLIGHT`, default 64).
//!
//! Each registration is two commands: the partner submits it (2 events: the registration on
//! the account stream, the capacity slot on the partner stream, appended atomically) and the
//! channel manager approves it (1 event). Many registrations are in flight at once, so group
//! commit can batch them; every reply is only given after its fsync.

#[path = "floor.rs"]
mod floor;

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use dealreg::clock::ControlledClock;
use dealreg::store::sqlite::SqliteStore;
use dealreg::store::{EventStore, GlobalPosition};
use dealreg::{CommandEnvelope, Engine};
use serde_json::json;
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn envelope(actor: serde_json::Value, command: serde_json::Value) -> CommandEnvelope {
    let body = json!({ "actor": actor, "command": command, "idempotency_key": Uuid::now_v7().to_string() });
    match CommandEnvelope::parse(body.to_string().as_bytes()) {
        Ok(envelope) => envelope,
        Err(e) => panic!("benchmark command does not parse: {e}"),
    }
}

fn main() {
    let registrations = env_usize("DEALREG_BENCH_REGISTRATIONS", 4000);
    let in_flight = env_usize("DEALREG_BENCH_IN_FLIGHT", 64).max(1);
    let partner_count = env_usize("DEALREG_BENCH_PARTNERS", 256).max(1);
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("no temp dir: {e}"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    };

    let store = match SqliteStore::open(dir.path().join("bench.db")) {
        Ok(store) => store,
        Err(e) => panic!("cannot open the store: {e}"),
    };
    let clock = ControlledClock::starting_at(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .unwrap_or_default(),
    );
    let (commands, events, elapsed, sample, setup) = runtime.block_on(async {
        let engine = match Engine::open(store.clone(), clock, None).await {
            Ok(engine) => Arc::new(engine),
            Err(e) => panic!("engine: {e}"),
        };
        let cm = json!({ "kind": "vendor", "role": "channel_manager", "user": "cm" });
        let partners: Vec<Uuid> = (0..partner_count).map(|_| Uuid::now_v7()).collect();
        for (i, p) in partners.iter().enumerate() {
            for command in [
                json!({ "type": "onboard_partner", "partner_id": p, "name": format!("Bench partner {i}"), "motions": ["reseller"], "tier": "gold",
                        "territories": [{ "region": "emea", "vertical": "retail" }], "capacity": 1_000_000 }),
                json!({ "type": "certify_partner", "partner_id": p, "product_line": "analytics", "expires_on": "2030-01-01" }),
            ] {
                let reply = engine.execute(envelope(cm.clone(), command)).await;
                assert!(matches!(&reply, Ok(e) if e.reply.ok), "bench setup failed: {reply:?}");
            }
        }
        let setup = store.stats();
        let before = store.read_all(GlobalPosition::ORIGIN, usize::MAX).await.map(|v| v.len()).unwrap_or(0);
        let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(registrations);
        for n in 0..registrations {
            let permit = match Arc::clone(&semaphore).acquire_owned().await {
                Ok(p) => p,
                Err(e) => panic!("semaphore: {e}"),
            };
            let engine = Arc::clone(&engine);
            let partner = partners[n % partners.len()];
            let cm = cm.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let registration = Uuid::now_v7();
                let domain = format!("customer-{n}.com");
                let submit = json!({
                    "type": "submit_registration", "registration_id": registration, "partner_id": partner,
                    "customer": { "company": format!("Customer {n}"), "domain": domain, "contact": { "name": "Dana", "email": format!("dana@{domain}") } },
                    "product_line": "analytics", "motion": "reseller",
                    "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" }, "expected_close": "2026-06-30",
                    "proof_of_work": "Joint discovery call held", "kind": "new_business" });
                let approve = json!({ "type": "approve_registration", "account": domain, "registration_id": registration, "rationale": "ok" });
                let actor = json!({ "kind": "partner", "partner_id": partner, "user": "rep" });
                let mut events = 0usize;
                for (actor, command) in [(actor, submit), (cm, approve)] {
                    match engine.execute(envelope(actor, command)).await {
                        Ok(done) if done.reply.ok => events += done.reply.events.len(),
                        other => panic!("bench command failed: {other:?}"),
                    }
                }
                events
            }));
        }
        let mut events = 0usize;
        for task in tasks {
            events += task.await.unwrap_or(0);
        }
        let elapsed = start.elapsed();
        let sample = store.read_all(GlobalPosition(before as u64), 1).await.ok().and_then(|v| v.into_iter().next());
        (registrations * 2, events, elapsed, sample, setup)
    });
    let mut stats = store.stats();
    stats.jobs -= setup.jobs;
    stats.commits -= setup.commits;
    drop(store);

    let (payload, metadata) = sample.map(|s| (s.data, s.metadata)).unwrap_or_default();
    let floor = match floor::raw_sqlite_inserts(
        &dir.path().join("floor.db"),
        events,
        128,
        &payload,
        &metadata,
    ) {
        Ok(f) => f,
        Err(e) => panic!("floor: {e}"),
    };
    let commands_per_s = commands as f64 / elapsed.as_secs_f64();
    let events_per_s = events as f64 / elapsed.as_secs_f64();
    println!("dealreg command throughput (SQLite, WAL, synchronous=FULL, {in_flight} registrations in flight, {partner_count} partners)");
    println!(
        "  engine : {commands} commands, {events} events in {:.2?}",
        elapsed
    );
    println!("           {commands_per_s:>10.0} commands/s  {events_per_s:>10.0} events/s");
    println!(
        "           group commit: {} commits (fsyncs) for {} appends ({:.1} appends/commit)",
        stats.commits,
        stats.jobs,
        stats.jobs as f64 / stats.commits.max(1) as f64
    );
    println!(
        "           {} of those appends lost an optimistic-concurrency race and were decided again",
        stats.jobs.saturating_sub(commands as u64)
    );
    println!(
        "  floor  : raw batched INSERTs (128 rows/txn) of the same {} rows in {:.2?}",
        floor.rows, floor.elapsed
    );
    println!("           {:>10.0} rows/s", floor.rows_per_second());
    println!(
        "  ratio  : engine events/s ÷ floor rows/s = {:.3}",
        events_per_s / floor.rows_per_second()
    );
}
