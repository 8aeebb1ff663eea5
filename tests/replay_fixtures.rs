//! Every recorded fixture under replay-fixtures/ imports into an empty store, verifies,
//! and replays to the views recorded with it, byte for byte.

mod support;

use support::dealreg;

use std::path::Path;

#[test]
fn every_fixture_replays_to_its_expected_views() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&root)
        .expect("replay-fixtures/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("log.jsonl").exists())
        .collect();
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no fixture under {}", root.display());
    for fixture in fixtures {
        let name = fixture
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("fixture.db");
        let imported = dealreg(
            &store,
            &["import", &fixture.join("log.jsonl").to_string_lossy()],
        );
        assert!(
            imported.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&imported.stdout),
            String::from_utf8_lossy(&imported.stderr)
        );
        let verified = dealreg(&store, &["audit", "verify"]);
        assert!(
            verified.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&verified.stdout)
        );
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture.join("expected.json")).expect("expected.json"),
        )
        .expect("expected JSON");
        assert_replays_to(&store, &expected, &format!("{name}: recorded"));
        // The live views, brought up to date from the imported log, agree too.
        let live = dealreg(&store, &["view", "pipeline", "--vendor", "--json"]);
        let live: serde_json::Value = serde_json::from_slice(&live.stdout).expect("JSON");
        assert_eq!(live, expected["pipeline"], "{name}: live pipeline");
    }
}

/// Schema evolution, shown: `replay-fixtures/demo-schema-2` was recorded when contacts were
/// stored in clear (event schema 2); today's demo stores them sealed (schema 3), a real
/// change of `registration_submitted`'s shape. The old log reads through the schema 2 → 3
/// upcaster and replays to the views recorded with it (checked for every fixture above);
/// today's demo replays to the views recorded with `replay-fixtures/demo-closing-stages`,
/// recorded when wins moved to each motion's closing stage (the demo's story changed then,
/// so its views are no longer those of the schema-2 recording).
#[test]
fn the_demo_recorded_in_schema_2_and_the_demo_run_today_each_replay_to_their_views() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("replay-fixtures");
    let submitted_in = |log: &str| -> (u64, String) {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["event_type"] == "registration_submitted")
            .map(|l| {
                let metadata: serde_json::Value =
                    serde_json::from_str(l["metadata"].as_str().unwrap_or("{}"))
                        .unwrap_or_default();
                (
                    metadata["schema"].as_u64().unwrap_or(0),
                    l["data"].as_str().unwrap_or("").to_string(),
                )
            })
            .next()
            .expect("a submission in the log")
    };
    let old_log = std::fs::read_to_string(root.join("demo-schema-2/log.jsonl")).expect("log.jsonl");
    let (old_schema, old_payload) = submitted_in(&old_log);
    assert_eq!(old_schema, 2, "the fixture was recorded in schema 2");
    assert!(
        old_payload.contains("\"contact\":{\"name\""),
        "schema 2 stored the contact in clear: {old_payload}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("today.db");
    let demo = dealreg(&store, &["demo"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let export = dealreg(&store, &["export"]);
    let (new_schema, new_payload) = submitted_in(&String::from_utf8_lossy(&export.stdout));
    assert_eq!(new_schema, 3);
    assert!(
        new_payload.contains("\"contact\":{\"sealed\""),
        "schema 3 seals it: {new_payload}"
    );
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("demo-closing-stages/expected.json"))
            .expect("expected.json"),
    )
    .expect("expected JSON");
    assert_replays_to(&store, &expected, "today's demo ~ its recording");
}

/// Replays `store` as of `expected`'s position and checks every view equals the one in
/// `expected`, byte for byte (`what` names the comparison in a failure).
fn assert_replays_to(store: &Path, expected: &serde_json::Value, what: &str) {
    let mut expected = expected.clone();
    positions_as_tokens(&mut expected);
    let position = expected["position"]
        .as_str()
        .expect("the expected views' position")
        .to_string();
    let replayed = dealreg(store, &["replay", "--as-of", &position]);
    assert!(
        replayed.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let replayed: serde_json::Value = serde_json::from_slice(&replayed.stdout).expect("JSON");
    // `program` is compared where the fixture recorded it (fixtures recorded before the
    // view existed hold the other four).
    for view in ["pipeline", "ledger", "conflicts", "metrics", "program"] {
        if expected.get(view).is_none() && view == "program" {
            continue;
        }
        assert_eq!(
            serde_json::to_string(&replayed[view]).expect("bytes"),
            serde_json::to_string(&expected[view]).expect("bytes"),
            "{what}: the {view} view differs"
        );
    }
}

/// Fixtures recorded before positions became tokens wrote a position as a number: the
/// same position as the token of its digits (a reader of either form reads both). Every
/// `position` field of `value` is turned into its token, so the comparison stays byte for
/// byte and the recorded fixture stays as it was recorded.
fn positions_as_tokens(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    serde_json::Value::Number(n) if key == "position" => {
                        *field = serde_json::Value::String(n.to_string());
                    }
                    other => positions_as_tokens(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(positions_as_tokens),
        _ => {}
    }
}
