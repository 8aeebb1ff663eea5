//! The conformance suite every views store passes: checkpoints with their rows, the feed
//! outbox, and leases. A backend's tests call [`checkpoints_all`] with a function that makes
//! a fresh, empty store; each case can also be called on its own.

use std::future::Future;

use dealreg_events::Position;

/// The promises of a checkpoint store, each case on a fresh store from `make`.
pub async fn checkpoints_all<K, F, Fut>(make: F)
where
    K: crate::CheckpointStore,
    F: Fn() -> Fut,
    Fut: Future<Output = K>,
{
    checkpoint_rows_are_saved_with_their_position(make().await).await;
    a_reset_forgets_the_checkpoint_and_every_row(make().await).await;
    saves_of_two_views_do_not_mix(make().await).await;
    published_saves_fill_the_outbox_in_order(make().await).await;
    big_published_saves_keep_every_row_and_entry(make().await).await;
    a_view_rebuilt_beside_takes_the_place_of_the_serving_one(make().await).await;
    rows_are_read_a_page_at_a_time(make().await).await;
}

/// A published save writes one outbox entry per row, in order, naming the scope a row
/// had before (a row moved to another partner); an unpublished save writes none; entries
/// published are gone.
pub async fn published_saves_fill_the_outbox_in_order<K: crate::CheckpointStore>(k: K) {
    k.save_rows("quiet", at(1, "m"), vec![row("r/q", None, Some("q"))])
        .await
        .expect("unpublished save");
    assert!(k.feed_after(0, 10).await.expect("feed").is_empty());
    k.save_published_rows(
        "v",
        at(4, "m"),
        vec![
            row("r/a", Some("p1"), Some("1")),
            row("r/b", Some("p1"), Some("2")),
        ],
    )
    .await
    .expect("first save");
    k.save_published_rows(
        "v",
        at(9, "m"),
        vec![row("r/a", Some("p2"), Some("1b")), row("r/b", None, None)],
    )
    .await
    .expect("second save");
    let entries = k.feed_after(0, 10).await.expect("feed");
    let seen: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.key.as_str(),
                e.scope.as_deref(),
                e.previous_scope.as_deref(),
                e.position.commit(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("r/a", Some("p1"), None, 4),
            ("r/b", Some("p1"), None, 4),
            ("r/a", Some("p2"), Some("p1"), 9),
            ("r/b", None, Some("p1"), 9),
        ]
    );
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let (position, rows) = k
        .rows_by_key("v", vec!["r/a".into(), "r/b".into()])
        .await
        .expect("rows by key");
    assert_eq!(position, Position::at(9));
    assert_eq!(rows, vec![Some(b"1b".to_vec()), None]);
    k.feed_published(entries[1].seq).await.expect("published");
    let left = k.feed_after(0, 10).await.expect("feed");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].seq, entries[2].seq);
    assert_eq!(
        k.feed_after(entries[2].seq, 10).await.expect("feed").len(),
        1
    );
}

