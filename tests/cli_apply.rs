//! `dealreg apply` answers every bad line with a structured error line and keeps going.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

fn dealreg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dealreg"))
}

#[test]
fn malformed_lines_get_structured_errors_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("apply.db");
    let partner = Uuid::now_v7();
    let good =
        |command: Value| json!({ "actor": channel_manager(), "command": command }).to_string();
    let huge = format!(
        "{{\"actor\":{},\"command\":{{\"type\":\"onboard_partner\",\"name\":\"{}\"}}}}",
        channel_manager(),
        "x".repeat(70_000)
    );
    let lines = [
        good(onboard(partner, "Northwind", &["referral"], "silver", 10)),
        "{ this is not json".to_string(),
        json!({ "actor": channel_manager(), "command": { "type": "launch_rockets" } }).to_string(),
        json!({ "actor": channel_manager(), "command": { "type": "onboard_partner", "partner_id": partner } }).to_string(),
        json!({ "actor": channel_manager(), "command": { "type": "certify_partner", "partner_id": 42, "product_line": "analytics", "expires_on": "2027-01-01" } }).to_string(),
        json!([1, 2, 3]).to_string(),
        huge,
        String::new(),
        good(certify(partner, "analytics", "2027-12-31")),
    ];
    let input = dir.path().join("commands.jsonl");
    let mut file = std::fs::File::create(&input).expect("create");
    for line in &lines {
        writeln!(file, "{line}").expect("write");
    }
    drop(file);

    let output = dealreg()
        .args(["--store"])
        .arg(&store)
        .args(["apply", "--at", "2026-03-02T09:00:00Z"])
        .arg(&input)
        .stdin(Stdio::null())
        .output()
        .expect("run dealreg apply");
    assert!(
        output.status.success(),
        "apply exits cleanly: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(
        replies.len(),
        8,
        "one reply per non-blank line: {replies:#?}"
    );
    let code = |i: usize| {
        replies[i]["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(replies[0]["ok"], json!(true), "{}", replies[0]);
    assert_eq!(code(1), "malformed_json");
    assert_eq!(code(2), "unknown_command");
    assert_eq!(code(3), "invalid_command", "missing fields");
    assert_eq!(code(4), "invalid_command", "wrong types");
    assert_eq!(code(5), "invalid_command", "not an object");
    assert_eq!(code(6), "payload_too_large");
    for (i, reply) in replies.iter().enumerate().take(7).skip(1) {
        assert_eq!(reply["ok"], json!(false));
        assert!(!reply["error"]["message"].as_str().unwrap_or("").is_empty());
        assert_eq!(
            reply["error"]["details"]["input_line"],
            json!(i + 1),
            "the error names its input line"
        );
    }
    assert_eq!(
        replies[7]["ok"],
        json!(true),
        "the run went on after bad lines: {}",
        replies[7]
    );

    // The log holds the two good commands (plus the bootstrap policy), nothing from bad lines.
    let events = dealreg()
        .args(["--store"])
        .arg(&store)
        .arg("events")
        .output()
        .expect("events");
    let types: Vec<String> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["event_type"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        types,
        vec!["policy_adopted", "partner_onboarded", "partner_certified"],
        "{types:?}"
    );
}

/// A store that cannot write (here a full one: the operator's cap
/// `DEALREG_SQLITE_MAX_PAGES`, which fails as root too, where file permissions would not)
/// is counted apart from unreadable input, and the run exits with code 3.
#[test]
fn store_failures_are_counted_apart_and_the_run_exits_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("full.db");
    let first = dir.path().join("first.jsonl");
    std::fs::write(
        &first,
        format!(
            "{}\n",
            json!({ "actor": channel_manager(), "command": onboard(Uuid::now_v7(), "Seed", &["referral"], "silver", 10) })
        ),
    )
    .expect("write");
    let seeded = dealreg()
        .arg("--store")
        .arg(&store)
        .args(["apply", "--at", "2026-03-02T09:00:00Z"])
        .arg(&first)
        .output()
        .expect("run apply");
    assert!(seeded.status.success(), "the seed run applies");

    let input = dir.path().join("many.jsonl");
    let mut file = std::fs::File::create(&input).expect("create");
    let lines = 400;
    for n in 0..lines {
        let name = format!("Partner {n} {}", "of a long name ".repeat(8));
        writeln!(
            file,
            "{}",
            json!({ "idempotency_key": format!("onboard-{n}"), "actor": channel_manager(), "command": onboard(Uuid::now_v7(), &name, &["referral"], "silver", 10) })
        )
        .expect("write");
    }
    drop(file);
    let output = dealreg()
        .env("DEALREG_SQLITE_MAX_PAGES", "1")
        .arg("--store")
        .arg(&store)
        .args(["apply", "--at", "2026-03-02T10:00:00Z"])
        .arg(&input)
        .output()
        .expect("run apply on a full store");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a run the store could not write is not complete: {stderr}"
    );
    let replies: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(replies.len(), lines, "one reply per line");
    let failed = replies
        .iter()
        .filter(|r| r["error"]["code"] == json!("store_failed"))
        .count();
    let applied = replies.iter().filter(|r| r["ok"] == json!(true)).count();
    assert!(failed > 0, "the cap stopped writes: {stderr}");
    assert_eq!(applied + failed, lines, "nothing else happened: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{applied} applied, 0 rejected by the rules, 0 refused as unreadable, 0 failed in the engine, {failed} not written (store failed)"
        )),
        "the summary counts store failures apart: {stderr}"
    );

    // What was answered as not written is not in the log.
    let events = dealreg()
        .arg("--store")
        .arg(&store)
        .arg("events")
        .output()
        .expect("events");
    let onboarded = String::from_utf8_lossy(&events.stdout)
        .lines()
        .filter(|l| l.contains("\"event_type\":\"partner_onboarded\""))
        .count();
    assert_eq!(onboarded, 1 + applied, "seed plus the lines answered ok");

    // Without the cap the same file applies in full; the keys keep what landed once.
    let again = dealreg()
        .arg("--store")
        .arg(&store)
        .args(["apply", "--at", "2026-03-02T10:00:00Z"])
        .arg(&input)
        .output()
        .expect("run apply again");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{lines} applied, 0 rejected by the rules, 0 refused as unreadable, 0 failed in the engine, 0 not written (store failed), {applied} replayed"
        )),
        "{stderr}"
    );
}

