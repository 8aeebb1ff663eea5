//! `dealreg audit verify` against a store file tampered with directly (SQL on the file,
//! as someone with write access would): every kind of damage is caught, named (what, which
//! stream, revision, position, checkpoint) and exits with 2; a clean store and a read-only
//! copy of it verify.

mod support;

use support::dealreg;

use std::path::PathBuf;

use dealreg_events::chain::{event_hash, log_hash, GENESIS_HASH};
use rusqlite::{params, Connection};

struct Audited {
    _dir: tempfile::TempDir,
    store: PathBuf,
    checkpoints: PathBuf,
    public_key: String,
}

/// The demo's store, with its WAL folded into the file, and a signed checkpoint of its head.
fn audited() -> Audited {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = support::demo_store(&dir);
    Connection::open(&store)
        .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
        .expect("checkpoint the WAL");
    let key = dir.path().join("key");
    let keygen = dealreg(
        &store,
        &["audit", "keygen", "--out", key.to_str().expect("path")],
    );
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let public_key = String::from_utf8_lossy(&keygen.stdout).trim().to_string();
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let signed = dealreg(
        &store,
        &[
            "audit",
            "checkpoint",
            "--key",
            key.to_str().expect("path"),
            "--out",
            checkpoints.to_str().expect("path"),
        ],
    );
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    Audited {
        _dir: dir,
        store,
        checkpoints,
        public_key,
    }
}

