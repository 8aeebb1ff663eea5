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
