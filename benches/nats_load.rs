//! Load generator for `dealreg serve`: submissions per second and latency (p50, p99,
//! p99.9) at 1, 16 and 64 requests in flight, next to two floors measured in the same
//! run: a plain NATS echo responder answering the same payload size, and the same commands
//! through the service's own engine in-process (same store, same views following it: the
//! same work but the NATS hop); the latency NATS and the service add (over NATS minus
//! in-process, per percentile); the CPU milliseconds per command of this process,
//! nats-server and the views process; and how far behind the views were at each level's
//! last reply, and how long until every view had saved the log's head. The
//! command path runs in this process (`dealreg_nats::serve` on a SQLite file, as
//! `dealreg serve --no-views` runs it) against a real nats-server on 127.0.0.1; the views
//! are kept by another process, `dealreg serve --views-only` on the same store
//! (`DEALREG_BENCH_NATS_VIEWS=beside` folds them in this process instead, as one plain
//! `dealreg serve` does; `none` folds none).
//!
//! Submissions spread over 512 partners: each takes a capacity slot on its partner's
//! stream, so fewer partners than requests in flight measure contention on partner
//! streams, not the interface.
//!
//! `cargo bench --bench nats_load`; knobs: DEALREG_BENCH_NATS_COMMANDS (per level, default
//! 3000), DEALREG_BENCH_NATS_LEVELS (default `1,16,64`), DEALREG_BENCH_NATS_VIEWS
//! (`process`, the default; `beside`; `none`).

/// The allocator and its settings, as in the `dealreg` binary: the engine's cost includes
/// them, so the benches measure what the product runs with.
#[path = "../src/allocator.rs"]
mod allocator;

#[path = "cpu.rs"]
mod cpu;
#[path = "../tests/nats_support.rs"]
mod nats_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_clock::ControlledClock;
use dealreg_engine::{CommandEnvelope, Engine};
use dealreg_events::{EventStore, Position};
use dealreg_nats::metrics::Metrics;
use dealreg_nats::service::{ServeOptions, Stores};
use dealreg_store_sqlite::{SqliteCheckpoints, SqliteStore};
use dealreg_views::CheckpointStore;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

#[path = "load.rs"]
#[allow(dead_code)]
mod load;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The NATS body of submission `n` by `partner`.
fn submission(partner: Uuid, n: usize, tag: &str) -> serde_json::Value {
    let domain = format!("{tag}-customer-{n}.com");
    json!({ "command": {
        "type": "submit_registration", "registration_id": Uuid::now_v7(), "partner_id": partner,
        "customer": { "company": format!("Customer {n}"), "domain": domain, "contact": { "name": "Dana", "email": format!("dana@{domain}") } },
        "product_line": "analytics", "motion": "reseller",
        "estimated_amount": { "amount_minor": 1_250_000, "currency": "USD" }, "expected_close": "2026-06-30",
        "proof_of_work": "Joint discovery call held", "kind": "new_business" } })
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// Runs `count` operations with `in_flight` at a time; each returns its own latency.
async fn drive<F, Fut>(count: usize, in_flight: usize, op: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    break latencies;
                }
                let t = Instant::now();
                op(n).await;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await.unwrap_or_else(|e| panic!("worker: {e}")));
    }
    figures(latencies, started.elapsed())
}

async fn open_engine(
    path: &std::path::Path,
) -> (
    Arc<Engine<SqliteStore, ControlledClock>>,
    SqliteStore,
    SqliteCheckpoints,
) {
    let store = SqliteStore::open(path).unwrap_or_else(|e| panic!("store: {e}"));
    let checkpoints = SqliteCheckpoints::open(path).unwrap_or_else(|e| panic!("views: {e}"));
    let engine = Engine::open(
        store.clone(),
        ControlledClock::starting_at(load::start()),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("engine: {e}"))
    // As `dealreg serve` does: contacts sealed with the store's key vault file.
    .with_vault(Arc::new(
        dealreg_store_sqlite::SqliteVault::open(path, dealreg_vault::KeyMaterial::Random)
            .unwrap_or_else(|e| panic!("vault: {e}")),
    ));
    (Arc::new(engine), store, checkpoints)
}

/// CPU seconds of this process, nats-server and the views process, now.
fn cpu_now(server: u32, views: Option<u32>) -> [f64; 3] {
    [
        cpu::cpu_seconds("self"),
        cpu::cpu_seconds(&server.to_string()),
        views.map_or(0.0, |pid| cpu::cpu_seconds(&pid.to_string())),
    ]
}