/// A copy of the audited store with `tamper` applied, verified: (exit code, report).
fn verify_after(audited: &Audited, name: &str, tamper: impl FnOnce(&Connection)) -> (i32, String) {
    let copy = audited.store.with_file_name(format!("{name}.db"));
    std::fs::copy(&audited.store, &copy).expect("copy the store");
    {
        let conn = Connection::open(&copy).expect("open the copy");
        tamper(&conn);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("fold the WAL");
    }
    let out = dealreg(
        &copy,
        &[
            "audit",
            "verify",
            "--checkpoints",
            audited.checkpoints.to_str().expect("path"),
            "--public-key",
            &audited.public_key,
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn one(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

fn text(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// A stream with at least three events that is not the program's.
const BUSY_STREAM: &str = "SELECT stream FROM events WHERE stream LIKE 'account-%' GROUP BY stream HAVING count(*) >= 3 ORDER BY stream LIMIT 1";

/// position, revision, id, type, data, metadata.
type StoredEvent = (i64, i64, String, String, Vec<u8>, Vec<u8>);

/// Recomputes the stream chain of `stream` and the log chain from `from` on, and the
/// records (tips, head), as a careful forger would.
fn rechain(conn: &Connection, stream: &str, from: i64) {
    let events: Vec<StoredEvent> = conn
        .prepare("SELECT position, revision, event_id, event_type, data, metadata FROM events WHERE stream = ?1 ORDER BY revision")
        .and_then(|mut q| {
            q.query_map(params![stream], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                .collect()
        })
        .expect("stream events");
    let mut prev = GENESIS_HASH.to_string();
    for (position, revision, id, kind, data, metadata) in &events {
        let id = uuid::Uuid::parse_str(id).expect("id");
        let hash = event_hash(&prev, stream, *revision as u64, &id, kind, data, metadata);
        conn.execute(
            "UPDATE events SET prev_hash = ?1, hash = ?2 WHERE position = ?3",
            params![prev, hash, position],
        )
        .expect("rehash");
        prev = hash;
    }
    conn.execute(
        "UPDATE streams SET last_hash = ?1 WHERE stream = ?2",
        params![prev, stream],
    )
    .expect("tip");
    let mut log: String = conn
        .query_row(
            "SELECT log_hash FROM events WHERE position < ?1 ORDER BY position DESC LIMIT 1",
            params![from],
            |r| r.get(0),
        )
        .unwrap_or_else(|_| GENESIS_HASH.to_string());
    let later: Vec<(i64, String)> = conn
        .prepare("SELECT position, hash FROM events WHERE position >= ?1 ORDER BY position")
        .and_then(|mut q| {
            q.query_map(params![from], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .expect("later events");
    for (position, hash) in &later {
        log = log_hash(&log, *position as u64, hash);
        conn.execute(
            "UPDATE events SET log_hash = ?1 WHERE position = ?2",
            params![log, position],
        )
        .expect("relog");
    }
    conn.execute("UPDATE log_head SET log_hash = ?1", params![log])
        .expect("head");
}

fn assert_caught(what: &str, (code, report): (i32, String), expected: &[&str]) {
    assert_eq!(code, 2, "{what}: exit {code}\n{report}");
    for needle in expected {
        assert!(
            report.contains(needle),
            "{what}: no `{needle}` in\n{report}"
        );
    }
}

#[test]
fn a_clean_store_and_a_read_only_copy_verify() {
    let audited = audited();
    let (code, report) = verify_after(&audited, "clean", |_| {});
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("nothing wrong"), "{report}");
    // A read-only copy, as an auditor keeps it.
    let copy = audited.store.with_file_name("read-only.db");
    std::fs::copy(&audited.store, &copy).expect("copy");
    let mut permissions = std::fs::metadata(&copy).expect("metadata").permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&copy, permissions).expect("read-only");
    let before = std::fs::read(&copy).expect("read the copy");
    let out = dealreg(
        &copy,
        &[
            "audit",
            "verify",
            "--checkpoints",
            audited.checkpoints.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not one byte of the file changed (as root the permission alone would not stop a
    // write; the read-only connection does).
    assert_eq!(
        std::fs::read(&copy).expect("read the copy"),
        before,
        "verify wrote to the store"
    );
    let wal = copy.with_file_name("read-only.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "verify wrote to the WAL"
    );
}

#[test]
fn every_kind_of_tampering_is_caught_and_named() {
    let audited = audited();
    let conn = Connection::open(&audited.store).expect("open");
    let stream = text(&conn, BUSY_STREAM);
    let first = one(
        &conn,
        &format!("SELECT min(position) FROM events WHERE stream = '{stream}'"),
    );
    let last = one(
        &conn,
        &format!("SELECT max(position) FROM events WHERE stream = '{stream}'"),
    );
    let tail = one(&conn, "SELECT max(position) FROM events");
    let other = one(
        &conn,
        &format!(
            "SELECT min(position) FROM events WHERE stream <> '{stream}' AND position > {first}"
        ),
    );
    drop(conn);
    let at = |p: i64| format!("position {p}");
    let in_stream = format!("stream {stream}");

    assert_caught(
        "an edited payload",
        verify_after(&audited, "edited", |c| {
            c.execute(
                "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'a', 'b') AS BLOB) WHERE position = ?1",
                params![first],
            )
            .expect("edit");
        }),
        &["altered", &in_stream, &at(first)],
    );
    assert_caught(
        "a stream's last event deleted",
        verify_after(&audited, "last-deleted", |c| {
            c.execute("DELETE FROM events WHERE position = ?1", params![last])
                .expect("delete");
        }),
        &["truncated", &in_stream, "its last events were removed"],
    );
    assert_caught(
        "a whole stream deleted",
        verify_after(&audited, "stream-deleted", |c| {
            c.execute("DELETE FROM events WHERE stream = ?1", params![stream])
                .expect("delete");
        }),
        &["removed", &in_stream, "the stream was deleted"],
    );
    assert_caught(
        "the global tail deleted",
        verify_after(&audited, "tail-deleted", |c| {
            c.execute("DELETE FROM events WHERE position = ?1", params![tail])
                .expect("delete");
        }),
        &["truncated", "its tail was removed", "(checkpoint 1)"],
    );
    assert_caught(
        "a forged event with a correct stream chain",
        verify_after(&audited, "forged", |c| {
            let (revision, prev): (i64, String) = c
                .query_row(
                    "SELECT last_revision, last_hash FROM streams WHERE stream = ?1",
                    params![stream],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("tip");
            let id = uuid::Uuid::now_v7();
            let (data, metadata): (Vec<u8>, Vec<u8>) = c
                .query_row(
                    "SELECT data, metadata FROM events WHERE position = ?1",
                    params![last],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("a template");
            let kind = text(
                c,
                &format!("SELECT event_type FROM events WHERE position = {last}"),
            );
            let hash = event_hash(
                &prev,
                &stream,
                revision as u64 + 1,
                &id,
                &kind,
                &data,
                &metadata,
            );
            c.execute(
                "INSERT INTO events (position, stream, revision, event_id, event_type, data, metadata, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![tail + 1, stream, revision + 1, id.to_string(), kind, data, metadata, prev, hash],
            )
            .expect("forge");
            c.execute(
                "UPDATE streams SET last_revision = ?1, last_hash = ?2 WHERE stream = ?3",
                params![revision + 1, hash, stream],
            )
            .expect("tip");
        }),
        &[
            "inserted",
            &in_stream,
            &at(tail + 1),
            "written outside the engine",
        ],
    );
    assert_caught(
        "an event moved to another position",
        verify_after(&audited, "moved", |c| {
            c.execute(
                "UPDATE events SET position = ?1 WHERE position = ?2",
                params![tail + 10, first],
            )
            .expect("move");
        }),
        &["removed", &at(first), "reordered", &at(tail + 10)],
    );
    assert_caught(
        "two events of different streams swapped",
        verify_after(&audited, "swapped", |c| {
            c.execute_batch(&format!(
                "UPDATE events SET position = -1 WHERE position = {first};
                 UPDATE events SET position = {first} WHERE position = {other};
                 UPDATE events SET position = {other} WHERE position = -1;"
            ))
            .expect("swap");
        }),
        // Each stream's order can survive a swap across streams; the chain over the
        // global order cannot, and a signed checkpoint pins it (the log chain is the
        // auditor's, computed from the log, on every backend).
        &["rewritten", "(checkpoint 1)"],
    );
    assert_caught(
        "a stream rewritten with fresh, consistent chains",
        verify_after(&audited, "rewritten", |c| {
            c.execute(
                "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'a', 'b') AS BLOB) WHERE position = ?1",
                params![first],
            )
            .expect("edit");
            rechain(c, &stream, first);
        }),
        &["rewritten", "(checkpoint 1)", &at(tail)],
    );
    let (code, report) = verify_after(&audited, "rewritten-check", |c| {
        c.execute(
            "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'a', 'b') AS BLOB) WHERE position = ?1",
            params![first],
        )
        .expect("edit");
        rechain(c, &stream, first);
    });
    assert_eq!(code, 2);
    assert!(
        !report.contains("altered") && !report.contains("reordered"),
        "a consistent rewrite passes both chains; only the checkpoint can catch it:\n{report}"
    );
    assert_caught(
        "a stream tip lowered",
        verify_after(&audited, "tip-edited", |c| {
            c.execute(
                "UPDATE streams SET last_revision = last_revision - 1 WHERE stream = ?1",
                params![stream],
            )
            .expect("tip");
        }),
        &["records", &in_stream, "the tip table was edited"],
    );
    assert_caught(
        "a stream tip raised",
        verify_after(&audited, "tip-raised", |c| {
            c.execute(
                "UPDATE streams SET last_revision = last_revision + 1 WHERE stream = ?1",
                params![stream],
            )
            .expect("tip");
        }),
        &["truncated", &in_stream, "or the tip was raised"],
    );
    assert_caught(
        "an idempotency key taken out of an event's metadata",
        verify_after(&audited, "idempotency-dropped", |c| {
            c.execute(
                "UPDATE events SET metadata = CAST(replace(CAST(metadata AS TEXT), '\"idempotency_key\"', '\"dropped_key\"') AS BLOB)
                 WHERE position = (SELECT min(position) FROM events WHERE CAST(metadata AS TEXT) LIKE '%idempotency_key%')",
                [],
            )
            .expect("drop");
        }),
        // The engine finds a command's key in its events' metadata (no table beside the
        // events can lose it): removing it is an edit of the event, which its chain shows.
        &["altered"],
    );
}

/// Another program, written from scratch (`demo --seed 7`) into `regenerated.db` in
/// `dir`: every chain in it is consistent.
fn regenerated(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let other = dir.path().join("regenerated.db");
    let demo = dealreg(&other, &["demo", "--seed", "7"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    other
}

#[test]
fn a_store_regenerated_from_scratch_is_caught_by_the_signed_checkpoints() {
    let audited = audited();
    // Another program, written from scratch into a file of the same name: every chain in
    // it is consistent, and only the checkpoint signed on the original can tell.
    let dir = tempfile::tempdir().expect("temp dir");
    let other = regenerated(&dir);
    let plain = dealreg(&other, &["audit", "verify"]);
    assert!(plain.status.success(), "without checkpoints it looks fine");
    let out = dealreg(
        &other,
        &[
            "audit",
            "verify",
            "--checkpoints",
            audited.checkpoints.to_str().expect("path"),
            "--public-key",
            &audited.public_key,
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(
        report.contains("(checkpoint 1)")
            && (report.contains("rewritten") || report.contains("truncated")),
        "{report}"
    );
    // A checkpoint file edited to match the forgery fails its signature.
    let forged = dir.path().join("forged.jsonl");
    let head = text(
        &Connection::open(&other).expect("open"),
        "SELECT log_hash FROM log_head",
    );
    let mut checkpoint: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&audited.checkpoints)
            .expect("read")
            .trim(),
    )
    .expect("JSON");
    checkpoint["log_hash"] = serde_json::json!(head);
    std::fs::write(&forged, format!("{checkpoint}\n")).expect("write");
    let out = dealreg(
        &other,
        &[
            "audit",
            "verify",
            "--checkpoints",
            forged.to_str().expect("path"),
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("signature (checkpoint 1)"), "{report}");
}

/// A forged export (another log, every chain consistent) carrying a checkpoint signed on
/// the original is refused by `dealreg import`: exit 2, the checkpoint it contradicts
/// named, no "verified" claim, and no store left behind.
#[test]
fn an_import_contradicted_by_its_own_checkpoint_leaves_nothing() {
    let audited = audited();
    let dir = tempfile::tempdir().expect("temp dir");
    let other = regenerated(&dir);
    let export = dir.path().join("forged-export.jsonl");
    let exported = dealreg(
        &other,
        &[
            "export",
            "--out",
            export.to_str().expect("path"),
            "--checkpoints",
            audited.checkpoints.to_str().expect("path"),
        ],
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let target = dir.path().join("imported.db");
    let out = dealreg(&target, &["import", export.to_str().expect("path")]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("checkpoint(s) 1 of the file do not match its events"),
        "{stderr}"
    );
    assert!(!stderr.contains("verified"), "no verified claim: {stderr}");
    assert!(stderr.contains("nothing was left in the store"), "{stderr}");
    for suffix in ["", "-wal", "-shm", "-views", "-keys"] {
        let mut file = target.clone().into_os_string();
        file.push(suffix);
        assert!(
            !std::path::Path::new(&file).exists(),
            "{} is left behind",
            std::path::Path::new(&file).display()
        );
    }
}
