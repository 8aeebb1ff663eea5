#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_checkpoints_pass_the_checkpoint_suite() {
    dealreg_views::conformance::checkpoints_all(|| async {
        dealreg_views::MemoryCheckpoints::new()
    })
    .await;
}

#[tokio::test]
async fn memory_leases_are_exclusive_until_they_expire() {
    dealreg_views::conformance::leases_are_exclusive_until_they_expire(
        dealreg_views::MemoryCheckpoints::new(),
    )
    .await;
}