/// CPU milliseconds per command between two readings, per process.
fn cpu_per_command(before: [f64; 3], after: [f64; 3], commands: usize) -> String {
    let per = |i: usize| (after[i] - before[i]) * 1000.0 / commands as f64;
    format!("{:.3} + {:.3} + {:.3}", per(0), per(1), per(2))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    allocator::tune();
    let count = env_usize("DEALREG_BENCH_NATS_COMMANDS", 3000).max(1);
    let levels: Vec<usize> = std::env::var("DEALREG_BENCH_NATS_LEVELS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let server = nats_support::NatsServer::start(None);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    runtime.block_on(async {
        let client = async_nats::connect(&server.url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        // Floor 1: an echo responder of the same payload, on its own connection.
        let responder = async_nats::connect(&server.url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut echo = responder
            .subscribe("bench.echo")
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        tokio::spawn(async move {
            while let Some(message) = echo.next().await {
                if let Some(reply) = message.reply {
                    let _ = responder.publish(reply, message.payload).await;
                }
            }
        });
        let payload = bytes::Bytes::from(submission(Uuid::now_v7(), 0, "echo").to_string());

        // The service, in this process, on its store.
        let served = dir.path().join("served.db");
        let (served_engine, store, checkpoints) = open_engine(&served).await;
        let served_partners = Arc::new(load::onboard_partners(&served_engine, 512).await);
        // Floor 2: the same engine in-process, on the same store, its events folded by
        // the same views (in the views process, or beside): the same work as over NATS
        // but the NATS hop. (Until 2026-12-05 this floor had a store of its own that no
        // view followed: it left out the views' CPU, which shares these cores.)
        let (engine, partners) = (Arc::clone(&served_engine), Arc::clone(&served_partners));
        let holder = dealreg_nats::service::holder_name();
        // Where the views are folded: by `dealreg serve --views-only` in another process
        // (the default), beside the commands in this one, or nowhere.
        let where_views = std::env::var("DEALREG_BENCH_NATS_VIEWS").unwrap_or_else(|_| "process".into());
        let (views, views_beside) = match where_views.as_str() {
            "process" => (true, false),
            "beside" => (true, true),
            "none" => (false, false),
            other => panic!("DEALREG_BENCH_NATS_VIEWS={other}: say process, beside or none"),
        };
        let views_process = (views && !views_beside).then(|| ViewsProcess::start(&served, &server.url, dir.path()));
        let views_pid = views_process.as_ref().map(|p| p.child.id());
        let server_pid = server.server_pid();
        let mut cpu_lines = Vec::new();
        println!(
            "nats_load: the views are kept {}",
            match (views, views_beside) {
                (true, false) => "by another process (`dealreg serve --views-only` on the same store); the commands are answered as `serve --no-views`",
                (true, true) => "beside the commands, in this process (one plain `dealreg serve`)",
                _ => "by no process (DEALREG_BENCH_NATS_VIEWS=none)",
            }
        );
        let fenced = checkpoints.fenced(dealreg_nats::service::VIEWS_LEASE, &holder);
        let service_client = async_nats::connect(&server.url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::default());
        let service = tokio::spawn(dealreg_nats::serve(
            service_client,
            served_engine,
            Stores {
                log: store.clone(),
                views: checkpoints.clone(),
                fenced,
                leases: checkpoints.clone(),
                shared: None::<dealreg_views::Unshared>,
            },
            ServeOptions {
                holder,
                tick: Duration::from_secs(3600),
                // DEALREG_BENCH_NATS_NO_FEED=1: the views are folded, not published.
                feeds: !std::env::var("DEALREG_BENCH_NATS_NO_FEED").is_ok_and(|v| v == "1"),
                views: views_beside,
                ..ServeOptions::default()
            },
            Arc::clone(&metrics),
            async {
                let _ = stopped.await;
            },
        ));
        while nats_support::count_instances(&client).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        println!(
            "nats_load: {count} submissions per level, payload {} bytes; latency in ms",
            payload.len()
        );
        println!(
            "{:>9} | {:>28} | {:>28} | {:>28} | {:>20} | {:>8} | {:>6} | {:>24}",
            "in flight",
            "echo floor /s p50 p99 p999",
            "in-process /s p50 p99 p999",
            "over NATS /s p50 p99 p999",
            "added p50 p99 p999",
            "÷in-proc",
            "÷echo",
            "views behind at end"
        );
        let row = |f: Figures| {
            format!(
                "{:>8.0} {:>6} {:>6} {:>6}",
                f.per_second,
                ms(f.p50),
                ms(f.p99),
                ms(f.p999)
            )
        };
        for (round, in_flight) in levels.iter().copied().enumerate() {
            let echo = {
                let (client, payload) = (client.clone(), payload.clone());
                drive(count, in_flight, move |_| {
                    let (client, payload) = (client.clone(), payload.clone());
                    async move {
                        client
                            .request("bench.echo", payload)
                            .await
                            .unwrap_or_else(|e| panic!("echo: {e}"));
                    }
                })
                .await
            };
            let (in_process_tag, over_nats_tag) = (format!("r{round}i"), format!("r{round}n"));
            let cpu_before_in_process = cpu_now(server_pid, views_pid);
            let in_process = {
                let (engine, partners, tag) =
                    (Arc::clone(&engine), Arc::clone(&partners), in_process_tag.clone());
                drive(count, in_flight, move |n| {
                    let (engine, partners, tag) =
                        (Arc::clone(&engine), Arc::clone(&partners), tag.clone());
                    async move {
                        let partner = partners[n % partners.len()];
                        let mut body = submission(partner, n, &tag);
                        body["actor"] =
                            json!({ "kind": "partner", "partner_id": partner, "user": "rep" });
                        let envelope = CommandEnvelope::parse(body.to_string().as_bytes())
                            .unwrap_or_else(|e| panic!("parse: {e}"));
                        match engine.execute(envelope).await {
                            Ok(done) if done.reply.ok => {}
                            other => panic!("in-process command failed: {other:?}"),
                        }
                    }
                })
                .await
            };
            let cpu_in_process = cpu_per_command(
                cpu_before_in_process,
                cpu_now(server_pid, views_pid),
                count,
            );
            let cpu_before_over_nats = cpu_now(server_pid, views_pid);
            let over_nats = {
                let (client, partners, tag) =
                    (client.clone(), Arc::clone(&served_partners), over_nats_tag.clone());
                drive(count, in_flight, move |n| {
                    let (client, partners, tag) =
                        (client.clone(), Arc::clone(&partners), tag.clone());
                    async move {
                        let partner = partners[n % partners.len()];
                        let body = submission(partner, n, &tag).to_string();
                        let reply = client
                            .request(
                                format!("dealreg.partner.{partner}.cmd.submit_registration"),
                                body.into(),
                            )
                            .await
                            .unwrap_or_else(|e| panic!("request: {e}"));
                        assert!(
                            reply.payload.starts_with(b"{\"ok\":true"),
                            "a command over NATS failed: {}",
                            String::from_utf8_lossy(&reply.payload)
                        );
                    }
                })
                .await
            };
            let cpu_over_nats =
                cpu_per_command(cpu_before_over_nats, cpu_now(server_pid, views_pid), count);
            cpu_lines.push(format!(
                "{in_flight:>9} | in-process {cpu_in_process} | over NATS {cpu_over_nats}"
            ));
            // How far behind the views were at the level's last reply (events of the log
            // not yet in the least advanced view's save), and how long until every view
            // had saved the log's head (they must keep up, not just the replies).
            let caught_up = if views {
                let head = store
                    .last_position()
                    .await
                    .unwrap_or_else(|e| panic!("head: {e}"));
                let since = Instant::now();
                let mut behind_at_end = None;
                loop {
                    let mut least = head;
                    for name in dealreg_host::registry::names::<SqliteStore, SqliteCheckpoints>() {
                        let saved = checkpoints
                            .load(name)
                            .await
                            .unwrap_or_else(|e| panic!("views: {e}"))
                            .map_or(Position::ORIGIN, |c| c.position);
                        least = least.min(saved);
                    }
                    // SQLite positions count events: the difference is events behind.
                    let behind = *behind_at_end.get_or_insert(head.commit().saturating_sub(least.commit()));
                    if least >= head {
                        break format!(
                            "{behind} events, {:.0} ms",
                            since.elapsed().as_secs_f64() * 1000.0
                        );
                    }
                    assert!(since.elapsed() < Duration::from_secs(120), "the views did not catch up");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } else {
                "-".into()
            };
            let added = |over: Duration, under: Duration| {
                let ms = (over.as_secs_f64() - under.as_secs_f64()) * 1000.0;
                format!("{ms:.2}")
            };
            println!(
                "{:>9} | {} | {} | {} | {:>6} {:>6} {:>6} | {:>8.2} | {:>6.2} | {:>24}",
                in_flight,
                row(echo),
                row(in_process),
                row(over_nats),
                added(over_nats.p50, in_process.p50),
                added(over_nats.p99, in_process.p99),
                added(over_nats.p999, in_process.p999),
                over_nats.per_second / in_process.per_second,
                over_nats.per_second / echo.per_second,
                caught_up
            );
        }
        println!("nats_load: CPU ms per command (this process + nats-server + the views process; the commands' own part of it):");
        for line in &cpu_lines {
            println!("{line}");
        }
        // Inside the service: the time from a request's arrival to its reply's encoding,
        // over all rounds (where the latency over NATS is spent: in the service or around it).
        println!("nats_load: inside the service (dealreg_command_seconds, all rounds):");
        for line in metrics.render().lines() {
            if line.starts_with("dealreg_command_seconds_bucket{command=\"submit_registration\"") {
                println!("  {line}");
            }
        }
        let _ = stop.send(());
        match service.await {
            Ok(Ok(())) => {}
            other => panic!("the service did not drain: {other:?}"),
        }
    });
}

/// `dealreg serve --views-only` on the bench's store, in its own process: it keeps the
/// views while this process answers the commands. Stopped (SIGTERM, then awaited) on drop.
struct ViewsProcess {
    child: std::process::Child,
}

impl ViewsProcess {
    fn start(store: &std::path::Path, nats_url: &str, dir: &std::path::Path) -> ViewsProcess {
        let log = dir.join("views-only.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("views log: {e}"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(store)
            .args([
                "serve",
                "--views-only",
                "--nats-url",
                nats_url,
                "--tick-secs",
                "3600",
            ])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start dealreg serve --views-only: {e}"));
        let process = ViewsProcess { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("took the views lease")
        {
            assert!(
                Instant::now() < deadline,
                "dealreg serve --views-only did not take the views lease: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }
}

impl Drop for ViewsProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
