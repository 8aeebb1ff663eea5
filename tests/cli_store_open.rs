//! Only `demo` and `apply` create a store. Every reader refuses a missing, empty or foreign
//! file, names the path and says what to do, exits non-zero and creates nothing; and
//! several processes creating one new store at the same moment all succeed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dealreg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dealreg"))
}

/// Every job that only reads (or appends to) an existing store.
const READERS: &[&[&str]] = &[
    &["events"],
    &["verify"],
    &["view", "pipeline", "--vendor"],
    &["view", "ledger"],
    &["view", "conflicts"],
    &["view", "metrics"],
    &["rebuild"],
    &["timekeeper", "--at", "2026-03-02T09:00:00Z"],
];

fn siblings(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Runs every reader on `path` and checks each one refuses with `expected` in its message
/// and leaves the file as it was (`before`: its bytes, or None when it must not exist).
fn every_reader_refuses(path: &Path, expected: &str, before: Option<&[u8]>) {
    for args in READERS {
        let output = dealreg()
            .arg("--store")
            .arg(path)
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .expect("run dealreg");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "`dealreg {}` on {} must fail: {stderr}",
            args.join(" "),
            path.display()
        );
        for needle in [
            &path.display().to_string(),
            expected,
            "dealreg --store",
            "demo",
            "apply",
            "check `--store`",
        ] {
            assert!(
                stderr.contains(needle),
                "`dealreg {}`: the message says `{needle}`: {stderr}",
                args.join(" ")
            );
        }
        assert!(
            output.stdout.is_empty(),
            "`dealreg {}` prints no result: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        match before {
            None => assert!(
                !path.exists(),
                "`dealreg {}` created the store",
                args.join(" ")
            ),
            Some(bytes) => assert_eq!(
                std::fs::read(path).expect("read").as_slice(),
                bytes,
                "`dealreg {}` changed the file",
                args.join(" ")
            ),
        }
        for sibling in siblings(path) {
            assert!(
                !sibling.exists(),
                "`dealreg {}` left {}",
                args.join(" "),
                sibling.display()
            );
        }
    }
}

#[test]
fn readers_refuse_a_missing_store_and_create_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mistyped.db");
    every_reader_refuses(&path, "there is no store at", None);
}

#[test]
fn readers_refuse_an_empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("create");
    every_reader_refuses(&path, "is empty", Some(b""));
}

#[test]
fn readers_refuse_a_file_that_is_not_a_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.txt");
    let bytes = "not a database, just some notes\n".repeat(200);
    std::fs::write(&text, &bytes).expect("create");
    every_reader_refuses(&text, "is not a dealreg store", Some(bytes.as_bytes()));

    let other = dir.path().join("other.sqlite");
    {
        let conn = rusqlite::Connection::open(&other).expect("sqlite");
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
            .expect("schema");
    }
    let before = std::fs::read(&other).expect("read");
    every_reader_refuses(&other, "without an `events` table", Some(&before));

    // The jobs that create stores do not take someone else's database either.
    let output = dealreg()
        .arg("--store")
        .arg(&other)
        .args(["apply", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("run apply");
    assert!(!output.status.success());
    assert_eq!(std::fs::read(&other).expect("read"), before);
}

#[test]
fn apply_creates_the_store_and_readers_then_open_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");
    let created = dealreg()
        .arg("--store")
        .arg(&path)
        .args(["apply", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("run apply");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for args in READERS {
        let output = dealreg()
            .arg("--store")
            .arg(&path)
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .expect("run dealreg");
        assert!(
            output.status.success(),
            "`dealreg {}` opens the store apply created: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Several `dealreg apply` processes on one new file at the same moment, round after
/// round: every one succeeds and the file is a valid store with one policy.
#[test]
fn processes_creating_one_store_at_once_all_succeed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..8 {
        let path = dir.path().join(format!("race-{round}.db"));
        let children: Vec<_> = (0..6)
            .map(|_| {
                dealreg()
                    .arg("--store")
                    .arg(&path)
                    .args(["apply", "-"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn apply")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            assert!(
                output.status.success(),
                "round {round}: every process opens the new store: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let events = dealreg()
            .arg("--store")
            .arg(&path)
            .arg("events")
            .output()
            .expect("events");
        assert!(events.status.success());
        let types: Vec<String> = String::from_utf8_lossy(&events.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["event_type"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(
            types,
            vec!["policy_adopted"],
            "round {round}: one policy, adopted once"
        );
        let verify = dealreg()
            .arg("--store")
            .arg(&path)
            .arg("verify")
            .output()
            .expect("verify");
        assert!(verify.status.success(), "round {round}: chains intact");
    }
}

/// Every job, the creating ones and `serve` included, refuses a nats-server older than
/// 2.12 at once, naming its version and the one required.
#[test]
fn every_job_refuses_a_nats_server_older_than_2_12() {
    let old = dealreg_nats_testkit::HandshakeOnlyServer::start("2.10.22");
    let store = format!("jetstream:{}", old.url());
    let dir = tempfile::tempdir().expect("temp dir");
    let commands = dir.path().join("none.jsonl");
    std::fs::write(&commands, "").expect("write");
    let commands = commands.to_string_lossy().to_string();
    let mut jobs: Vec<Vec<&str>> = READERS.iter().map(|job| job.to_vec()).collect();
    jobs.push(vec!["demo"]);
    jobs.push(vec!["apply", &commands]);
    jobs.push(vec!["serve", "--nats-url", old.url()]);
    for job in jobs {
        let started = std::time::Instant::now();
        let out = dealreg()
            .arg("--store")
            .arg(&store)
            .args(&job)
            .stdin(Stdio::null())
            .output()
            .expect("run dealreg");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{job:?} ran on an old server");
        assert!(
            stderr.contains("2.10.22") && stderr.contains("2.12"),
            "{job:?}: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{job:?} took {:?} to refuse",
            started.elapsed()
        );
    }
}
