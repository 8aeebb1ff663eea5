//! `dealreg replay --as-of`: views as they stood at ten and more points of the demo equal
//! the live views of a store that held exactly the log up to that point (made by importing
//! the export's prefix and bringing its views up to date the usual way).

mod support;

use support::dealreg;

use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The export cut after `position`: its events, the idempotency records of the appends
/// that landed by then, and an end line that counts them.
fn prefix(lines: &[serde_json::Value], position: u64) -> String {
    let events: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["kind"] == "event"
                && support::position_number(&l["position"]).is_some_and(|p| p <= position)
        })
        .collect();
    let records: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "idempotency")
        .filter(|l| {
            let outcome: serde_json::Value =
                serde_json::from_str(l["outcome"].as_str().unwrap_or("{}")).unwrap_or_default();
            outcome["writes"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|w| w["positions"].as_array().into_iter().flatten())
                .all(|p| p.as_u64().is_some_and(|p| p <= position))
        })
        .collect();
    let end = serde_json::json!({
        "kind": "end",
        "events": events.len(),
        "idempotency": records.len(),
        "checkpoints": 0,
        "log_hash": events.last().map(|e| e["log_hash"].clone()).unwrap_or_default(),
    });
    std::iter::once(&lines[0])
        .chain(events)
        .chain(records)
        .map(|l| l.to_string())
        .chain(std::iter::once(end.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn replayed_views_equal_the_live_views_at_every_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = support::demo_store(&dir);
    let export = dealreg(&store, &["export"]);
    assert!(export.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("export line"))
        .collect();
    let head = lines
        .iter()
        .filter_map(|l| support::position_number(&l["position"]))
        .max()
        .expect("events");
    // Points where an append ends (a store only ever held whole appends).
    let command_at = |p: u64| {
        lines
            .iter()
            .find(|l| support::position_number(&l["position"]) == Some(p))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l["metadata"].as_str()?).ok())
            .map(|m| m["command_id"].clone())
    };
    let points: Vec<u64> = (1..=11)
        .map(|i| {
            let mut p = head * i / 11;
            while p < head && command_at(p) == command_at(p + 1) {
                p += 1;
            }
            p
        })
        .collect();
    let views: [(&str, Vec<&str>); 4] = [
        ("pipeline", vec!["view", "pipeline", "--vendor", "--json"]),
        ("ledger", vec!["view", "ledger", "--json"]),
        ("conflicts", vec!["view", "conflicts", "--json"]),
        ("metrics", vec!["view", "metrics", "--json"]),
    ];
    for position in points {
        let file = dir.path().join(format!("prefix-{position}.jsonl"));
        std::fs::write(&file, prefix(&lines, position)).expect("write the prefix");
        let live_store = dir.path().join(format!("at-{position}.db"));
        let imported = dealreg(&live_store, &["import", &file.to_string_lossy()]);
        assert!(
            imported.status.success(),
            "prefix {position}: {}{}",
            String::from_utf8_lossy(&imported.stdout),
            String::from_utf8_lossy(&imported.stderr)
        );
        let all = json(&dealreg(
            &store,
            &["replay", "--as-of", &position.to_string()],
        ));
        assert_eq!(support::position_number(&all["position"]), Some(position));
        for (name, live_args) in &views {
            let live = json(&dealreg(&live_store, live_args));
            let replayed = json(&dealreg(
                &store,
                &["replay", "--as-of", &position.to_string(), "--view", name],
            ));
            assert_eq!(
                serde_json::to_string(&replayed).expect("bytes"),
                serde_json::to_string(&live).expect("bytes"),
                "{name} at position {position}"
            );
            assert_eq!(
                all[*name], live,
                "{name} at position {position} in the full replay"
            );
            // `view --as-of` is the same fold.
            let mut as_of = live_args.clone();
            let at = position.to_string();
            as_of.extend(["--as-of", at.as_str()]);
            assert_eq!(
                json(&dealreg(&store, &as_of)),
                live,
                "view {name} --as-of {position}"
            );
        }
    }
    // As of a time: the last event at or before it.
    let event = lines
        .iter()
        .find(|l| {
            l["kind"] == "event" && support::position_number(&l["position"]) == Some(head / 2)
        })
        .expect("an event");
    let data: serde_json::Value =
        serde_json::from_str(event["data"].as_str().expect("data")).expect("data JSON");
    let at = data["at"].as_str().expect("at").to_string();
    let by_time = json(&dealreg(&store, &["replay", "--as-of", &at]));
    let covered = support::position_number(&by_time["position"]).expect("position");
    assert!(covered >= head / 2, "{covered}");
    let by_position = json(&dealreg(
        &store,
        &["replay", "--as-of", &covered.to_string()],
    ));
    assert_eq!(by_time, by_position);
    // A moment that is neither is refused with what to give.
    let out = dealreg(&store, &["replay", "--as-of", "yesterday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}
