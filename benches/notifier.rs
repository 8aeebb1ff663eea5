//! The notifier's throughput (docs/NOTIFICATIONS.md) next to a floor in the same run that
//! sends the same messages to the same SMTP server without the engine.
//!
//! The job: a program whose log holds N submissions (three events each: the slot, the
//! registration, nothing else) and a channel manager subscribed by e-mail; `dealreg serve
//! --notify-config` with a fresh state (a backfill) folds the log, queues N alerts and sends
//! N e-mails to aiosmtpd. Timed from the duty's start (its log line) until its sent list
//! holds N; before it, a `serve` without the notifier folded the views and published the
//! feed, so that catching up does not run beside the measured work (it does not beside
//! the floor's either). The floor: the very messages it sent, read back
//! from the server's Maildir, sent again one by one with the same carrier
//! (`dealreg_notify::SmtpCarrier`, one SMTP session each, as the notifier does) to the same
//! server: the SMTP work the notifier cannot avoid. The ratio is the notifier's messages/s
//! over the floor's.
//!
//! `cargo bench --bench notifier`; knobs: DEALREG_BENCH_ALERTS (default 2000).

/// The allocator and its settings, as in the `dealreg` binary.
#[path = "../src/allocator.rs"]
mod allocator;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dealreg_notify::{Email, Mailbox, Security, SmtpCarrier, SmtpSettings};
use dealreg_notify_fake::SmtpServer;
use mail_parser::MessageParser;
use serde_json::json;
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dealreg(store: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dealreg"));
    command.arg("--store").arg(store);
    command
}

/// The program: a partner, a channel manager subscribed by e-mail, `n` submissions.
fn program(store: &Path, dir: &Path, n: usize) {
    let partner = Uuid::now_v7();
    let cm = json!({ "kind": "vendor", "role": "channel_manager", "user": "casey" });
    let rep = json!({ "kind": "partner", "partner_id": partner, "user": "ana" });
    let close = (chrono::Utc::now() + chrono::Duration::days(60))
        .date_naive()
        .to_string();
    let certified = (chrono::Utc::now() + chrono::Duration::days(365))
        .date_naive()
        .to_string();
    let mut lines = vec![
        json!({ "actor": cm, "command": { "type": "onboard_partner", "partner_id": partner, "name": "Northwind Resellers",
                "motions": ["reseller"], "tier": "gold", "territories": [], "capacity": n + 1 } }),
        json!({ "actor": cm, "command": { "type": "certify_partner", "partner_id": partner, "product_line": "analytics", "expires_on": certified } }),
        json!({ "actor": cm, "command": { "type": "set_alert_subscription", "user": "casey", "name": "Casey Manager",
                "email": "casey@vendor.example" } }),
    ];
    for i in 0..n {
        lines.push(json!({ "actor": rep, "command": {
            "type": "submit_registration", "registration_id": Uuid::now_v7(), "partner_id": partner,
            "customer": { "company": format!("Customer {i}"), "domain": format!("customer{i}.example"),
                          "contact": { "name": "Dana Buyer", "email": format!("dana@customer{i}.example") } },
            "product_line": "analytics", "motion": "reseller",
            "estimated_amount": { "amount_minor": 4_800_000, "currency": "EUR" },
            "expected_close": close, "proof_of_work": "Discovery workshop held; notes attached",
            "kind": "new_business" } }));
    }
    let input = dir.join("program.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap_or_else(|e| panic!("write the program: {e}"));
    let out = dealreg(store)
        .arg("apply")
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("dealreg apply: {e}"));
    let refused = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"ok\":false"))
        .count();
    assert!(
        out.status.success() && refused == 0,
        "the program was not applied ({refused} refused): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sent(state: &Path) -> Option<usize> {
    let db =
        rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    db.query_row("SELECT COUNT(*) FROM sent", [], |r| r.get::<_, i64>(0))
        .ok()
        .map(|n| n as usize)
}

