//! Views a person reads and views a program reads: text prints the JSON's own words (never
//! Rust names) and each amount with its currency's own exponent; JSON views are objects
//! keyed by strings, and metrics have a public shape, not the fold's working state.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

fn dealreg(path: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(path)
        .args(args)
        .output()
        .expect("run dealreg");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_view(path: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&dealreg(path, args)).expect("a JSON view")
}

/// Rust spellings of the enums the views print: none may reach a person.
const RUST_NAMES: &[&str] = &[
    "MultiChannel",
    "RenewalOwnership",
    "OverlappingProtection",
    "Horizontal",
    "Vertical",
    "Active",
    "Risk",
    "None",
    "Accrual",
    "Clawback",
    "Payout",
    "Sourced",
    "Influenced",
    "AwaitingDecision",
    "ExpiringSoon",
    "TechIsv",
];

fn no_rust_names(what: &str, text: &str) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        assert!(
            !RUST_NAMES.contains(&word),
            "{what} prints the Rust name `{word}`:\n{text}"
        );
    }
}

#[test]
fn views_of_the_demo_speak_the_jsons_words_and_have_string_keyed_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);

    let conflicts = json_view(&path, &["view", "conflicts", "--json"]);
    let by_account = conflicts["conflicts"]
        .as_object()
        .expect("conflicts keyed by account");
    assert!(!by_account.is_empty());
    for (account, flags) in by_account {
        assert!(
            account.contains('.'),
            "keyed by the account's domain: {account}"
        );
        assert!(flags.as_array().is_some_and(|f| !f.is_empty()));
    }
    let ledger = json_view(&path, &["view", "ledger", "--json"]);
    let balances = ledger["balances"]
        .as_object()
        .expect("balances keyed by partner");
    assert!(!balances.is_empty());
    for (partner, by_currency) in balances {
        assert!(partner.parse::<Uuid>().is_ok(), "{partner}");
        assert!(by_currency["USD"].is_i64(), "{by_currency}");
    }
    let metrics = json_view(&path, &["view", "metrics", "--json"]);
    let keys: Vec<&String> = metrics.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["approval_sla", "conflicts", "motions"],
        "the public shape only"
    );
    assert!(metrics["motions"]["reseller"]["win_rate_bps"].is_u64());

    for args in [
        &["view", "conflicts"][..],
        &["view", "ledger"],
        &["view", "metrics"],
        &["view", "pipeline", "--vendor"],
    ] {
        no_rust_names(&args.join(" "), &dealreg(&path, args));
    }
    let text = dealreg(&path, &["view", "conflicts"]);
    assert!(
        text.contains("multi_channel") || text.contains("horizontal"),
        "{text}"
    );
    // A won deal's protection has ended: the table shows no expiry for it.
    for line in dealreg(&path, &["view", "pipeline", "--vendor"]).lines() {
        if line.contains(" won ") {
            assert!(line.trim_end().ends_with("expires -"), "{line}");
        }
    }
}

#[test]
fn every_amount_prints_with_its_own_currencys_exponent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("yen.db");
    let partner = Uuid::now_v7();
    let deal = Uuid::now_v7();
    let mut submission = submit(deal, partner, "nakatomi.co.jp", "analytics", "reseller");
    submission["estimated_amount"] = json!({ "amount_minor": 19_753_086, "currency": "JPY" });
    let lines = [
        json!({ "actor": channel_manager(), "command": onboard(partner, "Tokyo Resale KK", &["reseller"], "gold", 10) }),
        json!({ "actor": channel_manager(), "command": certify(partner, "analytics", "2027-12-31") }),
        json!({ "actor": partner_actor(partner), "command": submission }),
        json!({ "actor": channel_manager(), "command": approve(deal, "nakatomi.co.jp") }),
        json!({ "actor": channel_manager(), "command": { "type": "set_sourcing_partner", "account": "nakatomi.co.jp", "registration_id": deal, "partner_id": partner, "reason": "originated" } }),
    ]
    .into_iter()
    .chain(
        to_closing_stage(deal, "nakatomi.co.jp", "reseller")
            .into_iter()
            .map(|c| json!({ "actor": channel_manager(), "command": c })),
    )
    .chain([
        json!({ "actor": channel_manager(), "command": won(deal, "nakatomi.co.jp", 19_753_086, "JPY") }),
    ])
    .collect::<Vec<_>>();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .args(["apply", "-", "--at", "2026-03-02T09:00:00Z"])
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
    let out = child.wait_with_output().expect("apply");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.lines().all(|l| l.contains("\"ok\":true")),
        "{replies}"
    );

    let pipeline = dealreg(&path, &["view", "pipeline", "--vendor"]);
    assert!(pipeline.contains("19,753,086 JPY"), "{pipeline}");
    assert!(!pipeline.contains("197530.86"), "{pipeline}");
    // Reseller sourced: 20 % of ¥19,753,086, rounded down to the yen.
    let ledger = dealreg(&path, &["view", "ledger"]);
    assert!(ledger.contains("3,950,617 JPY"), "{ledger}");
}

