//! `dealreg what-if` on a large log, next to a plain replay of the same log in the same
//! run: how much deciding the history again costs over reading it.
//!
//! The log is the rebuild bench's: written through the engine (256 partners, then
//! registrations submitted and approved, 3 events each; default 1,000,000 events,
//! `DEALREG_BENCH_EVENTS`; `DEALREG_BENCH_STORE=path` keeps and reuses it). Both jobs run
//! as the user runs them, the `dealreg` binary of this build on the same file:
//!
//! - replay: `dealreg replay --as-of <head>`: every view folded from the origin in memory,
//!   one read of the log (the floor: what any answer about the history pays);
//! - what-if: `dealreg what-if --policy <the recorded policy>`: the same read, every
//!   command decided again through the engine on a scratch SQLite log, the timekeeper's
//!   deadlines derived again, both outcomes folded and compared.
//!
//! The draft is the recorded policy itself, so the report must be empty: the bench fails
//! when the run decides anything otherwise (a what-if that is fast and wrong is no use).
//!
//! Run: `cargo bench --bench what_if`.

/// The allocator and its settings, as in the `dealreg` binary (the bench process only
/// writes the log; the jobs measured are the binary itself).
#[path = "../src/allocator.rs"]
mod allocator;

#[path = "cpu.rs"]
mod cpu;
#[path = "load.rs"]
mod load;

use std::process::Command;
use std::time::Instant;

use dealreg_events::EventStore;
use dealreg_store_sqlite::SqliteStore;

/// Wall and CPU seconds (user + system, the child's) of one run of `dealreg`.
fn timed(args: &[&str]) -> (f64, f64, Vec<u8>) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run dealreg: {e}"));
    let pid = child.id().to_string();
    // The child's CPU is read just before it is reaped (its /proc entry goes then).
    let mut cpu = 0.0;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut s) = stdout {
            let _ = std::io::Read::read_to_end(&mut s, &mut out);
        }
        out
    });
    loop {
        let seen = cpu::cpu_seconds(&pid);
        if seen > 0.0 {
            cpu = seen;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                assert!(status.success(), "dealreg {args:?} failed: {err}");
                break;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => panic!("wait: {e}"),
        }
    }
    let out = reader.join().unwrap_or_default();
    (started.elapsed().as_secs_f64(), cpu, out)
}

fn main() {
    allocator::tune();
    let target: usize = std::env::var("DEALREG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = std::env::var_os("DEALREG_BENCH_STORE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("what-if.db"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let head = {
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("store: {e}"));
        let present = runtime
            .block_on(store.last_position())
            .unwrap_or_else(|e| panic!("head: {e}"))
            .commit() as usize;
        if present < target {
            runtime.block_on(load::fill(store.clone(), target));
        }
        runtime
            .block_on(store.last_position())
            .unwrap_or_else(|e| panic!("head: {e}"))
    };
    let policy = dir.path().join("recorded.toml");
    std::fs::write(&policy, include_str!("../domain/policy/default.toml"))
        .unwrap_or_else(|e| panic!("policy: {e}"));
    let store = path.to_str().unwrap_or_else(|| panic!("a UTF-8 path"));
    let head = head.to_string();
    let (replay_wall, replay_cpu, _) = timed(&[
        "--store",
        store,
        "replay",
        "--as-of",
        &head,
        "--out",
        "/dev/null",
    ]);
    let (what_if_wall, what_if_cpu, report) = timed(&[
        "--store",
        store,
        "what-if",
        "--policy",
        policy.to_str().unwrap_or_default(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&report).unwrap_or_else(|e| panic!("the report: {e}"));
    assert_eq!(
        report["decided_otherwise"],
        serde_json::json!([]),
        "the recorded policy decided something otherwise"
    );
    let events = report["history"]["events"].as_u64().unwrap_or(0);
    let commands = report["coverage"]["decided_again"].as_u64().unwrap_or(0);
    assert!(commands > 0, "nothing was decided again: {report}");
    println!("dealreg what-if (SQLite store, {events} events, {commands} commands decided again)");
    println!(
        "  replay  : every view from the origin   {replay_wall:>7.1} s wall, {replay_cpu:>6.1} s CPU ({:>8.0} events/s)",
        events as f64 / replay_wall
    );
    println!(
        "  what-if : every command decided again  {what_if_wall:>7.1} s wall, {what_if_cpu:>6.1} s CPU ({:>8.0} commands/s)",
        commands as f64 / what_if_wall
    );
    println!(
        "  what-if ÷ replay (wall): {:.1}× the time of a plain replay",
        what_if_wall / replay_wall
    );
}
