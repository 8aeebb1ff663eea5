//! `dealreg export` / `dealreg import`: the demo's log goes out as JSON lines and back
//! into an empty store with every position and hash equal, the same views, and its signed
//! checkpoint still verifying; a damaged or cut export and a non-empty store are refused,
//! naming what is wrong.

mod support;

use support::dealreg;

use std::path::Path;
use std::process::Output;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_log_exported_and_imported_is_the_same_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = support::demo_store(&dir);
    let key = dir.path().join("key");
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let path = |p: &Path| p.to_string_lossy().to_string();
    let keygen = dealreg(&original, &["audit", "keygen", "--out", &path(&key)]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let public_key = stdout(&keygen).trim().to_string();
    assert!(dealreg(
        &original,
        &[
            "audit",
            "checkpoint",
            "--key",
            &path(&key),
            "--out",
            &path(&checkpoints)
        ]
    )
    .status
    .success());
    let export = dir.path().join("log.jsonl");
    let out = dealreg(
        &original,
        &[
            "export",
            "--out",
            &path(&export),
            "--checkpoints",
            &path(&checkpoints),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let copy = dir.path().join("imported.db");
    let out = dealreg(
        &copy,
        &["import", &path(&export), "--public-key", &public_key],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "authenticity verified against public key {public_key}: 1 checkpoint(s) signed with it match the log"
        )),
        "{}",
        stderr(&out)
    );

    // The same events, positions, hashes and metadata, byte for byte as printed.
    assert_eq!(
        stdout(&dealreg(&original, &["events"])),
        stdout(&dealreg(&copy, &["events"]))
    );
    // The same views.
    for view in [
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["view", "ledger", "--json"],
        vec!["view", "conflicts", "--json"],
        vec!["view", "metrics", "--json"],
    ] {
        let a = dealreg(&original, &view);
        let b = dealreg(&copy, &view);
        assert!(a.status.success() && b.status.success(), "{view:?}");
        assert_eq!(stdout(&a), stdout(&b), "{view:?}");
    }
    // Everything verifies in the copy, the original's checkpoint included (so the
    // idempotency records came along too: verify holds them against the events).
    let out = dealreg(
        &copy,
        &["audit", "verify", "--checkpoints", &path(&checkpoints)],
    );
    assert!(out.status.success(), "{}", stdout(&out));

    // Importing into a store that has events is refused, and changes nothing.
    let before = stdout(&dealreg(&copy, &["events"]));
    let out = dealreg(&copy, &["import", &path(&export)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("import only into an empty store"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&dealreg(&copy, &["events"])), before);
}

#[test]
fn a_damaged_or_cut_export_is_refused_naming_the_first_bad_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = support::demo_store(&dir);
    let export = dir.path().join("log.jsonl");
    let path = |p: &Path| p.to_string_lossy().to_string();
    assert!(dealreg(&original, &["export", "--out", &path(&export)])
        .status
        .success());
    let text = std::fs::read_to_string(&export).expect("read");
    let lines: Vec<&str> = text.lines().collect();

    // A payload changed on line 10 (an event's data).
    let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    changed[9] = changed[9].replacen("\\\"at\\\":\\\"2026", "\\\"at\\\":\\\"2025", 1);
    assert_ne!(changed[9], lines[9], "the edit must change the line");
    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(&damaged, changed.join("\n") + "\n").expect("write");
    let target = dir.path().join("target.db");
    let out = dealreg(&target, &["import", &path(&damaged)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 10:"), "{}", stderr(&out));
    assert!(!target.exists(), "a refused import creates no store");

    // Cut off before its end.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() / 2].join("\n") + "\n").expect("write");
    let out = dealreg(&target, &["import", &path(&cut)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cut off"), "{}", stderr(&out));

    // Not an export at all.
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(
        &garbage,
        "{\"kind\":\"header\",\"format\":1,\"exported_at\":\"2026-12-02T00:00:00Z\"}\nnot json\n",
    )
    .expect("write");
    let out = dealreg(&target, &["import", &path(&garbage)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2:"), "{}", stderr(&out));
}
