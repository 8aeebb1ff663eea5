//! The same log on every backend, through the CLI: the demo decides the same on JetStream
//! as on SQLite, and a signed log moves SQLite → JetStream → KurrentDB → SQLite with every
//! event, hash and signed checkpoint intact (KurrentDB: the official client against the
//! in-test gRPC double; docs/STORES.md says what that does and does not show).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `dealreg --store <store> args...`, off the runtime's threads (a KurrentDB double may be
/// serving on them).
async fn dealreg(store: &str, args: &[&str]) -> Output {
    let store = store.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::dealreg(Path::new(&store), &args)
    })
    .await
    .expect("run dealreg")
}

async fn ok(store: &str, args: &[&str]) -> String {
    let out = dealreg(store, args).await;
    assert!(
        out.status.success(),
        "dealreg --store {store} {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn path(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

/// The events as `dealreg events` prints them, without the positions (a backend assigns
/// its own: KurrentDB's are commit/prepare pairs).
fn without_positions(events: &str) -> Vec<serde_json::Value> {
    events
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).expect("event line");
            if let Some(event) = event.as_object_mut() {
                event.remove("position");
            }
            event
        })
        .collect()
}

/// The events without what each store's key vault makes its own: the sealed contacts (a
/// person's id, nonce and ciphertext; the SQLite vault derives the demo's keys from their
/// place in its sequence, the JetStream vault from the address) and so the hashes over
/// them.
fn decisions(events: &str) -> Vec<serde_json::Value> {
    fn unseal(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("sealed") {
                    map.insert("sealed".into(), serde_json::json!("(sealed)"));
                }
                map.values_mut().for_each(unseal);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(unseal),
            _ => {}
        }
    }
    events
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).expect("event line");
            if let Some(map) = event.as_object_mut() {
                map.remove("hash");
                map.remove("prev_hash");
            }
            unseal(&mut event);
            event
        })
        .collect()
}

/// The index and both sides of the first line where `a` and `b` differ, shortened.
fn first_difference<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} lines against {}", a.len(), b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| {
        let cut = |v: &T| format!("{v:?}").chars().take(600).collect::<String>();
        format!("line {}: {} | {}", i + 1, cut(&a[i]), cut(&b[i]))
    })
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn jetstream_spec(server: &dealreg_nats_testkit::NatsServer, views: &Path) -> String {
    format!("jetstream:{}?views={}", server.url(), views.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_writes_the_same_log_on_jetstream_as_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = dealreg_nats_testkit::NatsServer::start();
    let sqlite = path(&dir.path().join("demo.db"));
    let jetstream = jetstream_spec(&server, &dir.path().join("js-views.db"));
    ok(&sqlite, &["demo"]).await;
    ok(&jetstream, &["demo"]).await;
    let (a, b) = (
        ok(&sqlite, &["events"]).await,
        ok(&jetstream, &["events"]).await,
    );
    assert!(
        a.lines().count() > 1000,
        "the demo wrote {}",
        a.lines().count()
    );
    assert_eq!(
        first_difference(&decisions(&a), &decisions(&b)),
        None,
        "the same events at the same positions"
    );
    for view in [
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["view", "ledger", "--json"],
        vec!["view", "conflicts", "--json"],
    ] {
        let (a, b) = (ok(&sqlite, &view).await, ok(&jetstream, &view).await);
        assert_eq!(first_difference(&lines(&a), &lines(&b)), None, "{view:?}");
    }
    ok(&jetstream, &["verify"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_log_moves_between_every_backend_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = dealreg_nats_testkit::NatsServer::start();
    let double = dealreg_kurrentdb_double::KurrentDouble::start().await;
    // A recorded log (41 events, every motion; replay-fixtures/README.md): the KurrentDB
    // double answers each append in tens of milliseconds, too slow for the demo's log.
    let original = path(&dir.path().join("original.db"));
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/replay-fixtures/happy-paths/log.jsonl"
    );
    ok(&original, &["import", fixture]).await;
    let key = path(&dir.path().join("key"));
    let checkpoints = path(&dir.path().join("checkpoints.jsonl"));
    ok(&original, &["audit", "keygen", "--out", &key]).await;
    ok(
        &original,
        &["audit", "checkpoint", "--key", &key, "--out", &checkpoints],
    )
    .await;
    let verified_with = |store: String| {
        let checkpoints = checkpoints.clone();
        async move {
            ok(&store, &["audit", "verify", "--checkpoints", &checkpoints]).await;
        }
    };

    let hops: Vec<(String, PathBuf)> = vec![
        (
            jetstream_spec(&server, &dir.path().join("js-views.db")),
            dir.path().join("from-sqlite.jsonl"),
        ),
        (
            format!(
                "kurrentdb:{}&views={}&keys=sqlite:{}",
                double.url(),
                dir.path().join("kdb-views.db").display(),
                dir.path().join("kdb-keys.db").display()
            ),
            dir.path().join("from-jetstream.jsonl"),
        ),
        (
            path(&dir.path().join("back.db")),
            dir.path().join("from-kurrentdb.jsonl"),
        ),
    ];
    let mut from = original.clone();
    for (to, export) in &hops {
        ok(
            &from,
            &[
                "export",
                "--out",
                &path(export),
                "--checkpoints",
                &checkpoints,
            ],
        )
        .await;
        // Pinned to the auditor's checkpoints: authenticity checked, not only integrity.
        let out = dealreg(
            to,
            &["import", &path(export), "--checkpoints", &checkpoints],
        )
        .await;
        assert!(out.status.success(), "import into {to}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("authenticity verified against public key"),
            "{}",
            stderr(&out)
        );
        verified_with(to.clone()).await;
        from = to.clone();
    }
    let (before, after) = (
        ok(&original, &["events"]).await,
        ok(&from, &["events"]).await,
    );
    assert!(before.lines().count() > 40, "{}", before.lines().count());
    assert_eq!(
        first_difference(&without_positions(&before), &without_positions(&after)),
        None
    );
    for view in [
        vec!["view", "pipeline", "--vendor", "--json"],
        vec!["view", "ledger", "--json"],
    ] {
        let (a, b) = (ok(&original, &view).await, ok(&from, &view).await);
        assert_eq!(first_difference(&lines(&a), &lines(&b)), None, "{view:?}");
    }
}
