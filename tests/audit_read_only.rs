//! An auditor works on a read-only copy: every read job (verify, history, events, replay,
//! views now and as of a moment, export) runs on it and leaves its bytes as they were, and none
//! of them creates a views file or a key vault beside it.

mod support;

use support::dealreg;

#[test]
fn every_read_job_runs_on_a_read_only_copy_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = support::demo_store(&dir);
    let audit_dir = dir.path().join("auditor");
    std::fs::create_dir(&audit_dir).expect("mkdir");
    let copy = audit_dir.join("copy.db");
    // A consistent copy of the store file alone (its WAL checkpointed in), as a backup is.
    let conn = rusqlite::Connection::open(&original).expect("open");
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])
        .expect("copy");
    drop(conn);
    let mut permissions = std::fs::metadata(&copy).expect("metadata").permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&copy, permissions).expect("read-only");
    let before = std::fs::read(&copy).expect("read");

    let registration = {
        let out = dealreg(&copy, &["events"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["event_type"] == "registration_submitted")
            .and_then(|l| l["event"]["registration_id"].as_str().map(str::to_string))
            .expect("a registration")
    };
    for job in [
        vec!["audit", "verify"],
        vec!["verify"],
        vec!["audit", "history", "--registration", &registration],
        vec!["events", "--reveal"],
        vec!["replay", "--as-of", "700"],
        vec!["view", "--as-of", "700", "metrics", "--json"],
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["export"],
    ] {
        let out = dealreg(&copy, &job);
        assert!(
            out.status.success(),
            "{job:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{job:?} printed nothing");
        assert_eq!(
            std::fs::read(&copy).expect("read"),
            before,
            "{job:?} wrote to the store"
        );
        for beside in ["copy.db-views", "copy.db-keys"] {
            assert!(!audit_dir.join(beside).exists(), "{job:?} created {beside}");
        }
        let wal = audit_dir.join("copy.db-wal");
        assert!(
            std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
            "{job:?} wrote to the WAL"
        );
    }
}