/// `dealreg rebuild` (every view, one read of the log, on 1 or 2 fold threads) and
/// `dealreg rebuild pipeline` leave every view as it was: the same JSON as before.
#[test]
fn rebuilding_on_fold_threads_leaves_every_view_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    let views = [
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["view", "ledger", "--json"],
        vec!["view", "conflicts", "--json"],
        vec!["view", "metrics", "--json"],
    ];
    let before: Vec<Value> = views.iter().map(|v| json_view(&path, v)).collect();
    for rebuild in [
        vec!["rebuild", "--fold-threads", "1"],
        vec!["rebuild", "--fold-threads", "2"],
        vec!["rebuild"],
        vec!["rebuild", "pipeline"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(&path)
            .args(&rebuild)
            .output()
            .expect("run dealreg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{rebuild:?}: {stderr}");
        assert!(
            stderr.contains("events read once and folded into"),
            "{rebuild:?}: {stderr}"
        );
        let after: Vec<Value> = views.iter().map(|v| json_view(&path, v)).collect();
        assert_eq!(after, before, "{rebuild:?} changed a view");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .args(["rebuild", "--fold-threads", "0"])
        .output()
        .expect("run dealreg");
    assert!(!refused.status.success(), "0 fold threads is refused");
}

/// `dealreg view` on a full disk (the views file cannot grow: `DEALREG_SQLITE_MAX_PAGES`)
/// still answers with the view folded from the log, says on stderr that its checkpoint
/// was not saved, and exits 0; the view is the same as on a disk with room.
#[test]
fn a_view_on_a_full_disk_is_served_from_the_log_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    // The views are derived: without their file, the view must be folded and saved anew.
    for suffix in ["-views", "-views-wal", "-views-shm"] {
        let mut views = path.clone().into_os_string();
        views.push(suffix);
        let _ = std::fs::remove_file(views);
    }
    let full = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .env("DEALREG_SQLITE_MAX_PAGES", "1")
        .arg("--store")
        .arg(&path)
        .args(["view", "pipeline", "--vendor", "--json"])
        .output()
        .expect("run dealreg");
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(
        full.status.success(),
        "a full disk still shows the view: {stderr}"
    );
    assert!(
        stderr.contains("not saved"),
        "it says the checkpoint was not saved: {stderr}"
    );
    let served: Value = serde_json::from_slice(&full.stdout).expect("a JSON view");
    let with_room = json_view(&path, &["view", "pipeline", "--vendor", "--json"]);
    assert_eq!(served, with_room);
}

/// `dealreg events | head -1`: the reader goes away after one line, and every job that
/// prints ends quietly (no "Broken pipe" error, no panic), as Unix tools do.
#[test]
fn a_job_whose_reader_goes_away_ends_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = demo_store(&dir);
    for args in [
        vec!["events"],
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["audit", "verify"],
        vec!["export"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(&path)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dealreg");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("one line");
        assert!(!first.is_empty(), "{args:?} printed nothing");
        // The reader is gone: the pipe is closed here.
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert!(
            output.status.success() || output.status.signal() == Some(libc_sigpipe()),
            "{args:?}: {:?} {stderr}",
            output.status
        );
    }
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}
