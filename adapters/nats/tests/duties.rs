//! The deployment's shared duties on a real JetStream server: one holder at a time, taken
//! over once expired or released; marks that never move back.

use std::time::{Duration, Instant};

use chrono::Utc;
use dealreg_events::Position;
use dealreg_nats::duties::JetStreamDuties;
use dealreg_nats_testkit::NatsServer;
use dealreg_views::{Leases, SharedDuties};

async fn duties(server: &NatsServer) -> JetStreamDuties {
    let client = async_nats::connect(server.url()).await.expect("connect");
    JetStreamDuties::open(client, 1).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_holds_the_duties_until_it_lets_go_or_its_lease_expires() {
    let server = NatsServer::start();
    let (a, b) = (duties(&server).await, duties(&server).await);
    let ttl = Duration::from_secs(6);
    let t0 = Utc::now();
    assert!(a.try_acquire("duties", "a", t0, ttl).await.expect("a"));
    assert!(!b.try_acquire("duties", "b", t0, ttl).await.expect("b"));
    assert!(a
        .try_acquire("duties", "a", t0 + chrono::Duration::seconds(2), ttl)
        .await
        .expect("a renews"));
    // Still a's: its renewal moved the expiry on.
    let t7 = t0 + chrono::Duration::seconds(7);
    assert!(!b.try_acquire("duties", "b", t7, ttl).await.expect("b"));
    let t9 = t0 + chrono::Duration::seconds(9);
    assert!(b
        .try_acquire("duties", "b", t9, ttl)
        .await
        .expect("expired"));
    assert!(!a.try_acquire("duties", "a", t9, ttl).await.expect("a"));
    // A release by a process that does not hold it changes nothing.
    a.release("duties", "a").await.expect("release");
    assert!(!a.try_acquire("duties", "a", t9, ttl).await.expect("a"));
    b.release("duties", "b").await.expect("release");
    assert!(
        a.try_acquire("duties", "a", t9, ttl)
            .await
            .expect("released"),
        "a released lease is free at once"
    );
    // Another lease of the bucket is another key.
    assert!(b.try_acquire("other", "b", t9, ttl).await.expect("other"));
}

/// Eight processes, each with its own connection, race for free leases: every one exists
/// before any may try (a barrier), exactly one takes each lease, and the race is real: a
/// loser's attempt began before the winner's ended. (Started one by one, the first would
/// take the lease while the others were still connecting, and no attempt would overlap.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_processes_take_a_free_lease_once() {
    const CONTENDERS: usize = 8;
    let server = NatsServer::start();
    let mut contenders = Vec::new();
    for _ in 0..CONTENDERS {
        contenders.push(std::sync::Arc::new(duties(&server).await));
    }
    for round in 0..5 {
        let lease = format!("duties-{round}");
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let mut tasks = Vec::new();
        for (i, d) in contenders.iter().enumerate() {
            let (d, start, lease) = (d.clone(), start.clone(), lease.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let began = Instant::now();
                let taken = d
                    .try_acquire(
                        &lease,
                        &format!("p{i}"),
                        Utc::now(),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("try");
                (taken, began, Instant::now())
            }));
        }
        let mut attempts = Vec::new();
        for task in tasks {
            attempts.push(task.await.expect("task"));
        }
        let winners: Vec<_> = attempts.iter().filter(|(taken, _, _)| *taken).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one contender takes the lease"
        );
        let (_, _, won_at) = winners[0];
        let overlapping = attempts
            .iter()
            .filter(|(taken, began, _)| !taken && began < won_at)
            .count();
        assert!(
            overlapping > 0,
            "round {round}: every loser tried only after the winner had the lease, so they did not race"
        );
        println!(
            "round {round}: {overlapping} of {} losers tried while the winner was taking the lease",
            CONTENDERS - 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_move_forward_only_and_keep_tokens() {
    let server = NatsServer::start();
    let (a, b) = (duties(&server).await, duties(&server).await);
    assert_eq!(a.done_through("feed/pipeline").await.expect("read"), None);
    a.mark_done("feed/pipeline", Position::at(40))
        .await
        .expect("mark");
    b.mark_done("feed/pipeline", Position::at(12))
        .await
        .expect("late mark");
    assert_eq!(
        b.done_through("feed/pipeline").await.expect("read"),
        Some(Position::at(40)),
        "a late, lower mark does not move it back"
    );
    let token: Position = "120/118".parse().expect("token");
    a.mark_done("reactor", token).await.expect("token mark");
    assert_eq!(b.done_through("reactor").await.expect("read"), Some(token));
    assert_eq!(b.done_through("feed/ledger").await.expect("read"), None);
}
