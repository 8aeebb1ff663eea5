//! Invariant 5: an acknowledged command is durable. A child `dealreg apply` is killed with
//! SIGKILL in the middle of a stream of commands; the reopened store holds every
//! acknowledged command's events, no partial command, and intact hash chains.
//!
//! A process kill leaves the kernel's page cache intact, so it would pass even with
//! `synchronous=OFF`. The test therefore also checks what makes a power loss safe: the
//! store reads WAL and FULL back from SQLite, and a run's writer reports every
//! acknowledged append covered by a durable commit.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use dealreg_events::{EventStore, Position};
use dealreg_store_sqlite::SqliteStore;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_acknowledged_and_leaves_no_partial_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .args(["apply", "--at", "2026-03-02T09:00:00Z", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dealreg apply");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));

    // The writer runs ahead of the acknowledgements so the child is always mid-command.
    let writer = std::thread::spawn(move || {
        let partners: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let mut lines = Vec::new();
        for (i, p) in partners.iter().enumerate() {
            lines.push(json!({ "actor": channel_manager(), "command": onboard(*p, &format!("Partner {i}"), &["reseller"], "gold", 100_000) }));
            lines.push(json!({ "actor": channel_manager(), "command": certify(*p, "analytics", "2030-01-01") }));
        }
        for n in 0..20_000 {
            let p = partners[n % partners.len()];
            let registration = Uuid::now_v7();
            let domain = format!("customer-{n}.com");
            lines.push(json!({ "idempotency_key": format!("s-{n}"), "actor": partner_actor(p), "command": submit(registration, p, &domain, "analytics", "reseller") }));
            lines.push(json!({ "idempotency_key": format!("a-{n}"), "actor": channel_manager(), "command": approve(registration, &domain) }));
        }
        for line in lines {
            if writeln!(stdin, "{line}").is_err() {
                return; // the child is gone
            }
        }
    });

    let mut acknowledged: Vec<Value> = Vec::new();
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let reply: Value = serde_json::from_str(&line).expect("reply is JSON");
        assert_eq!(
            reply["ok"],
            json!(true),
            "every command in this stream is valid: {reply}"
        );
        acknowledged.push(reply);
        if acknowledged.len() == 300 {
            child.kill().expect("SIGKILL the child");
            break;
        }
    }
    let _ = child.wait();
    let _ = writer.join();
    assert_eq!(
        acknowledged.len(),
        300,
        "the child acknowledged commands before it was killed"
    );

    let store = SqliteStore::open_existing(&path).expect("the store reopens after SIGKILL");
    assert_eq!(
        store.settings().journal_mode,
        "wal",
        "{:?}",
        store.settings()
    );
    assert_eq!(
        store.settings().synchronous,
        "full",
        "{:?}",
        store.settings()
    );
    let mut log = Vec::new();
    let mut after = Position::ORIGIN;
    loop {
        let page = store.read_all(after, 4096).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        log.extend(page);
    }
    let by_position: BTreeMap<u64, _> = log.iter().map(|r| (r.position.commit(), r)).collect();
    for reply in &acknowledged {
        for e in reply["events"].as_array().expect("events") {
            let position: dealreg_events::Position =
                serde_json::from_value(e["position"].clone()).expect("position");
            let position = position.commit();
            let stored = by_position
                .get(&position)
                .unwrap_or_else(|| panic!("acknowledged event at {position} is missing"));
            // A partner's reply names positions only (no stream revisions: they would count
            // other partners' activity on the account); the vendor's names both.
            if let Some(stream) = e.get("stream") {
                assert_eq!(json!(stored.stream), *stream);
                assert_eq!(json!(stored.revision), e["revision"]);
            }
            assert_eq!(json!(stored.event_type), e["event"]["type"]);
        }
    }

    // No partial command: every submission holds the capacity slot its command took
    // before the account's write. A slot whose command was killed before that write is
    // held by nothing; it is the only thing a killed command may leave, and the
    // timekeeper gives it back (below).
    let mut per_command: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in &log {
        let metadata: Value = serde_json::from_slice(&r.metadata).expect("metadata");
        let id = metadata["command_id"]
            .as_str()
            .expect("command id")
            .to_string();
        per_command.entry(id).or_default().push(&r.event_type);
    }
    let mut unbacked = 0;
    for (command, types) in &per_command {
        let submitted = types.contains(&"registration_submitted");
        let slot = types.contains(&"capacity_slot_taken");
        if submitted {
            assert_eq!(
                types.first(),
                Some(&"capacity_slot_taken"),
                "command {command} recorded a submission without its slot first: {types:?}"
            );
        } else if slot {
            assert_eq!(types, &vec!["capacity_slot_taken"], "command {command}");
            unbacked += 1;
        }
    }
    assert!(
        unbacked <= 1,
        "one command was in flight when the process was killed: {unbacked} slots are held by nothing"
    );
    assert!(
        log.len() >= acknowledged.len(),
        "the log holds at least what was acknowledged"
    );

    let report = dealreg_events::chain::verify_log(&store)
        .await
        .expect("verify");
    assert!(
        report.breaks.is_empty(),
        "chains intact after SIGKILL: {:?}",
        report.breaks
    );
    assert_eq!(report.events as usize, log.len());
    drop(store);

    // Two minutes later the timekeeper gives back any slot the killed command held: the
    // account records that it never uses it, then the partner's stream releases it.
    let later = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .args(["timekeeper", "--at", "2026-03-02T09:05:00Z"])
        .output()
        .expect("run the timekeeper");
    assert!(
        later.status.success(),
        "{}",
        String::from_utf8_lossy(&later.stderr)
    );
    let store = SqliteStore::open_existing(&path).expect("reopen");
    let mut types = std::collections::BTreeMap::<String, usize>::new();
    let mut after = Position::ORIGIN;
    loop {
        let page = store.read_all(after, 4096).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        for r in page
            .iter()
            .skip_while(|r| r.position <= log[log.len() - 1].position)
        {
            *types.entry(r.event_type.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        (
            types.get("capacity_slot_lapsed").copied().unwrap_or(0),
            types.get("capacity_slot_released").copied().unwrap_or(0)
        ),
        (unbacked, unbacked),
        "every slot held by nothing is given back, and no other: {types:?}"
    );
    drop(store);

    // A run that is not killed reports its writer: every acknowledged append was answered
    // by a group whose durable COMMIT (WAL, synchronous=FULL) returned first.
    let partner = Uuid::now_v7();
    let more: String = (0..50)
        .map(|n| {
            let command = if n == 0 {
                onboard(partner, "After the crash", &["reseller"], "gold", 1000)
            } else {
                certify(partner, &format!("line-{n}"), "2030-01-01")
            };
            format!(
                "{}\n",
                json!({ "actor": channel_manager(), "command": command })
            )
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(&path)
        .args(["apply", "--at", "2026-03-02T10:00:00Z", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dealreg apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(more.as_bytes())
        .expect("write commands");
    let output = child.wait_with_output().expect("apply finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let ok = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("{\"ok\":true"))
        .count();
    assert_eq!(ok, 50, "{stderr}");
    let (commits, acknowledged, by_commit) = writer_figures(&stderr);
    assert_eq!(acknowledged, 50, "one append per command: {stderr}");
    assert_eq!(
        by_commit, acknowledged,
        "every ack followed a durable commit: {stderr}"
    );
    assert!((1..=50).contains(&commits), "{stderr}");
}

/// `(durable commits, acknowledged appends, acknowledged by a commit)` from apply's summary.
fn writer_figures(summary: &str) -> (u64, u64, u64) {
    let figures = summary
        .split_once(" durable commits for ")
        .and_then(|(before, after)| {
            let commits = before.rsplit('(').next()?.trim().parse().ok()?;
            let (acknowledged, rest) = after.split_once(" acknowledged appends, ")?;
            let by_commit = rest.split_whitespace().next()?.parse().ok()?;
            Some((commits, acknowledged.trim().parse().ok()?, by_commit))
        });
    figures.unwrap_or_else(|| panic!("apply reports its writer: {summary}"))
}
