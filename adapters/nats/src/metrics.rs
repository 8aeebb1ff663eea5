//! Prometheus metrics and the health endpoints of `dealreg serve`, over plain HTTP/1.1.
//!
//! Why hand-written: the text exposition format is a few lines per metric family and the
//! server answers three paths; a metrics crate and an HTTP framework would add more to
//! the build than this whole module.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// A view's progress: the position it saved and when it last was at the log's head.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewLag {
    /// Whether the log holds events the view's saved state does not (positions are not
    /// counts, so how many is not told).
    pub behind: bool,
    pub seconds: f64,
}

/// Everything `serve` counts.
#[derive(Default)]
pub struct Metrics {
    commands: Mutex<BTreeMap<(String, String), u64>>,
    command_latency: Mutex<BTreeMap<String, Histogram>>,
    queries: Mutex<BTreeMap<(String, String), u64>>,
    query_latency: Mutex<Histogram>,
    views: Mutex<BTreeMap<String, ViewLag>>,
    feed_published: AtomicU64,
    feed_backlog: AtomicU64,
    timekeeper_runs: AtomicU64,
    timekeeper_commands: AtomicU64,
    holds_views: AtomicBool,
    ready: AtomicBool,
    /// Gauges and counters the store reports (group commits, appends).
    store: Mutex<Vec<(String, String, f64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    pub fn command_done(&self, command: &str, outcome: &str, took: Duration) {
        *lock(&self.commands)
            .entry((command.to_string(), outcome.to_string()))
            .or_default() += 1;
        lock(&self.command_latency)
            .entry(command.to_string())
            .or_default()
            .observe(took.as_secs_f64());
    }

    pub fn query_done(&self, view: &str, outcome: &str, took: Duration) {
        *lock(&self.queries)
            .entry((view.to_string(), outcome.to_string()))
            .or_default() += 1;
        lock(&self.query_latency).observe(took.as_secs_f64());
    }

    pub fn view_lag(&self, view: &str, lag: ViewLag) {
        lock(&self.views).insert(view.to_string(), lag);
    }

    /// A publishing round published `entries` outbox entries.
    pub fn feed_published(&self, entries: u64) {
        self.feed_published.fetch_add(entries, Ordering::Relaxed);
        self.feed_backlog.store(entries, Ordering::Relaxed);
    }

    pub fn timekeeper_ran(&self, commands: u64) {
        self.timekeeper_runs.fetch_add(1, Ordering::Relaxed);
        self.timekeeper_commands
            .fetch_add(commands, Ordering::Relaxed);
    }

    pub fn set_holds_views(&self, holds: bool) {
        self.holds_views.store(holds, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replaces the store's figures: (name, help, value).
    pub fn set_store(&self, figures: Vec<(String, String, f64)>) {
        *lock(&self.store) = figures;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP dealreg_commands_total Commands answered, by command and outcome (ok or the error code).\n# TYPE dealreg_commands_total counter\n");
        for ((command, outcome), n) in lock(&self.commands).iter() {
            let _ = writeln!(
                out,
                "dealreg_commands_total{{command=\"{command}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP dealreg_command_seconds Time from receiving a command to its reply.\n# TYPE dealreg_command_seconds histogram\n");
        for (command, histogram) in lock(&self.command_latency).iter() {
            histogram.write(
                &mut out,
                "dealreg_command_seconds",
                &format!("command=\"{command}\""),
            );
        }
        out.push_str("# HELP dealreg_queries_total Queries answered, by view and outcome.\n# TYPE dealreg_queries_total counter\n");
        for ((view, outcome), n) in lock(&self.queries).iter() {
            let _ = writeln!(
                out,
                "dealreg_queries_total{{view=\"{view}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP dealreg_query_seconds Time from receiving a query to its reply (waits for min_position included).\n# TYPE dealreg_query_seconds histogram\n");
        lock(&self.query_latency).write(&mut out, "dealreg_query_seconds", "");
        out.push_str("# HELP dealreg_projection_behind 1 while the log holds events not yet in the view's saved state (this process folds the views only while it holds the lease).\n# TYPE dealreg_projection_behind gauge\n");
        let views = lock(&self.views);
        for (view, lag) in views.iter() {
            let _ = writeln!(
                out,
                "dealreg_projection_behind{{view=\"{view}\"}} {}",
                u8::from(lag.behind)
            );
        }
        out.push_str("# HELP dealreg_projection_lag_seconds Time since the view last reached the log's head (0 when at the head).\n# TYPE dealreg_projection_lag_seconds gauge\n");
        for (view, lag) in views.iter() {
            let _ = writeln!(
                out,
                "dealreg_projection_lag_seconds{{view=\"{view}\"}} {}",
                lag.seconds
            );
        }
        drop(views);
        let _ = write!(
            out,
            "# HELP dealreg_feed_published_total Outbox entries published to JetStream.\n# TYPE dealreg_feed_published_total counter\ndealreg_feed_published_total {}\n\
             # HELP dealreg_feed_backlog_entries Outbox entries the last publishing round found (0: the feed is caught up; 512, a full round: at least that many waited).\n# TYPE dealreg_feed_backlog_entries gauge\ndealreg_feed_backlog_entries {}\n\
             # HELP dealreg_timekeeper_runs_total Timekeeper ticks.\n# TYPE dealreg_timekeeper_runs_total counter\ndealreg_timekeeper_runs_total {}\n\
             # HELP dealreg_timekeeper_commands_total Commands the timekeeper issued.\n# TYPE dealreg_timekeeper_commands_total counter\ndealreg_timekeeper_commands_total {}\n\
             # HELP dealreg_holds_views 1 while this process holds the lease that folds the views and publishes the feeds.\n# TYPE dealreg_holds_views gauge\ndealreg_holds_views {}\n",
            self.feed_published.load(Ordering::Relaxed),
            self.feed_backlog.load(Ordering::Relaxed),
            self.timekeeper_runs.load(Ordering::Relaxed),
            self.timekeeper_commands.load(Ordering::Relaxed),
            u8::from(self.holds_views.load(Ordering::Relaxed)),
        );
        for (name, help, value) in lock(&self.store).iter() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Answers `/metrics`, `/healthz` (the process runs) and `/readyz` (connected, endpoints
/// up) on `listener` until the task is dropped.
pub async fn serve_http(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = std::sync::Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut buffer = [0u8; 2048];
            let read = match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
                .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buffer[..read]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" if metrics.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready: connecting to NATS, starting or draining\n".to_string(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain",
                    "paths: /metrics /healthz /readyz\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

impl dealreg_host::host::HostObserver for Metrics {
    fn holds_views(&self, held: bool) {
        self.set_holds_views(held);
    }

    fn view_lag(&self, view: &'static str, behind: bool, seconds: f64) {
        Metrics::view_lag(self, view, ViewLag { behind, seconds });
    }

    fn timekeeper_ran(&self, issued: u64) {
        Metrics::timekeeper_ran(self, issued);
    }

    fn feed_published(&self, entries: u64) {
        Metrics::feed_published(self, entries);
    }
}
