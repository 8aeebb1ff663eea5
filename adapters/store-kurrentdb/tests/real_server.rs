//! The conformance suite against a real KurrentDB server, when `DEALREG_KURRENTDB_URL`
//! names one (for example `kurrentdb://127.0.0.1:2113?tls=false`).
//!
//! Why it may not run: no KurrentDB server can run on the project's machines. The test is
//! ignored by default, so it is never counted as a pass without running: `scripts/test`
//! runs it when the variable is set and otherwise reports it as skipped, by name. Run by
//! hand with `cargo test -p dealreg-store-kurrentdb --test real_server -- --ignored`;
//! without the variable it fails, saying what to set. Everything else in this crate runs
//! against the double.
//!
//! A real server's `$all` cannot be emptied between cases, so each case runs in a stream
//! namespace of its own (`dealreg_conformance_<uuid>_<case>`); the server may hold anything
//! else. The namespaced streams stay on the server afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dealreg_events::conformance;
use dealreg_store_kurrentdb::{KurrentOptions, KurrentStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real KurrentDB: needs DEALREG_KURRENTDB_URL"]
async fn the_conformance_suite_passes_on_a_real_server() {
    let Ok(url) = std::env::var("DEALREG_KURRENTDB_URL") else {
        panic!(
            "not run: set DEALREG_KURRENTDB_URL to a server's connection string (e.g. kurrentdb://127.0.0.1:2113?tls=false)"
        );
    };
    let started = Instant::now();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let case = AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = case.fetch_add(1, Ordering::SeqCst);
        let (url, namespace) = (url.clone(), format!("dealreg_conformance_{run}_{n}"));
        async move {
            let options = KurrentOptions {
                namespace: Some(namespace),
                ..KurrentOptions::default()
            };
            KurrentStore::connect_with(&url, options)
                .await
                .unwrap_or_else(|e| panic!("DEALREG_KURRENTDB_URL: {e}"))
        }
    })
    .await;
    eprintln!(
        "the conformance suite passed against the server at DEALREG_KURRENTDB_URL in {:?}",
        started.elapsed()
    );
}
