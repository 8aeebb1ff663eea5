//! Sixteen partners race to register and get approved for the same customer and product
//! line: exactly one protected registration results, every other attempt gets a coded
//! reason, and every outcome is in the log.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use dealreg_clock::ControlledClock;
use dealreg_engine::Engine;
use dealreg_events::{EventStore, Position};
use dealreg_store_sqlite::SqliteStore;
use support::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_racing_partners_end_with_exactly_one_protected_registration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("race.db")).expect("open store");
    let engine = Arc::new(
        Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
            .await
            .expect("engine opens"),
    );
    let mut partners = Vec::new();
    for i in 0..16 {
        partners.push(ready_partner(&engine, &format!("Racer {i}"), "reseller").await);
    }

    let (engine_before, writer_before) = (engine.stats(), store.stats());
    let mut tasks = Vec::new();
    for (i, partner) in partners.iter().copied().enumerate() {
        let engine = Arc::clone(&engine);
        tasks.push(tokio::spawn(async move {
            let registration = Uuid::now_v7();
            // Spell the domain differently per partner: it is still one customer account.
            let domain = if i % 2 == 0 {
                "https://www.Acme-Robotics.com/contact"
            } else {
                "sales.acme-robotics.com"
            };
            let submitted = must(
                engine
                    .execute(envelope(
                        Some(&format!("submit-{i}")),
                        partner_actor(partner),
                        submit(registration, partner, domain, "analytics", "reseller"),
                    ))
                    .await,
            );
            if !submitted.ok {
                return (registration, submitted, None);
            }
            let approved = must(
                engine
                    .execute(envelope(
                        Some(&format!("approve-{i}")),
                        channel_manager(),
                        approve(registration, "acme-robotics.com"),
                    ))
                    .await,
            );
            (registration, submitted, Some(approved))
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task joins"));
    }

    // The racers really raced: commands lost optimistic-concurrency races and were decided
    // again, and the writer committed several appends at once. Both are zero and one if the
    // commands ran one after another, so this test cannot pass on a serialised engine.
    let decided_again = engine.stats().decided_again - engine_before.decided_again;
    let writer = store.stats();
    let (jobs, commits) = (
        writer.jobs - writer_before.jobs,
        writer.commits - writer_before.commits,
    );
    assert!(
        decided_again >= 1,
        "no command lost a race, so nothing was concurrent"
    );
    assert!(
        jobs > commits,
        "several appends shared a commit: {jobs} appends in {commits} commits"
    );
    eprintln!("race: {decided_again} decisions again, {jobs} appends in {commits} commits");

    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(_, _, approved)| approved.as_ref().is_some_and(|a| a.ok))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one approval may win: {outcomes:#?}"
    );

    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, submitted, approved) in &outcomes {
        let refused = if !submitted.ok {
            Some(submitted)
        } else {
            approved.as_ref().filter(|a| !a.ok)
        };
        if let Some(reply) = refused {
            let error = reply
                .error
                .as_ref()
                .expect("a refused reply carries its error");
            assert!(!error.message.is_empty(), "every refusal explains itself");
            *codes.entry(error.code.to_string()).or_default() += 1;
            // On the account, the refusal; a slot a refused attempt had reserved in an
            // earlier round is listed too, taken and given back.
            let types = event_types(reply);
            let account: Vec<&String> = types
                .iter()
                .filter(|t| !t.starts_with("capacity_slot_"))
                .collect();
            assert_eq!(
                account,
                vec!["command_rejected"],
                "a refusal is recorded in the log"
            );
            let taken = types.iter().filter(|t| *t == "capacity_slot_taken").count();
            let released = types
                .iter()
                .filter(|t| *t == "capacity_slot_released")
                .count();
            assert_eq!(
                taken, released,
                "every slot a refusal took is given back: {types:?}"
            );
        }
    }
    assert_eq!(
        codes.values().sum::<usize>(),
        15,
        "every loser is answered with a code: {codes:?}"
    );
    for code in codes.keys() {
        assert!(
            ["already_protected", "duplicate_registration", "outranked"].contains(&code.as_str()),
            "unexpected refusal code {code}"
        );
    }

    // Every outcome is in the log: each reply's events are there, at the positions replied.
    let mut log = Vec::new();
    let mut after = Position::ORIGIN;
    loop {
        let page = store.read_all(after, 1000).await.expect("read log");
        let Some(last) = page.last() else { break };
        after = last.position;
        log.extend(page);
    }
    for (_, submitted, approved) in &outcomes {
        for reply in std::iter::once(submitted).chain(approved.iter()) {
            for e in &reply.events {
                let stored = log
                    .iter()
                    .find(|r| r.position == e.position)
                    .expect("replied event is stored");
                assert_eq!(stored.stream, e.stream);
                assert_eq!(stored.event_type, e.event.event_type());
            }
        }
    }
    let account_events: Vec<_> = log
        .iter()
        .filter(|r| r.stream == "account-acme-robotics.com")
        .collect();
    let approvals = account_events
        .iter()
        .filter(|r| r.event_type == "registration_approved")
        .count();
    assert_eq!(
        approvals, 1,
        "the log holds one approval for the product line"
    );
    let report = dealreg_events::chain::verify_log(&store)
        .await
        .expect("verify");
    assert!(
        report.breaks.is_empty(),
        "chains intact: {:?}",
        report.breaks
    );
}
