use dealreg_events::conformance::run_all;
use dealreg_events::memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_appends_to_several_streams_atomically() {
    dealreg_events::conformance::multi_stream_all(|| async { MemoryStore::new() }).await;
}
