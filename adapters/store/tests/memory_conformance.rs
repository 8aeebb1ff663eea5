use dealreg_store::conformance::run_all;
use dealreg_store::memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_checkpoints_pass_the_checkpoint_suite() {
    dealreg_store::conformance::checkpoints_all(|| async {
        dealreg_store::MemoryCheckpoints::new()
    })
    .await;
}

#[tokio::test]
async fn memory_leases_are_exclusive_until_they_expire() {
    dealreg_store::conformance::leases_are_exclusive_until_they_expire(
        dealreg_store::MemoryCheckpoints::new(),
    )
    .await;
}
