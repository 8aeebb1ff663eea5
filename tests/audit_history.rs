//! `dealreg audit history` on the demo's log: a registration's, an account's and a
//! partner's history, in log order, with who did what under which policy version, the
//! refusals and the reasons given.

mod support;

use support::dealreg;

fn events(store: &std::path::Path) -> Vec<serde_json::Value> {
    let out = dealreg(store, &["events"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect()
}

#[test]
fn histories_tell_who_did_what_when_and_why_in_log_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = support::demo_store(&dir);
    let log = events(&store);
    // An approved registration and its account.
    let approved = log
        .iter()
        .find(|e| e["event_type"] == "registration_approved")
        .expect("the demo approves registrations");
    let registration = approved["event"]["registration_id"]
        .as_str()
        .expect("id")
        .to_string();
    let stream = approved["stream"].as_str().expect("stream").to_string();

    let out = dealreg(
        &store,
        &[
            "audit",
            "history",
            "--registration",
            &registration,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let happened: Vec<&str> = history
        .iter()
        .filter_map(|l| l["happened"].as_str())
        .collect();
    // The capacity slot is taken on the partner's stream before the account records
    // the submission.
    assert_eq!(
        happened.get(..2),
        Some(&["capacity_slot_taken", "registration_submitted"][..]),
        "{happened:?}"
    );
    assert!(happened.contains(&"registration_approved"), "{happened:?}");
    let positions: Vec<dealreg_events::Position> = history
        .iter()
        .map(|l| serde_json::from_value(l["position"].clone()).expect("a position"))
        .collect();
    assert_eq!(positions.len(), history.len());
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in log order: {positions:?}"
    );
    for line in &history {
        assert!(line["event"].to_string().contains(&registration), "{line}");
        assert!(
            line["policy_version"].as_u64().is_some_and(|v| v >= 1),
            "{line}"
        );
        assert!(
            !line["who"].as_str().unwrap_or_default().is_empty(),
            "{line}"
        );
    }
    let approval = history
        .iter()
        .find(|l| l["happened"] == "registration_approved")
        .expect("approval");
    assert_eq!(approval["command"], "approve_registration");
    assert_eq!(approval["actor"]["kind"], "vendor");
    assert!(
        approval["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "the rationale: {approval}"
    );

    // The account's history is its stream, refusals included.
    let account = stream.trim_start_matches("account-").to_string();
    let out = dealreg(
        &store,
        &["audit", "history", "--account", &account, "--json"],
    );
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let in_stream = log
        .iter()
        .filter(|e| e["stream"] == stream.as_str())
        .count();
    assert_eq!(history.len(), in_stream);
    // Somewhere in the demo the rules refused a command: its history shows code and message.
    let refused = log
        .iter()
        .find(|e| {
            e["event_type"] == "command_rejected"
                && e["stream"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("account-"))
        })
        .expect("the demo has refusals");
    let refused_account = refused["stream"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("account-")
        .to_string();
    let out = dealreg(&store, &["audit", "history", "--account", &refused_account]);
    let text = String::from_utf8_lossy(&out.stdout);
    let code = refused["event"]["code"].as_str().expect("code");
    assert!(text.contains(&format!("REFUSED {code}")), "{text}");

    // A partner's history: its own stream and every event naming it.
    let partner = log
        .iter()
        .find(|e| e["event_type"] == "partner_onboarded")
        .and_then(|e| e["event"]["partner_id"].as_str())
        .expect("a partner")
        .to_string();
    let out = dealreg(
        &store,
        &["audit", "history", "--partner", &partner, "--json"],
    );
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        history.first().and_then(|l| l["happened"].as_str()),
        Some("partner_onboarded")
    );
    assert!(history
        .iter()
        .all(|l| l["event"].to_string().contains(&partner)
            || l["stream"] == format!("partner-{partner}").as_str()));
}