/// Saves of many rows, removed and moved rows among them, keep every row and every outbox
/// entry, in key order, each entry naming the scope its row had before (a backend that
/// writes rows in batches must get this right at every batch boundary).
pub async fn big_published_saves_keep_every_row_and_entry<K: crate::CheckpointStore>(k: K) {
    let n = 150;
    let key = |i: usize| format!("r/{i:03}");
    let first: Vec<_> = (0..n)
        .map(|i| crate::RowWrite {
            key: key(i),
            scope: Some(format!("p{}", i % 3)),
            row: Some(format!("v1-{i}").into_bytes()),
        })
        .collect();
    k.save_published_rows("big", at(10, "m"), first)
        .await
        .expect("first save");
    // The second save removes every 7th row, moves every 5th to p9, and rewrites the
    // others; this is each row's scope after it.
    let second_scope = |i: usize| {
        if i.is_multiple_of(7) {
            None
        } else if i.is_multiple_of(5) {
            Some("p9".to_string())
        } else {
            Some(format!("p{}", i % 3))
        }
    };
    let second: Vec<_> = (0..n)
        .map(|i| crate::RowWrite {
            key: key(i),
            scope: second_scope(i),
            row: (i % 7 != 0).then(|| format!("v2-{i}").into_bytes()),
        })
        .collect();
    k.save_published_rows("big", at(20, "m"), second)
        .await
        .expect("second save");

    let entries = k.feed_after(0, 1000).await.expect("feed");
    assert_eq!(entries.len(), 2 * n, "one entry per row per save");
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    for (i, e) in entries[..n].iter().enumerate() {
        assert_eq!(
            (
                e.key.as_str(),
                e.scope.clone(),
                e.previous_scope.clone(),
                e.position.commit()
            ),
            (key(i).as_str(), Some(format!("p{}", i % 3)), None, 10),
            "first save, entry {i}"
        );
    }
    for (i, e) in entries[n..].iter().enumerate() {
        assert_eq!(
            (
                e.key.as_str(),
                e.scope.clone(),
                e.previous_scope.clone(),
                e.position.commit()
            ),
            (
                key(i).as_str(),
                second_scope(i),
                Some(format!("p{}", i % 3)),
                20
            ),
            "second save, entry {i}"
        );
    }

    let rows = k.load_rows("big").await.expect("rows");
    let expected: Vec<_> = (0..n)
        .filter(|i| i % 7 != 0)
        .map(|i| (key(i), format!("v2-{i}").into_bytes()))
        .collect();
    assert_eq!(
        rows, expected,
        "every kept row, rewritten; the removed ones gone"
    );
    let (position, moved) = k.scoped_rows("big", "p9").await.expect("scoped");
    assert_eq!(position, Position::at(20));
    let moved_keys: Vec<_> = moved.into_iter().map(|(k, _)| k).collect();
    let expected_moved: Vec<_> = (0..n)
        .filter(|i| i % 5 == 0 && i % 7 != 0)
        .map(key)
        .collect();
    assert_eq!(moved_keys, expected_moved, "the moved rows are p9's");
}

/// One holder at a time; another takes over once the lease expired; a release frees it.
pub async fn leases_are_exclusive_until_they_expire<L: crate::Leases>(l: L) {
    use chrono::TimeZone;
    let t0 = chrono::Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("time");
    let ttl = std::time::Duration::from_secs(10);
    let later = |s: i64| t0 + chrono::Duration::seconds(s);
    assert!(l.try_acquire("views", "a", t0, ttl).await.expect("a takes"));
    assert!(!l
        .try_acquire("views", "b", later(5), ttl)
        .await
        .expect("b waits"));
    assert!(l
        .try_acquire("views", "a", later(5), ttl)
        .await
        .expect("a renews"));
    assert!(!l
        .try_acquire("views", "b", later(12), ttl)
        .await
        .expect("renewed: b waits"));
    assert!(l
        .try_acquire("views", "b", later(16), ttl)
        .await
        .expect("expired: b takes"));
    assert!(l
        .try_acquire("other", "a", later(16), ttl)
        .await
        .expect("leases are separate"));
    l.release("views", "a")
        .await
        .expect("release by a non-holder does nothing");
    assert!(!l
        .try_acquire("views", "a", later(17), ttl)
        .await
        .expect("b still holds"));
    l.release("views", "b").await.expect("release");
    assert!(l
        .try_acquire("views", "a", later(17), ttl)
        .await
        .expect("freed: a takes"));
}

fn row(key: &str, scope: Option<&str>, bytes: Option<&str>) -> crate::RowWrite {
    crate::RowWrite {
        key: key.into(),
        scope: scope.map(str::to_string),
        row: bytes.map(|b| b.as_bytes().to_vec()),
    }
}

