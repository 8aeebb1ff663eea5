//! Advancing the clock across 120 days makes the timekeeper issue exactly the expected
//! reminders, breaches, inactivity flags and expiries, once each, on time, even when it
//! restarts midway and re-issues what it had already sent.

mod support;

use std::collections::BTreeMap;

use chrono::Duration;
use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::{EventStore, Position};
use dealreg_host::runner::{catch_up, CatchUp};
use dealreg_host::timekeeper::tick;
use dealreg_projections::deadlines::Deadlines;
use dealreg_store_sqlite::SqliteCheckpoints;
use dealreg_store_sqlite::SqliteStore;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test]
async fn one_hundred_twenty_days_of_deadlines_fire_once_each_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("time.db");
    let store = SqliteStore::open(&path).expect("open");
    let clock = ControlledClock::starting_at(start());
    let engine = Engine::open(store.clone(), clock.clone(), None)
        .await
        .expect("engine");
    let p = ready_partner(&engine, "Contoso", "reseller").await;
    let mut regs = BTreeMap::new();
    for (name, domain) in [
        ("r1", "one.com"),
        ("r2", "two.com"),
        ("r3", "three.com"),
        ("r4", "four.com"),
        ("r5", "five.com"),
    ] {
        let id = Uuid::now_v7();
        assert!(
            must(
                engine
                    .execute(envelope(
                        None,
                        partner_actor(p),
                        submit(id, p, domain, "analytics", "reseller")
                    ))
                    .await
            )
            .ok
        );
        regs.insert(name, (id, domain));
    }
    clock.advance(Duration::hours(20));
    for name in ["r1", "r2", "r3"] {
        let (id, domain) = regs[name];
        assert!(
            must(
                engine
                    .execute(envelope(None, channel_manager(), approve(id, domain)))
                    .await
            )
            .ok
        );
    }
    let (r4, d4) = regs["r4"];
    let decline = json!({ "type": "decline_registration", "account": d4, "registration_id": r4, "reason_code": "no_proof", "rationale": "no notes" });
    assert!(
        must(
            engine
                .execute(envelope(None, channel_manager(), decline))
                .await
        )
        .ok
    );

    let mut views = SqliteCheckpoints::open(&path).expect("views");
    let mut stale: Option<Deadlines> = None;
    let step = Duration::hours(6);
    for n in 1..=(120 * 4) {
        clock.set(start() + step * n);
        let now = start() + step * n;
        if now == start() + Duration::days(20) {
            let (id, domain) = regs["r2"];
            let touch = json!({ "type": "set_sourcing_partner", "account": domain, "registration_id": id, "partner_id": p, "reason": "originated" });
            assert!(
                must(
                    engine
                        .execute(envelope(None, partner_actor(p), touch))
                        .await
                )
                .ok
            );
        }
        if now == start() + Duration::days(80) {
            let (id, domain) = regs["r3"];
            let extend = json!({ "type": "extend_protection", "account": domain, "registration_id": id, "reason": "procurement" });
            assert!(
                must(
                    engine
                        .execute(envelope(None, channel_manager(), extend))
                        .await
                )
                .ok
            );
        }
        if now == start() + Duration::days(60) {
            // Restart: a new runner reads its checkpoint from the store file; then it
            // re-issues an old tick's commands from a stale view, as after a crash between
            // issuing and checkpointing. Nothing may happen twice.
            views = SqliteCheckpoints::open(&path).expect("views after restart");
            if let Some(old) = stale.take() {
                let before = store
                    .read_all(Position::ORIGIN, 100_000)
                    .await
                    .expect("read")
                    .len();
                clock.set(now);
                let replayed = tick(&engine, &old).await.expect("stale tick");
                assert!(
                    replayed
                        .issued
                        .iter()
                        .all(|(_, e)| e.replayed || !e.reply.ok),
                    "re-issued commands replay"
                );
                assert_eq!(
                    store
                        .read_all(Position::ORIGIN, 100_000)
                        .await
                        .expect("read")
                        .len(),
                    before,
                    "a re-issue adds nothing"
                );
            }
        }
        let deadlines = catch_up::<Deadlines, _, _>(&store, &views, CatchUp::default(), |_| {})
            .await
            .expect("deadlines")
            .state;
        let done = tick(&engine, &deadlines).await.expect("tick");
        if !done.issued.is_empty() && now < start() + Duration::days(60) {
            stale = Some(deadlines);
        }
    }

    let mut fired: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in store
        .read_all(Position::ORIGIN, 100_000)
        .await
        .expect("read")
    {
        let metadata: Value = serde_json::from_slice(&e.metadata).expect("metadata");
        if metadata["actor"]["component"] != "timekeeper" {
            continue;
        }
        assert_ne!(
            e.event_type,
            "command_rejected",
            "the timekeeper only sends what is due: {}",
            String::from_utf8_lossy(&e.data)
        );
        let data: Value = serde_json::from_slice(&e.data).expect("data");
        let name = regs
            .iter()
            .find(|(_, (id, _))| json!(id) == data["registration_id"])
            .map(|(n, _)| n.to_string())
            .expect("known");
        fired
            .entry((e.event_type.clone(), name))
            .or_default()
            .push(data["at"].as_str().unwrap_or_default().to_string());
    }
    let approved = start() + Duration::hours(20);
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Due times rounded up to the next 6-hour tick.
    let tick_after = |due: chrono::DateTime<chrono::Utc>| {
        let n = ((due - start()).num_seconds() + step.num_seconds() - 1) / step.num_seconds();
        at(start() + step * i32::try_from(n).expect("ticks"))
    };
    let expected: BTreeMap<(String, String), Vec<String>> = [
        (
            ("approval_sla_breached", "r5"),
            vec![tick_after(start() + Duration::hours(48))],
        ),
        (
            ("registration_flagged_inactive", "r5"),
            vec![tick_after(start() + Duration::days(30))],
        ),
        (
            ("registration_flagged_inactive", "r1"),
            vec![tick_after(approved + Duration::days(30))],
        ),
        (
            ("registration_flagged_inactive", "r2"),
            vec![tick_after(start() + Duration::days(50))],
        ),
        (
            ("registration_flagged_inactive", "r3"),
            vec![
                tick_after(approved + Duration::days(30)),
                tick_after(start() + Duration::days(110)),
            ],
        ),
        (
            ("expiry_reminder_sent", "r1"),
            vec![tick_after(approved + Duration::days(83))],
        ),
        (
            ("expiry_reminder_sent", "r2"),
            vec![tick_after(approved + Duration::days(83))],
        ),
        (
            ("expiry_reminder_sent", "r3"),
            vec![tick_after(approved + Duration::days(113))],
        ),
        (
            ("protection_expired", "r1"),
            vec![tick_after(approved + Duration::days(90))],
        ),
        (
            ("protection_expired", "r2"),
            vec![tick_after(approved + Duration::days(90))],
        ),
        // Expiry frees the partner's capacity slot in the same atomic append.
        (
            ("capacity_slot_released", "r1"),
            vec![tick_after(approved + Duration::days(90))],
        ),
        (
            ("capacity_slot_released", "r2"),
            vec![tick_after(approved + Duration::days(90))],
        ),
    ]
    .into_iter()
    .map(|((kind, name), times)| ((kind.to_string(), name.to_string()), times))
    .collect();
    assert_eq!(
        fired, expected,
        "exactly the expected deadlines, once each, on the first tick after they fell due"
    );
}

