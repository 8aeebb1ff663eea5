//! Time never runs backwards in the log: a command may not be dated before the newest
//! event of any stream it reads. With the system clock this cannot happen; with `--at`
//! (replays, repeatable runs) it can, and such a command is refused, not recorded.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, Position};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test]
async fn a_command_dated_before_the_streams_it_reads_is_refused_and_writes_nothing() {
    let store = MemoryStore::new();
    let clock = ControlledClock::starting_at(start());
    let engine = Engine::open(store.clone(), clock.clone(), None)
        .await
        .expect("engine");
    clock.set(start() + chrono::Duration::days(40));
    let partner = ready_partner(&engine, "Contoso", "reseller").await;
    let id = Uuid::now_v7();
    let reply = must(
        engine
            .execute(envelope(
                None,
                partner_actor(partner),
                submit(id, partner, "acme.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert!(reply.ok, "{reply:?}");
    let before = store
        .read_all(Position::ORIGIN, 10_000)
        .await
        .expect("read")
        .len();

    // The same store, a clock 40 days earlier: the approval would predate the submission.
    let earlier = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine");
    let error = earlier
        .execute(envelope(None, channel_manager(), approve(id, "acme.com")))
        .await
        .expect_err("refused");
    assert_eq!(error.code(), "time_before_log");
    assert!(error.to_string().contains("account-acme.com"), "{error}");
    // A partner-stream read counts too: this partner's onboarding is later than `start()`.
    let error = earlier
        .execute(envelope(
            None,
            partner_actor(partner),
            submit(
                Uuid::now_v7(),
                partner,
                "globex.com",
                "analytics",
                "reseller",
            ),
        ))
        .await
        .expect_err("refused");
    assert_eq!(error.code(), "time_before_log");
    assert_eq!(
        store
            .read_all(Position::ORIGIN, 10_000)
            .await
            .expect("read")
            .len(),
        before,
        "nothing was recorded"
    );
}

/// A clock a second behind the log (a step of the system clock, another host's skew)
/// decides at the newest event's time instead: the log's time still never runs back.
#[tokio::test]
async fn a_clock_slightly_behind_the_log_decides_at_the_newest_events_time() {
    let store = MemoryStore::new();
    let clock = ControlledClock::starting_at(start());
    let engine = Engine::open(store.clone(), clock.clone(), None)
        .await
        .expect("engine");
    clock.set(start() + chrono::Duration::hours(1));
    let partner = ready_partner(&engine, "Contoso", "reseller").await;
    let behind = Engine::open(
        store.clone(),
        ControlledClock::starting_at(
            start() + chrono::Duration::hours(1) - chrono::Duration::seconds(1),
        ),
        None,
    )
    .await
    .expect("engine");
    let reply = must(
        behind
            .execute(envelope(
                None,
                partner_actor(partner),
                submit(Uuid::now_v7(), partner, "acme.com", "analytics", "reseller"),
            ))
            .await,
    );
    assert!(reply.ok, "{reply:?}");
    let at = serde_json::to_value(&reply.events[0].event).expect("json")["at"].clone();
    assert_eq!(
        at,
        json!("2026-03-02T10:00:00Z"),
        "decided at the newest event's time"
    );
}

/// `dealreg apply -` on the store at `path` at time `at`, `lines` on its stdin.
fn apply_at(path: &std::path::Path, at: &str, lines: Vec<Value>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(path)
        .args(["apply", "-", "--at", at])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in lines {
        writeln!(stdin, "{line}").expect("write");
    }
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// Partner `partner` onboarded and certified, and its registration `id` submitted.
fn submitted(partner: Uuid, id: Uuid) -> Vec<Value> {
    vec![
        json!({ "actor": channel_manager(), "command": onboard(partner, "Contoso", &["reseller"], "gold", 10) }),
        json!({ "actor": channel_manager(), "command": certify(partner, "analytics", "2027-12-31") }),
        json!({ "actor": partner_actor(partner), "command": submit(id, partner, "acme.com", "analytics", "reseller") }),
    ]
}

/// `dealreg apply`'s summary counts a `time_before_log` refusal (a rule: time never runs
/// backwards in the log) with the rules' refusals, not with the unreadable lines.
#[test]
fn apply_counts_time_before_log_with_the_rules_refusals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("time-summary.db");
    let (partner, id) = (Uuid::now_v7(), Uuid::now_v7());
    apply_at(&path, "2026-04-11T09:00:00Z", submitted(partner, id));
    let out = apply_at(
        &path,
        "2026-03-02T09:00:00Z",
        vec![
            json!({ "actor": channel_manager(), "command": approve(id, "acme.com") }),
            json!("not a command"),
        ],
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("2 lines: 0 applied, 1 rejected by the rules, 1 refused as unreadable, 0 failed in the engine, 0 not written (store failed)"),
        "{summary}"
    );
}

#[test]
fn dealreg_apply_with_an_earlier_at_answers_time_before_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("time.db");
    let (partner, id) = (Uuid::now_v7(), Uuid::now_v7());
    let run = |at: &str, lines: Vec<Value>| -> Vec<Value> {
        String::from_utf8_lossy(&apply_at(&path, at, lines).stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON reply"))
            .collect()
    };
    let setup = run("2026-04-11T09:00:00Z", submitted(partner, id));
    assert!(setup.iter().all(|r| r["ok"] == true), "{setup:?}");
    let replies = run(
        "2026-03-02T09:00:00Z",
        vec![json!({ "actor": channel_manager(), "command": approve(id, "acme.com") })],
    );
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["ok"], false);
    assert_eq!(
        replies[0]["error"]["code"], "time_before_log",
        "{}",
        replies[0]
    );
}
