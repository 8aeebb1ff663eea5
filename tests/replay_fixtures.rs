//! Every recorded fixture under replay-fixtures/ imports into an empty store, verifies,
//! and replays to the views recorded with it, byte for byte.

use std::path::Path;
use std::process::{Command, Output};

fn dealreg(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run dealreg")
}

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
        let position = expected["position"]
            .as_u64()
            .expect("the fixture's position");
        let replayed = dealreg(&store, &["replay", "--as-of", &position.to_string()]);
        assert!(
            replayed.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&replayed.stderr)
        );
        let replayed: serde_json::Value = serde_json::from_slice(&replayed.stdout).expect("JSON");
        for view in ["pipeline", "ledger", "conflicts", "metrics"] {
            assert_eq!(
                serde_json::to_string(&replayed[view]).expect("bytes"),
                serde_json::to_string(&expected[view]).expect("bytes"),
                "{name}: the {view} view differs from the one recorded"
            );
        }
        // The live views, brought up to date from the imported log, agree too.
        let live = dealreg(&store, &["view", "pipeline", "--vendor", "--json"]);
        let live: serde_json::Value = serde_json::from_slice(&live.stdout).expect("JSON");
        assert_eq!(live, expected["pipeline"], "{name}: live pipeline");
    }
}
