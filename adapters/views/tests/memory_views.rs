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

#[tokio::test]
async fn outbox_entries_published_elsewhere_leave_only_for_their_view_and_positions() {
    use dealreg_events::Position;
    use dealreg_views::{Checkpoint, CheckpointStore, MemoryCheckpoints, RowWrite};
    let views = MemoryCheckpoints::new();
    for (view, position) in [("a", 3), ("b", 4), ("a", 5), ("a", 8)] {
        let checkpoint = Checkpoint {
            position: Position::at(position),
            version: 1,
            state: Vec::new(),
        };
        let rows = vec![RowWrite {
            key: format!("r/{position}"),
            scope: None,
            row: Some(b"1".to_vec()),
        }];
        views
            .save_published_rows(view, checkpoint, rows)
            .await
            .expect("save");
    }
    views
        .feed_published_elsewhere("a", Position::at(5))
        .await
        .expect("drop");
    let left: Vec<(String, Position)> = views
        .feed_after(0, 10)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| (e.view, e.position))
        .collect();
    assert_eq!(
        left,
        vec![("b".into(), Position::at(4)), ("a".into(), Position::at(8))]
    );
}
