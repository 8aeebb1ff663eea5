//! Does the cost per command stay flat as the log and each partner's history grow?
//!
//! Writes a command file, runs the release `dealreg apply` on it (a real child process on
//! a real store file, one command after another, each acknowledged after its fsync), and
//! prints the time per command for every window of replies and the child's resident
//! memory, so the first and the last windows can be compared.
//!
//! Run: `cargo bench --bench apply_growth` with
//! - `DEALREG_GROWTH_SHAPE=accounts` (default): registrations over 100,000 accounts and
//!   1,000 partners (at 1M commands; proportionally fewer for smaller runs); or
//!   `partners`: 10 partners whose registrations stay open, so each holds tens of
//!   thousands of open registrations;
//! - `DEALREG_GROWTH_COMMANDS` (default 1,000,000), `DEALREG_GROWTH_WINDOW` (10,000);
//! - `DEALREG_GROWTH_CURVE=path`: every window also written there as CSV (commands done,
//!   ms per command, resident KiB), to plot the whole curve.

/// The allocator and its settings, as in the `dealreg` binary: the engine's cost includes
/// them, so the benches measure what the product runs with.
#[path = "../src/allocator.rs"]
mod allocator;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A UUID v7-shaped id from a number, so the file is the same every run.
fn id(kind: u16, n: usize) -> String {
    format!(
        "0190a0a0-{kind:04x}-7000-8000-{:012x}",
        n as u64 & 0xffff_ffff_ffff
    )
}

fn write_commands(path: &Path, shape: &str, commands: usize) -> std::io::Result<usize> {
    // At 1M commands: 1,000 partners and 100,000 accounts; proportionally fewer for a
    // smaller run, so a smoke run is not all setup.
    let (partners, accounts, lines) = match shape {
        "partners" => (10usize, usize::MAX, 1usize),
        _ => (
            (commands / 1_000).clamp(10, 1_000),
            (commands / 10).clamp(100, 100_000),
            10usize,
        ),
    };
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let cm = json!({ "kind": "vendor", "role": "channel_manager", "user": "cm" });
    let mut written = 0;
    for p in 0..partners {
        let partner = id(1, p);
        writeln!(
            out,
            "{}",
            json!({ "actor": cm, "command": { "type": "onboard_partner", "partner_id": partner, "name": format!("Partner {p}"),
            "motions": ["reseller"], "tier": "gold", "territories": [], "capacity": 10_000_000 } })
        )?;
        written += 1;
        for line in 0..lines {
            writeln!(
                out,
                "{}",
                json!({ "actor": cm, "command": { "type": "certify_partner", "partner_id": partner,
                "product_line": format!("line-{line}"), "expires_on": "2027-12-31" } })
            )?;
            written += 1;
        }
    }
    let setup = written;
    let mut n = 0usize;
    while written < setup + commands {
        let partner = id(1, n % partners);
        let registration = id(2, n);
        let account = if accounts == usize::MAX {
            format!("customer-{n}.com")
        } else {
            format!("customer-{}.com", n % accounts)
        };
        let line = format!("line-{}", (n / accounts.clamp(1, usize::MAX / 2)) % lines);
        writeln!(
            out,
            "{}",
            json!({ "idempotency_key": format!("s-{n}"),
            "actor": { "kind": "partner", "partner_id": partner, "user": "rep" },
            "command": { "type": "submit_registration", "registration_id": registration, "partner_id": partner,
                "customer": { "company": format!("Customer of {account}"), "domain": account, "contact": { "name": "Dana", "email": "dana@example.com" } },
                "product_line": line, "motion": "reseller", "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" },
                "expected_close": "2026-09-30", "proof_of_work": "joint discovery call" } })
        )?;
        writeln!(
            out,
            "{}",
            json!({ "idempotency_key": format!("a-{n}"), "actor": cm,
            "command": { "type": "approve_registration", "account": account, "registration_id": registration, "rationale": "qualified" } })
        )?;
        written += 2;
        n += 1;
    }
    out.flush()?;
    Ok(setup)
}

fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The `dealreg` binary cargo built beside this bench (release under `cargo bench`).
fn dealreg_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dealreg"))
}

fn main() {
    allocator::tune();
    let shape = std::env::var("DEALREG_GROWTH_SHAPE").unwrap_or_else(|_| "accounts".into());
    let commands = env_usize("DEALREG_GROWTH_COMMANDS", 1_000_000);
    let window = env_usize("DEALREG_GROWTH_WINDOW", 10_000).max(1);
    let binary = dealreg_binary();
    assert!(binary.exists(), "{} is missing", binary.display());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let file = dir.path().join("commands.jsonl");
    let setup = write_commands(&file, &shape, commands)
        .unwrap_or_else(|e| panic!("cannot write the commands: {e}"));
    let mut child = Command::new(&binary)
        .arg("--store")
        .arg(dir.path().join("growth.db"))
        .args(["apply"])
        .arg(&file)
        .args(["--at", "2026-03-02T09:00:00Z"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let pid = child.id();
    let replies = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
    let (mut seen, mut refused) = (0usize, 0usize);
    let mut window_start = Instant::now();
    let mut curve: Vec<(usize, f64, u64)> = Vec::new();
    for line in replies.lines() {
        let line = line.unwrap_or_else(|e| panic!("reading replies: {e}"));
        seen += 1;
        if !line.starts_with("{\"ok\":true") {
            refused += 1;
            if refused <= 3 {
                eprintln!("refused: {line}");
            }
        }
        if seen > setup && (seen - setup).is_multiple_of(window) {
            let ms = window_start.elapsed().as_secs_f64() * 1000.0 / window as f64;
            curve.push((seen - setup, ms, resident_kib(pid).unwrap_or(0)));
            window_start = Instant::now();
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("apply: {e}"));
    assert!(status.success(), "dealreg apply failed: {status}");
    assert_eq!(refused, 0, "every command is accepted");
    assert!(
        curve.len() >= 2,
        "too few windows: raise DEALREG_GROWTH_COMMANDS"
    );
    let (first, last) = (curve[0].1, curve[curve.len() - 1].1);
    let mut report = String::new();
    let _ = writeln!(report, "dealreg apply growth ({shape}: {commands} commands after {setup} setup lines, windows of {window})");
    let step = (curve.len() / 10).max(1);
    for (i, (done, ms, rss)) in curve.iter().enumerate() {
        if i % step == 0 || i + 1 == curve.len() {
            let _ = writeln!(
                report,
                "  after {done:>9} commands: {ms:>7.3} ms/command, resident {:>7} KiB",
                rss
            );
        }
    }
    let peak = curve.iter().map(|c| c.2).max().unwrap_or(0);
    let _ = writeln!(
        report,
        "  first window {first:.3} ms/command, last {last:.3} ms/command: last ÷ first = {:.2}",
        last / first
    );
    // One window is noisy on a shared machine; the medians of the first and last tenth
    // of the windows say whether the cost grew, beside the first-and-last figure.
    let tenth = (curve.len() / 10).max(1);
    let median = |windows: &[(usize, f64, u64)]| {
        let mut ms: Vec<f64> = windows.iter().map(|w| w.1).collect();
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    };
    let (early, late) = (
        median(&curve[..tenth]),
        median(&curve[curve.len() - tenth..]),
    );
    let _ = writeln!(
        report,
        "  median of the first {tenth} windows {early:.3} ms/command, of the last {tenth} {late:.3}: late ÷ early = {:.2}",
        late / early
    );
    let _ = writeln!(report, "  peak resident memory {peak} KiB");
    print!("{report}");
    if let Some(path) = std::env::var_os("DEALREG_GROWTH_CURVE") {
        let mut csv = String::from("commands,ms_per_command,resident_kib\n");
        for (done, ms, rss) in &curve {
            let _ = writeln!(csv, "{done},{ms:.4},{rss}");
        }
        std::fs::write(&path, csv).unwrap_or_else(|e| {
            panic!("cannot write the curve to {}: {e}", path.to_string_lossy())
        });
    }
}
