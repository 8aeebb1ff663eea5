//! Invariant 4: the same command twice with one idempotency key has one effect, and the
//! second caller gets the first caller's reply.

mod support;

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::memory::MemoryStore;
use dealreg_events::{EventStore, Position};
use dealreg_store_sqlite::SqliteStore;
use support::*;
use uuid::Uuid;

async fn log_len<S: EventStore>(store: &S) -> usize {
    store
        .read_all(Position::ORIGIN, 100_000)
        .await
        .expect("read")
        .len()
}

async fn same_key_same_reply<S: EventStore + Clone>(store: S) {
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine opens");
    let partner = ready_partner(&engine, "Contoso", "reseller").await;
    let registration = Uuid::now_v7();
    let command = || {
        envelope(
            Some("reg-0001"),
            partner_actor(partner),
            submit(registration, partner, "globex.com", "analytics", "reseller"),
        )
    };

    let first = engine.execute(command()).await.expect("first");
    assert!(first.reply.ok, "{:?}", first.reply);
    assert!(!first.replayed);
    let before = log_len(&store).await;

    let second = engine.execute(command()).await.expect("second");
    assert!(second.replayed, "the second call is recognised as a replay");
    assert_eq!(
        second.reply, first.reply,
        "the second caller gets the first reply"
    );
    assert_eq!(log_len(&store).await, before, "one effect only");

    // A rejected command replays its rejection too.
    let bad = || {
        envelope(
            Some("approve-x"),
            partner_actor(partner),
            approve(registration, "globex.com"),
        )
    };
    let rejected = engine.execute(bad()).await.expect("rejected");
    assert!(
        !rejected.reply.ok,
        "a partner cannot approve its own registration"
    );
    let again = engine.execute(bad()).await.expect("rejected again");
    assert_eq!(again.reply, rejected.reply);
    assert!(again.replayed);

    // The same key with a different command for the same account is refused, not
    // silently replayed.
    let other = envelope(
        Some("reg-0001"),
        partner_actor(partner),
        submit(
            Uuid::now_v7(),
            partner,
            "globex.com",
            "forecasting",
            "reseller",
        ),
    );
    let err = engine
        .execute(other)
        .await
        .expect_err("key reuse is refused");
    assert_eq!(err.code(), "idempotency_key_reused");
    assert_eq!(
        log_len(&store).await,
        before + 1,
        "nothing written for it (the one more is the rejected approval)"
    );

    // A key is recorded in the stream of the boundary its command addresses (the log
    // holds it; no backend keeps keys beside the events): for another account it is
    // another command (docs/API.md, idempotency).
    let elsewhere = engine
        .execute(envelope(
            Some("reg-0001"),
            partner_actor(partner),
            submit(
                Uuid::now_v7(),
                partner,
                "initech.com",
                "analytics",
                "reseller",
            ),
        ))
        .await
        .expect("another account");
    assert!(!elsewhere.replayed);

    // Keys are scoped to the actor: another partner's identical key is its own command.
    let rival = ready_partner(&engine, "Fabrikam", "reseller").await;
    let theirs = engine
        .execute(envelope(
            Some("reg-0001"),
            partner_actor(rival),
            submit(
                Uuid::now_v7(),
                rival,
                "initech.com",
                "analytics",
                "reseller",
            ),
        ))
        .await
        .expect("rival");
    assert!(
        !theirs.replayed,
        "another partner never receives this partner's reply"
    );
}

#[tokio::test]
async fn idempotent_on_memory_store() {
    same_key_same_reply(MemoryStore::new()).await;
}

#[tokio::test]
async fn idempotent_on_sqlite_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    same_key_same_reply(SqliteStore::open(dir.path().join("idem.db")).expect("open")).await;
}