/// `dealreg serve` without the notifier until its views are folded and its feed published:
/// the deployment's own catching up, which would otherwise run beside the notifier's
/// measured work (and not beside the floor's).
fn settle(store: &Path, dir: &Path, nats: &str) {
    let log = std::fs::File::create(dir.join("settle.log")).unwrap_or_else(|e| panic!("log: {e}"));
    let mut serve = dealreg(store)
        .args(["serve", "--nats-url", nats, "--tick-secs", "3600"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("dealreg serve: {e}"));
    let views = dir.join("program.db-views");
    let deadline = Instant::now() + Duration::from_secs(600);
    let waiting = || -> Option<i64> {
        let db = rusqlite::Connection::open_with_flags(
            &views,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row("SELECT COUNT(*) FROM feed_outbox", [], |r| r.get(0))
            .ok()
    };
    let mut empty_since: Option<Instant> = None;
    loop {
        let taken = std::fs::read_to_string(dir.join("settle.log"))
            .unwrap_or_default()
            .contains("took the views lease");
        match (taken, waiting()) {
            (true, Some(0)) => {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            _ => empty_since = None,
        }
        assert!(Instant::now() < deadline, "the views never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

/// The notifier's run: seconds from the duty's start to `n` sent.
fn notifier(store: &Path, dir: &Path, smtp: &SmtpServer, nats: &str, n: usize) -> Duration {
    let config = dir.join("notify.toml");
    std::fs::write(
        &config,
        format!(
            "from_name = \"Channel Team\"\nfrom_address = \"channel@vendor.example\"\nbackfill = true\nreply_domain = \"replies.vendor.example\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            smtp.port()
        ),
    )
    .unwrap_or_else(|e| panic!("write the notifier settings: {e}"));
    let state = dir.join("program.db.notify.db");
    let log = std::fs::File::create(dir.join("serve.log")).unwrap_or_else(|e| panic!("log: {e}"));
    let mut serve = dealreg(store)
        .args([
            "serve",
            "--nats-url",
            nats,
            "--tick-secs",
            "3600",
            "--notify-every",
            "1",
            "--notify-config",
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("dealreg serve: {e}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    while !state.exists() {
        assert!(
            Instant::now() < deadline,
            "the notifier never opened its state"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let started = Instant::now();
    loop {
        if sent(&state) == Some(n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the notifier sent {:?} of {n}: {}",
            sent(&state),
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let _ = serve.kill();
    let _ = serve.wait();
    took
}

/// The messages as received, ready to be sent again.
fn received(smtp: &SmtpServer) -> Vec<Email> {
    let messages = smtp
        .messages()
        .unwrap_or_else(|e| panic!("the Maildir: {e}"));
    messages
        .iter()
        .map(|m| {
            let parsed = MessageParser::default()
                .parse(&m.raw)
                .unwrap_or_else(|| panic!("a received message does not parse"));
            let mailbox = |a: Option<&mail_parser::Address>| {
                let first = a.and_then(|a| a.first());
                Mailbox {
                    name: first.and_then(|a| a.name()).map(str::to_string),
                    address: first
                        .and_then(|a| a.address())
                        .unwrap_or_default()
                        .to_string(),
                }
            };
            Email {
                message_id: parsed.message_id().unwrap_or_default().to_string(),
                from: mailbox(parsed.from()),
                to: mailbox(parsed.to()),
                reply_to: parsed.reply_to().map(|a| mailbox(Some(a))),
                subject: parsed.subject().unwrap_or_default().to_string(),
                text: parsed.body_text(0).unwrap_or_default().to_string(),
                html: parsed.body_html(0).map(|h| h.to_string()),
                headers: vec![("X-Dealreg-Alert".into(), "registration_submitted".into())],
            }
        })
        .collect()
}

async fn floor(smtp: &SmtpServer, emails: &[Email]) -> Duration {
    let carrier = SmtpCarrier::new(SmtpSettings {
        host: "127.0.0.1".into(),
        port: smtp.port(),
        security: Security::None,
        credentials: None,
        timeout: Duration::from_secs(10),
        extra_root_pem: None,
    })
    .unwrap_or_else(|e| panic!("the carrier: {e}"));
    let started = Instant::now();
    for email in emails {
        carrier
            .send(email)
            .await
            .unwrap_or_else(|e| panic!("the floor's send: {e}"));
    }
    started.elapsed()
}

fn main() {
    allocator::tune();
    let n = env_usize("DEALREG_BENCH_ALERTS", 2_000).max(1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = dir.path().join("program.db");
    program(&store, dir.path(), n);
    let nats = dealreg_nats_testkit::NatsServer::start();
    settle(&store, dir.path(), nats.url());
    let smtp = SmtpServer::start().unwrap_or_else(|e| panic!("aiosmtpd (run scripts/setup): {e}"));
    let took = notifier(&store, dir.path(), &smtp, nats.url(), n);
    let emails = received(&smtp);
    assert_eq!(emails.len(), n, "the notifier sent each alert once");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let floor_took = runtime.block_on(floor(&smtp, &emails));
    let rate = n as f64 / took.as_secs_f64();
    let floor_rate = n as f64 / floor_took.as_secs_f64();
    println!("notifier: {n} alerts (registration_submitted to one channel manager) to aiosmtpd on loopback");
    println!("           | messages/s | seconds");
    println!("notifier   | {rate:>10.0} | {:>7.2}  (fold {} events, queue, render, link, send, mark sent)", took.as_secs_f64(), 3 * n + 4);
    println!("floor      | {floor_rate:>10.0} | {:>7.2}  (the same messages, the same carrier and server)", floor_took.as_secs_f64());
    println!(
        "ratio      | {:>10.3} | notifier ÷ floor",
        rate / floor_rate
    );
}