/// `dealreg --store STORE apply --at AT INPUT` with `env` set.
fn run_apply(
    store: &std::path::Path,
    at: &str,
    input: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    dealreg()
        .envs(env.iter().copied())
        .arg("--store")
        .arg(store)
        .args(["apply", "--at", at])
        .arg(input)
        .output()
        .expect("run dealreg apply")
}

/// Writes `lines` onboarding commands to `path`, as one `apply` input.
fn onboarding_file(path: &std::path::Path, lines: usize, tag: &str) {
    let mut file = std::fs::File::create(path).expect("create");
    for n in 0..lines {
        let name = format!("{tag} partner {n} {}", "of a long name ".repeat(8));
        writeln!(
            file,
            "{}",
            json!({ "actor": channel_manager(), "command": onboard(Uuid::now_v7(), &name, &["referral"], "silver", 10) })
        )
        .expect("write");
    }
}

/// A store whose pages were overwritten is refused before the run writes anything: the
/// run exits non-zero, names the damage and what to do, answers no line, and the file's
/// bytes are as they were. (Before, `apply` made ~50 durable commits into such a file
/// before an append met a damaged page.) `DEALREG_SQLITE_SKIP_CHECK=1` skips the check.
#[test]
fn a_damaged_store_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("damaged.db");
    let seed = dir.path().join("seed.jsonl");
    onboarding_file(&seed, 300, "Seed");
    let seeded = run_apply(&store, "2026-03-02T09:00:00Z", &seed, &[]);
    assert!(seeded.status.success(), "the seed run applies");
    // Every page in the file itself, so that the noise below is what SQLite reads.
    rusqlite::Connection::open(&store)
        .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
        .expect("checkpoint the WAL");
    let mut wal = store.as_os_str().to_owned();
    wal.push("-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0));

    // Overwrite the second quarter of the file's pages with noise (page 1, the header and
    // the schema, stays: the file still opens as a store).
    let mut bytes = std::fs::read(&store).expect("read the store");
    let pages = bytes.len() / 4096;
    assert!(pages >= 16, "a store of {pages} pages");
    let mut noise: u64 = 0x9e37_79b9_7f4a_7c15;
    for byte in &mut bytes[(pages / 4) * 4096..(pages / 2) * 4096] {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        *byte = noise as u8;
    }
    std::fs::write(&store, &bytes).expect("damage the store");

    let input = dir.path().join("more.jsonl");
    onboarding_file(&input, 60, "Later");
    let output = run_apply(&store, "2026-03-02T10:00:00Z", &input, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    for says in [
        "is damaged",
        "nothing was written",
        "dealreg verify",
        "quick check",
    ] {
        assert!(stderr.contains(says), "the refusal says `{says}`: {stderr}");
    }
    assert!(output.stdout.is_empty(), "no line was answered");
    assert_eq!(
        std::fs::read(&store).expect("read the store"),
        bytes,
        "not a byte of the store changed"
    );
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "nothing was committed to the WAL either"
    );

    // The operator may skip the check (a large store verified on a schedule): the run
    // then meets the damage itself, and still exits non-zero.
    let skipped = run_apply(
        &store,
        "2026-03-02T10:00:00Z",
        &input,
        &[("DEALREG_SQLITE_SKIP_CHECK", "1")],
    );
    assert!(
        !String::from_utf8_lossy(&skipped.stderr).contains("quick check"),
        "the check was skipped"
    );
    assert_eq!(
        skipped.status.code(),
        Some(3),
        "the damage stops the run as a store failure: {}",
        String::from_utf8_lossy(&skipped.stderr)
    );
}