#[tokio::test]
async fn conflict_slas_are_flagged_once_by_the_timekeeper() {
    let (dir, store, clock, engine) = fresh("conflicts").await;
    let path = dir.path().join("conflicts.db");
    let a = ready_partner(&engine, "Contoso", "reseller").await;
    let b = ready_partner(&engine, "Fabrikam", "reseller").await;
    assert!(
        must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(a),
                    submit(Uuid::now_v7(), a, "acme.com", "analytics", "reseller")
                ))
                .await
        )
        .ok
    );
    let second = must(
        engine
            .execute(envelope(
                None,
                partner_actor(b),
                submit(Uuid::now_v7(), b, "acme.com", "analytics", "reseller"),
            ))
            .await,
    );
    let conflict = second
        .events
        .iter()
        .map(|e| serde_json::to_value(&e.event).expect("json"))
        .find(|e| e["type"] == "conflict_detected")
        .expect("a horizontal conflict")["conflict_id"]
        .clone();
    let views = SqliteCheckpoints::open(&path).expect("views");
    for hour in 1..=(10 * 24) {
        clock.set(start() + Duration::hours(hour));
        if hour == 30 {
            let ack = json!({ "type": "acknowledge_conflict", "account": "acme.com", "conflict_id": conflict, "note": "looking" });
            assert!(must(engine.execute(envelope(None, channel_manager(), ack)).await).ok);
        }
        let deadlines = catch_up::<Deadlines, _, _>(&store, &views, CatchUp::default(), |_| {})
            .await
            .expect("deadlines")
            .state;
        tick(&engine, &deadlines).await.expect("tick");
    }
    let breaches: Vec<(String, String)> = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.event_type == "conflict_sla_breached" || e.event_type == "command_rejected")
        .map(|e| {
            let data: Value = serde_json::from_slice(&e.data).expect("data");
            (
                data["sla"].as_str().unwrap_or(&e.event_type).to_string(),
                data["at"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        breaches,
        vec![
            (
                "acknowledgement".to_string(),
                at(start() + Duration::hours(24))
            ),
            (
                "resolution_plan".to_string(),
                at(start() + Duration::days(7))
            ),
        ],
        "the late acknowledgement and the missing plan are each flagged once, on time"
    );
}

#[tokio::test]
async fn renewal_ownership_review_is_issued_once_ninety_days_before_renewal() {
    let (dir, store, clock, engine) = fresh("renewal").await;
    let path = dir.path().join("renewal.db");
    let p = ready_partner(&engine, "Contoso", "reseller").await;
    let id = Uuid::now_v7();
    assert!(
        must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(p),
                    submit(id, p, "acme.com", "analytics", "reseller")
                ))
                .await
        )
        .ok
    );
    assert!(
        must(
            engine
                .execute(envelope(None, channel_manager(), approve(id, "acme.com")))
                .await
        )
        .ok
    );
    let source = json!({ "type": "set_sourcing_partner", "account": "acme.com", "registration_id": id, "partner_id": p, "reason": "originated" });
    assert!(
        must(
            engine
                .execute(envelope(None, channel_manager(), source))
                .await
        )
        .ok
    );
    for advance in to_closing_stage(id, "acme.com", "reseller") {
        assert!(
            must(
                engine
                    .execute(envelope(None, channel_manager(), advance))
                    .await
            )
            .ok
        );
    }
    let won = won(id, "acme.com", 1_000_000, "EUR");
    assert!(must(engine.execute(envelope(None, channel_manager(), won)).await).ok);
    let views = SqliteCheckpoints::open(&path).expect("views");
    for day in 1..=300 {
        clock.set(start() + Duration::days(day));
        let deadlines = catch_up::<Deadlines, _, _>(&store, &views, CatchUp::default(), |_| {})
            .await
            .expect("deadlines")
            .state;
        tick(&engine, &deadlines).await.expect("tick");
    }
    let reviews: Vec<String> = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.event_type == "renewal_ownership_review_due")
        .map(|e| {
            serde_json::from_slice::<Value>(&e.data).expect("data")["at"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // Won 2026-03-02, renews 2027-03-02, reviewed from 2026-12-02: the first daily tick.
    assert_eq!(reviews, vec!["2026-12-02T09:00:00Z".to_string()]);
}

/// A store file in a fresh temp dir (`<name>.db`), a controlled clock at `start()`, and an
/// engine over them.
async fn fresh(
    name: &str,
) -> (
    tempfile::TempDir,
    SqliteStore,
    ControlledClock,
    Engine<SqliteStore, ControlledClock>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join(format!("{name}.db"))).expect("open");
    let clock = ControlledClock::starting_at(start());
    let engine = Engine::open(store.clone(), clock.clone(), None)
        .await
        .expect("engine");
    (dir, store, clock, engine)
}

/// Runs the timekeeper every hour for `hours` hours, `during(hour)` first each hour.
async fn hourly<F, Fut>(
    engine: &Engine<SqliteStore, ControlledClock>,
    store: &SqliteStore,
    views: &SqliteCheckpoints,
    clock: &ControlledClock,
    hours: i64,
    mut during: F,
) where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for hour in 1..=hours {
        clock.set(start() + Duration::hours(hour));
        during(hour).await;
        let deadlines = catch_up::<Deadlines, _, _>(store, views, CatchUp::default(), |_| {})
            .await
            .expect("deadlines")
            .state;
        tick(engine, &deadlines).await.expect("tick");
    }
}

