//! Invariant 8 end to end: an auditor's `dealreg verify` passes on an untouched store and
//! names the stream and revision when someone edits a stored event with plain SQL.

mod support;

use support::dealreg;

use serde_json::Value;

#[test]
fn verify_detects_an_event_edited_behind_the_engines_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("audit.db");
    let demo = dealreg(&store, &["demo"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let clean = dealreg(&store, &["verify"]);
    assert!(clean.status.success());
    let report: Value = serde_json::from_slice(&clean.stdout).expect("json report");
    assert!(
        report["events"].as_u64().unwrap_or(0) > 1000,
        "the demo wrote its log: {report}"
    );
    assert_eq!(report["findings"], serde_json::json!([]));

    // Someone "fixes" an approval's rationale directly in the file.
    let conn = rusqlite::Connection::open(&store).expect("open with sqlite");
    let (position, stream, revision): (i64, String, i64) = conn
        .query_row(
            "SELECT position, stream, revision FROM events WHERE event_type = 'registration_approved' ORDER BY position LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("an approval exists");
    conn.execute(
        "UPDATE events SET data = replace(data, 'Proof of work verified', 'Approved by the CEO') WHERE position = ?1",
        [position],
    )
    .expect("tamper");
    drop(conn);

    let tampered = dealreg(&store, &["verify"]);
    assert_eq!(
        tampered.status.code(),
        Some(2),
        "a broken chain fails verification"
    );
    let report: Value = serde_json::from_slice(&tampered.stdout).expect("json report");
    let first = &report["findings"][0];
    assert_eq!(first["stream"], serde_json::json!(stream));
    assert_eq!(first["revision"], serde_json::json!(revision));
    assert_eq!(first["damage"], serde_json::json!("altered"), "{first}");

    // A cut tail, which no stream's chain shows, is found too.
    let conn = rusqlite::Connection::open(&store).expect("open with sqlite");
    conn.execute_batch(
        "UPDATE events SET data = replace(data, 'Approved by the CEO', 'Proof of work verified');
         DELETE FROM events WHERE position = (SELECT max(position) FROM events);",
    )
    .expect("cut the tail");
    drop(conn);
    let cut = dealreg(&store, &["verify"]);
    assert_eq!(cut.status.code(), Some(2), "a cut tail fails verification");
    let report: Value = serde_json::from_slice(&cut.stdout).expect("json report");
    assert!(
        report["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["damage"] == "truncated")),
        "{report}"
    );
}