fn at(position: u64, meta: &str) -> crate::Checkpoint {
    crate::Checkpoint {
        position: Position::at(position),
        version: 7,
        state: meta.as_bytes().to_vec(),
    }
}

/// Rows written by a save are there with the save's checkpoint; a later save changes only
/// the rows it names (a `None` row deletes); scoped reads return one partner's rows.
pub async fn checkpoint_rows_are_saved_with_their_position<K: crate::CheckpointStore>(k: K) {
    assert_eq!(k.load("v").await.expect("load"), None);
    assert!(k.load_rows("v").await.expect("rows").is_empty());
    k.save_rows(
        "v",
        at(10, "m1"),
        vec![
            row("r/a", Some("p1"), Some("1")),
            row("r/b", Some("p2"), Some("2")),
            row("t/x", None, Some("3")),
        ],
    )
    .await
    .expect("first save");
    k.save_rows(
        "v",
        at(20, "m2"),
        vec![
            row("r/a", Some("p2"), Some("1b")),
            row("t/x", None, None),
            row("t/never", None, None),
        ],
    )
    .await
    .expect("second save");
    assert_eq!(k.load("v").await.expect("load"), Some(at(20, "m2")));
    let rows = k.load_rows("v").await.expect("rows");
    assert_eq!(
        rows,
        vec![
            ("r/a".to_string(), b"1b".to_vec()),
            ("r/b".to_string(), b"2".to_vec())
        ],
        "rows by key, the deleted one gone"
    );
    let (position, p2) = k.scoped_rows("v", "p2").await.expect("scoped");
    assert_eq!(position, Position::at(20));
    assert_eq!(
        p2.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(),
        vec!["r/a", "r/b"],
        "a row moved to another partner is read with that partner"
    );
    let (_, p1) = k.scoped_rows("v", "p1").await.expect("scoped");
    assert!(p1.is_empty(), "p1 no longer owns r/a: {p1:?}");
}

pub async fn a_reset_forgets_the_checkpoint_and_every_row<K: crate::CheckpointStore>(k: K) {
    k.save_rows("v", at(5, "m"), vec![row("r/a", Some("p"), Some("1"))])
        .await
        .expect("save");
    k.reset("v").await.expect("reset");
    assert_eq!(k.load("v").await.expect("load"), None);
    assert!(k.load_rows("v").await.expect("rows").is_empty());
    let (position, rows) = k.scoped_rows("v", "p").await.expect("scoped");
    assert_eq!((position, rows.len()), (Position::ORIGIN, 0));
}

pub async fn saves_of_two_views_do_not_mix<K: crate::CheckpointStore>(k: K) {
    k.save_rows("a", at(1, "ma"), vec![row("r/1", None, Some("a1"))])
        .await
        .expect("save a");
    k.save_rows("b", at(2, "mb"), vec![row("r/1", None, Some("b1"))])
        .await
        .expect("save b");
    k.reset("a").await.expect("reset a");
    assert_eq!(
        k.load_rows("b").await.expect("rows b"),
        vec![("r/1".to_string(), b"b1".to_vec())]
    );
    assert_eq!(k.load("b").await.expect("load b"), Some(at(2, "mb")));
    // A save with no rows (the reactor's) keeps the rows already saved.
    k.save("b", at(3, "mb2")).await.expect("save b again");
    assert_eq!(k.load_rows("b").await.expect("rows b").len(), 1);
}