/// The events of `types` in the log, with their `at`.
async fn recorded(store: &SqliteStore, types: &[&str]) -> Vec<(String, String)> {
    store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| types.contains(&e.event_type.as_str()))
        .map(|e| {
            let data: Value = serde_json::from_slice(&e.data).expect("data");
            (
                e.event_type.clone(),
                data["at"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn secs(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn a_recorded_resolution_plan_meets_the_plan_sla_and_the_timekeeper_leaves_it() {
    let (dir, store, clock, engine) = fresh("plan").await;
    let path = dir.path().join("plan.db");
    let a = ready_partner(&engine, "Contoso", "reseller").await;
    let b = ready_partner(&engine, "Fabrikam", "reseller").await;
    for p in [a, b] {
        let reply = must(
            engine
                .execute(envelope(
                    None,
                    partner_actor(p),
                    submit(Uuid::now_v7(), p, "acme.com", "analytics", "reseller"),
                ))
                .await,
        );
        assert!(reply.ok);
    }
    let conflict = "acme.com/analytics/1";
    let views = SqliteCheckpoints::open(&path).expect("views");
    hourly(&engine, &store, &views, &clock, 10 * 24, |hour| {
        let engine = &engine;
        async move {
            let command = match hour {
                2 => json!({ "type": "acknowledge_conflict", "account": "acme.com", "conflict_id": conflict, "note": "looking" }),
                48 => json!({ "type": "record_resolution_plan", "account": "acme.com", "conflict_id": conflict,
                              "owner": "maria.cm@vendor.example", "steps": ["call both partners", "compare proof of work"],
                              "resolve_by": "2026-03-20" }),
                _ => return,
            };
            let reply = must(engine.execute(envelope(None, channel_manager(), command)).await);
            assert!(reply.ok, "{reply:?}");
        }
    })
    .await;
    assert_eq!(
        recorded(
            &store,
            &["conflict_sla_breached", "conflict_resolution_plan_recorded"]
        )
        .await,
        vec![(
            "conflict_resolution_plan_recorded".to_string(),
            secs(start() + Duration::hours(48))
        )],
        "acknowledged and planned in time: no breach, though the conflict is not resolved"
    );
}

#[tokio::test]
async fn a_referral_not_accepted_within_24_hours_is_flagged_once_an_accepted_one_never() {
    let (dir, store, clock, engine) = fresh("referral").await;
    let path = dir.path().join("referral.db");
    let p = ready_partner(&engine, "Northwind", "referral").await;
    let (accepted, waiting) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, domain) in [(accepted, "acme.com"), (waiting, "globex.com")] {
        for command in [
            submit(id, p, domain, "analytics", "referral"),
            approve(id, domain),
            json!({ "type": "set_sourcing_partner", "account": domain, "registration_id": id, "partner_id": p, "reason": "referred" }),
        ] {
            let reply = must(
                engine
                    .execute(envelope(None, channel_manager(), command))
                    .await,
            );
            assert!(reply.ok, "{reply:?}");
        }
    }
    let views = SqliteCheckpoints::open(&path).expect("views");
    hourly(&engine, &store, &views, &clock, 72, |hour| {
        let engine = &engine;
        async move {
            if hour == 10 {
                let intro = json!({ "type": "advance_stage", "account": "acme.com", "registration_id": accepted,
                                    "to_stage": "validate",
                                    "evidence": { "note": "intro call held", "vendor_owner": "ae.jones@vendor.example" } });
                let reply = must(engine.execute(envelope(None, channel_manager(), intro)).await);
                assert!(reply.ok, "{reply:?}");
            }
        }
    })
    .await;
    let breaches: Vec<Value> = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.event_type == "referral_sla_breached")
        .map(|e| serde_json::from_slice(&e.data).expect("data"))
        .collect();
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert_eq!(breaches[0]["registration_id"], json!(waiting));
    assert_eq!(
        breaches[0]["at"],
        json!(secs(start() + Duration::hours(24)))
    );
    assert!(
        recorded(&store, &["approval_sla_breached"])
            .await
            .is_empty(),
        "both were decided in time: the 48-hour clock is apart"
    );
}

/// The deployment's further duties (the CRM sync, checkpoint signing) run where its
/// timekeeper runs: in the one process holding the duties. Two hosts given the same duty
/// run it one at a time, and the other takes it over when the holder stops.
#[tokio::test]
async fn a_duty_given_to_two_hosts_runs_in_the_lease_holder_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use dealreg_clock::SystemClock;
    use dealreg_events::memory::MemoryStore;
    use dealreg_host::host::{self, Duty, HostOptions, HostStores, Unobserved};
    use dealreg_views::{MemoryCheckpoints, Unshared};

    #[derive(Default)]
    struct Runs {
        now: AtomicUsize,
        most: AtomicUsize,
        by: Mutex<Vec<&'static str>>,
    }
    let runs = Arc::new(Runs::default());
    let duty = |holder: &'static str| {
        let runs = Arc::clone(&runs);
        Duty::new("test duty", move |stop| {
            let runs = Arc::clone(&runs);
            async move {
                let now = runs.now.fetch_add(1, Ordering::SeqCst) + 1;
                runs.most.fetch_max(now, Ordering::SeqCst);
                runs.by.lock().expect("runs").push(holder);
                stop.await;
                runs.now.fetch_sub(1, Ordering::SeqCst);
            }
        })
    };
    let store = MemoryStore::new();
    let engine = Arc::new(
        Engine::open(store.clone(), SystemClock, None)
            .await
            .expect("engine"),
    );
    let views = MemoryCheckpoints::new();
    let host = |holder: &'static str, stop| {
        tokio::spawn(host::hold_views(
            Arc::clone(&engine),
            HostStores {
                log: store.clone(),
                views: views.clone(),
                fenced: views.clone(),
                leases: views.clone(),
                shared: None::<Unshared>,
            },
            HostOptions {
                holder: holder.into(),
                lease_ttl: std::time::Duration::from_millis(300),
                duties: vec![duty(holder)],
                ..HostOptions::default()
            },
            Arc::new(Unobserved),
            None,
            stop,
        ))
    };
    let (stop_a, stopped_a) = tokio::sync::watch::channel(false);
    let (stop_b, stopped_b) = tokio::sync::watch::channel(false);
    let a = host("a", stopped_a);
    let b = host("b", stopped_b);
    let started = |count: usize| {
        let runs = Arc::clone(&runs);
        async move {
            for _ in 0..100 {
                if runs.by.lock().expect("runs").len() >= count {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the duty did not start {count} time(s) within 5 s");
        }
    };
    started(1).await;
    // Several lease renewals (every 100 ms) go by with both hosts running.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let first = runs.by.lock().expect("runs").clone();
    assert_eq!(first.len(), 1, "one host runs the duty: {first:?}");
    let (holder, stop_holder, other) = match first[0] {
        "a" => (a, stop_a, (b, stop_b)),
        _ => (b, stop_b, (a, stop_a)),
    };
    stop_holder.send(true).expect("stop the holder");
    holder.await.expect("the holder drained");
    started(2).await;
    let by = runs.by.lock().expect("runs").clone();
    assert_ne!(by[0], by[1], "the other host took the duty over: {by:?}");
    assert_eq!(runs.most.load(Ordering::SeqCst), 1, "never two at once");
    other.1.send(true).expect("stop the other");
    other.0.await.expect("the other drained");
    assert_eq!(runs.now.load(Ordering::SeqCst), 0, "every run stopped");
}

/// Issue 33: a next step's day passing unmet is flagged the day after, once, long before
/// the inactivity rule; an announcement's missing acknowledgement is chased 48 hours before
/// it is due, once, and never for the partner that acknowledged or one outside the audience.
#[tokio::test]
async fn overdue_next_steps_are_flagged_and_missing_acknowledgements_chased_once() {
    let (dir, store, clock, engine) = fresh("engagement").await;
    let path = dir.path().join("engagement.db");
    let (gold, late) = (
        ready_partner(&engine, "Contoso", "reseller").await,
        ready_partner(&engine, "Fabrikam", "reseller").await,
    );
    let outside = ready_partner(&engine, "Northwind", "referral").await;
    let registration = Uuid::now_v7();
    let announcement = Uuid::now_v7();
    for (actor, command) in [
        (
            partner_actor(gold),
            submit(registration, gold, "acme.com", "analytics", "reseller"),
        ),
        (channel_manager(), approve(registration, "acme.com")),
        // Due on the day after the start: overdue from midnight of the day after that.
        (
            partner_actor(gold),
            json!({ "type": "set_next_step", "account": "acme.com", "registration_id": registration,
                                      "text": "demo with the CFO", "due_on": "2026-03-03" }),
        ),
        (
            channel_manager(),
            json!({ "type": "publish_announcement", "announcement_id": announcement,
                                    "title": "New tie break", "text": "First submitted wins.", "policy_version": 2,
                                    "audience": { "motions": ["reseller"] },
                                    "acknowledge_by": secs(start() + Duration::days(5)) }),
        ),
        (
            partner_actor(gold),
            json!({ "type": "acknowledge_announcement", "partner_id": gold, "announcement_id": announcement }),
        ),
    ] {
        let reply = must(engine.execute(envelope(None, actor, command)).await);
        assert!(reply.ok, "{reply:?}");
    }
    let views = SqliteCheckpoints::open(&path).expect("views");
    hourly(&engine, &store, &views, &clock, 24 * 6, |_| async {}).await;
    let overdue = recorded(&store, &["next_step_overdue"]).await;
    assert_eq!(
        overdue,
        vec![(
            "next_step_overdue".to_string(),
            "2026-03-04T00:00:00Z".to_string()
        )],
        "the first hourly tick past midnight after the due day, once"
    );
    let chases: Vec<Value> = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.event_type == "announcement_chased")
        .map(|e| serde_json::from_slice(&e.data).expect("data"))
        .collect();
    assert_eq!(
        chases.len(),
        1,
        "only the reseller that did not acknowledge: {chases:?}"
    );
    assert_eq!(chases[0]["partner_id"], json!(late));
    assert_eq!(chases[0]["at"], json!(secs(start() + Duration::days(3))));
    assert!(!chases.iter().any(|c| c["partner_id"] == json!(outside)));
    assert!(
        recorded(&store, &["registration_flagged_inactive"])
            .await
            .is_empty(),
        "the next step came long before the inactivity rule"
    );
}
