//! The events port's conformance suite on the KurrentDB backend, against the double.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use dealreg_events::conformance;
use dealreg_kurrentdb_double::KurrentDouble;
use dealreg_store_kurrentdb::KurrentOptions;

/// Every case on a fresh double, since a case expects an empty log and a double's `$all`
/// holds everything written to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_fresh_double_per_case() {
    let started = Instant::now();
    // The doubles live until the end of the test: dropping one stops it.
    let doubles: Arc<Mutex<Vec<KurrentDouble>>> = Arc::default();
    conformance::run_all(|| {
        let doubles = doubles.clone();
        async move {
            let (double, store) = common::fresh().await;
            doubles.lock().expect("doubles").push(double);
            store
        }
    })
    .await;
    eprintln!("conformance on fresh doubles: {:?}", started.elapsed());
}

/// Every case on one shared double, each in a namespace of its own: how the suite runs
/// against a real server, which cannot be emptied between cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_with_a_namespace_per_case_on_one_double() {
    let started = Instant::now();
    let double = KurrentDouble::start().await;
    // Something outside every namespace, which no case may see.
    let outsider = common::store_at(double.addr(), KurrentOptions::default()).await;
    dealreg_events::EventStore::append(
        &outsider,
        "account-outside.example",
        dealreg_events::ExpectedVersion::NoStream,
        vec![conformance::event("e", 0)],
    )
    .await
    .expect("append outside the namespaces");
    let addr = double.addr();
    let case = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let options = KurrentOptions {
                namespace: Some(format!("case{n}")),
                ..KurrentOptions::default()
            };
            common::store_at(addr, options).await
        }
    })
    .await;
    eprintln!(
        "conformance with namespaces on one double: {:?}",
        started.elapsed()
    );
    drop(double);
}