/// A view built beside the serving one (`v~next`) replaces it in one write: until then
/// readers of `v` get the old view whole; after it, the new one whole, `v~next` is gone,
/// and (published) every row of the new view has an outbox entry, naming the scope the
/// row had before, and every row it no longer has one that deletes it.
pub async fn a_view_rebuilt_beside_takes_the_place_of_the_serving_one<K: crate::CheckpointStore>(
    k: K,
) {
    k.save_rows(
        "v",
        at(5, "old"),
        vec![
            row("r/a", Some("p1"), Some("a1")),
            row("r/gone", Some("p1"), Some("g")),
        ],
    )
    .await
    .expect("serving save");
    k.save_rows(
        "v~next",
        at(9, "new"),
        vec![
            row("r/a", Some("p2"), Some("a2")),
            row("r/b", None, Some("b2")),
        ],
    )
    .await
    .expect("built save");
    // Until the swap the serving view is the old one, whole.
    assert_eq!(
        k.load("v").await.expect("load").map(|c| c.state),
        Some(b"old".to_vec())
    );
    assert_eq!(k.load_rows("v").await.expect("rows").len(), 2);
    assert!(
        k.swap_in("v", "nothing~next", true).await.is_err(),
        "a view never built is not swapped in"
    );
    k.swap_in("v", "v~next", true).await.expect("swap");
    let loaded = k.load("v").await.expect("load").expect("the new view");
    assert_eq!(
        (loaded.position.commit(), loaded.state),
        (9, b"new".to_vec())
    );
    assert_eq!(
        k.load_rows("v").await.expect("rows"),
        vec![
            ("r/a".to_string(), b"a2".to_vec()),
            ("r/b".to_string(), b"b2".to_vec())
        ]
    );
    assert_eq!(k.load("v~next").await.expect("load"), None);
    assert!(k.load_rows("v~next").await.expect("rows").is_empty());
    let (_, p2) = k.scoped_rows("v", "p2").await.expect("scoped");
    assert_eq!(p2.len(), 1, "the scope index serves the new rows");
    let entries = k.feed_after(0, 10).await.expect("feed");
    let mut seen: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.view.as_str(),
                e.key.as_str(),
                e.scope.as_deref(),
                e.previous_scope.as_deref(),
                e.position.commit(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("v", "r/a", Some("p2"), Some("p1"), 9),
            ("v", "r/b", None, None, 9),
            ("v", "r/gone", None, Some("p1"), 9),
        ]
    );
}

/// A page of a table's rows: after a key, at most a limit, in key order, only its table's
/// rows, only one scope's when asked, with the checkpoint's position.
pub async fn rows_are_read_a_page_at_a_time<K: crate::CheckpointStore>(k: K) {
    let mut rows: Vec<_> = (0..7)
        .map(|i| {
            let scope = if i % 2 == 0 { "p1" } else { "p2" };
            (format!("t/{i:02}"), scope, format!("r{i}"))
        })
        .collect();
    rows.push(("s/00".into(), "p1", "other table".into()));
    rows.push(("u/00".into(), "p1", "another".into()));
    k.save_rows(
        "v",
        at(12, "m"),
        rows.iter()
            .map(|(key, scope, bytes)| row(key, Some(scope), Some(bytes)))
            .collect(),
    )
    .await
    .expect("save");
    let keys = |page: Vec<crate::StoredRow>| page.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    let (position, first) = k.rows_after("v", "t/", None, 3, None).await.expect("first");
    assert_eq!(position.commit(), 12);
    assert_eq!(keys(first), vec!["t/00", "t/01", "t/02"]);
    let (_, next) = k
        .rows_after("v", "t/", Some("t/02"), 3, None)
        .await
        .expect("next");
    assert_eq!(keys(next), vec!["t/03", "t/04", "t/05"]);
    let (_, last) = k
        .rows_after("v", "t/", Some("t/05"), 3, None)
        .await
        .expect("last");
    assert_eq!(keys(last), vec!["t/06"], "the table's rows only");
    let (_, scoped) = k
        .rows_after("v", "t/", Some("t/00"), 10, Some("p1"))
        .await
        .expect("scoped");
    assert_eq!(keys(scoped), vec!["t/02", "t/04", "t/06"]);
    let (position, none) = k
        .rows_after("w", "t/", None, 3, None)
        .await
        .expect("no view");
    assert_eq!((position, none.len()), (Position::ORIGIN, 0));
}
