//! The JetStream key vault against a real nats-server: one key per address however many
//! processes ask at once, the key found by its person, and `forget` leaving no copy of the
//! key or the address in the server's files.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use dealreg_nats_testkit::NatsServer;
use dealreg_vault::{KeyMaterial, KeyVault};
use dealreg_vault_jetstream::{JetStreamVault, VaultOptions};

async fn open(url: &str) -> JetStreamVault {
    let client = async_nats::connect(url).await.expect("connect");
    JetStreamVault::open(client, VaultOptions::default())
        .await
        .expect("open the vault")
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_per_address_found_by_its_person_and_forgotten_everywhere() {
    let server = NatsServer::start();
    let url = server.url().to_string();
    // Two vaults (two processes) ask for the same address at once.
    let (a, b) = (Arc::new(open(&url).await), Arc::new(open(&url).await));
    let email = "Dana.Buyer@Example.com";
    let now = Utc::now();
    let (ka, kb) = {
        let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
        let ta = tokio::spawn(async move { a2.key_for(email, now).await });
        let tb = tokio::spawn(async move { b2.key_for(email, now).await });
        (
            ta.await.expect("join").expect("key"),
            tb.await.expect("join").expect("key"),
        )
    };
    // Each handle read no record and handed out a key of its own reserve, or one found the
    // other's record: once both records are written, one person is the address's, and the
    // loser's key (a contact may be sealed with it) stays readable under its own person.
    a.flush().await.expect("flush a");
    b.flush().await.expect("flush b");
    let (wa, wb) = (
        a.key_for(email, now).await.expect("a again"),
        b.key_for(email, now).await.expect("b again"),
    );
    assert_eq!(wa, wb, "one person and one key for one address");
    assert!(wa == ka || wa == kb, "the winner is one of the two");
    let loser = if ka == wa { kb.clone() } else { ka.clone() };
    assert_eq!(
        a.key_of(loser.person).await.expect("key_of"),
        Some(loser.key),
        "the losing key stays readable"
    );
    let ka = wa;
    assert_eq!(
        a.key_for(" dana.buyer@example.com ", now)
            .await
            .expect("again"),
        ka,
        "addresses compare trimmed and in lower case"
    );
    assert_eq!(b.key_of(ka.person).await.expect("key_of"), Some(ka.key));
    let other = a.key_for("someone@example.com", now).await.expect("other");
    assert_ne!(other.person, ka.person);

    // The address is never in the server's files, only its keyed hash.
    let store = server.store_dir();
    for (path, bytes) in files(&store) {
        assert!(
            !holds(&bytes, b"dana.buyer@example.com"),
            "{} names the address",
            path.display()
        );
    }
    assert!(
        files(&store).iter().any(|(_, bytes)| holds(bytes, &ka.key)),
        "the key is stored before it is forgotten (else the check below proves nothing)"
    );

    // Forgotten through the other process: the key is gone everywhere, at once (one
    // replica: no Raft log keeps it).
    assert_eq!(b.forget(email, now).await.expect("forget"), Some(ka.person));
    assert_eq!(a.key_of(ka.person).await.expect("key_of"), None);
    // The loser's key, if there was one, is what `dealreg forget` finds by opening the
    // contacts in the log: it destroys it by person.
    if loser != ka {
        assert!(b
            .forget_person(loser.person, now)
            .await
            .expect("forget the loser"));
        assert_eq!(a.key_of(loser.person).await.expect("key_of"), None);
    }
    assert_eq!(b.forget(email, now).await.expect("forget again"), None);
    for (path, bytes) in files(&store) {
        assert!(
            !holds(&bytes, &ka.key) && !holds(&bytes, &loser.key),
            "{} still holds a forgotten key",
            path.display()
        );
    }
    assert_eq!(
        a.key_of(other.person).await.expect("key_of"),
        Some(other.key),
        "other people's keys stay"
    );
    // The address gets a new person when it registers again.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let again = a.key_for(email, Utc::now()).await.expect("new key");
    assert_ne!(again.person, ka.person);

    // Forgetting by person (a record the vault lost): the key goes, the address then
    // gets a new one.
    assert!(a
        .forget_person(again.person, now)
        .await
        .expect("forget person"));
    assert!(!a
        .forget_person(again.person, now)
        .await
        .expect("forget person again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_vault_makes_the_same_keys_and_a_missing_one_is_not_created_by_a_reader() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let missing = JetStreamVault::open(
        client.clone(),
        VaultOptions {
            create: false,
            ..VaultOptions::default()
        },
    )
    .await;
    assert!(missing.is_err(), "a reader does not create the vault");
    let seeded = JetStreamVault::open(
        client,
        VaultOptions {
            material: KeyMaterial::Seeded(7),
            ..VaultOptions::default()
        },
    )
    .await
    .expect("open");
    let at = Utc::now();
    let key = seeded.key_for("demo@example.com", at).await.expect("key");
    let expected = KeyMaterial::Seeded(7)
        .new_key("demo@example.com", at)
        .expect("derive");
    assert_eq!(
        key, expected,
        "a seeded vault derives its keys from the seed"
    );
}

/// The persons whose key the stream holds (`dealreg.keys.person.<id>` subjects).
async fn persons_stored(client: &async_nats::Client) -> HashSet<String> {
    use futures_util::TryStreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("DEALREG_KEYS").await.expect("the stream");
    let mut subjects = stream
        .info_with_subjects("dealreg.keys.person.>")
        .await
        .expect("its subjects");
    let mut out = HashSet::new();
    while let Some((subject, _)) = subjects.try_next().await.expect("a subject") {
        out.insert(
            subject
                .trim_start_matches("dealreg.keys.person.")
                .to_string(),
        );
    }
    out
}

/// Messages the vault's stream holds.
async fn messages(client: &async_nats::Client) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("DEALREG_KEYS").await.expect("the stream");
    stream.info().await.expect("its info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_address_costs_one_read_and_no_awaited_write_once_the_reserve_is_made() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let vault = open(server.url()).await;
    let now = Utc::now();
    // The first new address makes the reserve: one round trip for all its keys.
    let first = vault.key_for("first@example.com", now).await.expect("key");
    assert_eq!(vault.requests().reserves, 1);
    assert_eq!(vault.reserved(), 15, "16 made ahead, one handed out");
    vault.flush().await.expect("flush");
    let stored = messages(&client).await;

    let before = vault.requests();
    let second = vault.key_for("second@example.com", now).await.expect("key");
    let after = vault.requests();
    assert_ne!(second.person, first.person);
    assert_eq!(
        after.awaited - before.awaited,
        1,
        "one read (is the address recorded?) and nothing else awaited"
    );
    assert_eq!(
        after.reserves, before.reserves,
        "the key came from the reserve"
    );
    assert_eq!(vault.reserved(), 14);
    // Known now: handed out again without a request.
    assert_eq!(
        vault
            .try_key_for("Second@Example.com", now)
            .expect("try")
            .as_ref(),
        Some(&second)
    );
    assert_eq!(vault.requests().awaited, after.awaited);
    // Its record is written in the background: one message more, nothing else.
    vault.flush().await.expect("flush");
    assert_eq!(vault.pending_records(), 0);
    assert!(vault.requests().records >= 2);
    assert_eq!(
        messages(&client).await,
        stored + 1,
        "the address record only"
    );

    // Before the reserve (and still for a seeded vault): a read and two awaited writes.
    let seeded = JetStreamVault::open(
        client.clone(),
        VaultOptions {
            material: KeyMaterial::Seeded(3),
            ..VaultOptions::default()
        },
    )
    .await
    .expect("open seeded");
    let before = seeded.requests();
    seeded.key_for("third@example.com", now).await.expect("key");
    assert_eq!(seeded.requests().awaited - before.awaited, 3);
    assert_eq!(seeded.requests().reserves, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_retires_the_old_reserve_and_two_handles_never_share_a_key() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let now = Utc::now();
    // A handle that dies without closing: its reserve stays in the stream.
    let crashed = open(server.url()).await;
    let used = crashed
        .key_for("early@example.com", now)
        .await
        .expect("key");
    crashed.flush().await.expect("flush");
    let before = persons_stored(&client).await;
    assert_eq!(before.len(), 16, "the crashed handle's reserve is stored");
    std::mem::forget(crashed);

    // Two handles opened after it hand out keys for many new addresses at once.
    let (b, c) = (
        Arc::new(open(server.url()).await),
        Arc::new(open(server.url()).await),
    );
    let mut tasks = Vec::new();
    for (n, vault) in [(0, &b), (1, &c)] {
        let vault = Arc::clone(vault);
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for i in 0..40 {
                let email = format!("buyer{i}.{n}@example.com");
                keys.push(vault.key_for(&email, now).await.expect("key"));
            }
            keys
        }));
    }
    let mut handed = Vec::new();
    for task in tasks {
        handed.extend(task.await.expect("join"));
    }
    let persons: HashSet<_> = handed
        .iter()
        .map(|k| k.person.simple().to_string())
        .collect();
    let keys: HashSet<_> = handed.iter().map(|k| k.key).collect();
    assert_eq!(persons.len(), 80, "no person handed out twice");
    assert_eq!(keys.len(), 80, "no key handed out twice");
    assert!(
        persons.is_disjoint(&before),
        "no key of the earlier reserve is handed out again"
    );
    // The retired keys stay readable (a contact may be sealed with one whose record the
    // crash lost), the one used among them too.
    let now_stored = persons_stored(&client).await;
    assert!(before.is_subset(&now_stored));
    assert_eq!(b.key_of(used.person).await.expect("key_of"), Some(used.key));
    // The one recorded is found by its address from another handle.
    assert_eq!(
        c.key_for("early@example.com", now).await.expect("key"),
        used
    );

    // A handle that closes deletes the keys it made ahead and never handed out: only
    // the keys in use stay.
    b.close().await.expect("close b");
    c.close().await.expect("close c");
    assert_eq!(b.reserved(), 0);
    let after_close = persons_stored(&client).await;
    assert_eq!(
        after_close.len(),
        16 + 80,
        "the crashed reserve (kept) and the 80 keys handed out"
    );
    assert!(persons.is_subset(&after_close));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_in_the_background_is_found_by_a_second_handle() {
    let server = NatsServer::start();
    let (a, b) = (open(server.url()).await, open(server.url()).await);
    let now = Utc::now();
    let key = a.key_for("late@example.com", now).await.expect("key");
    // Not flushed: the writer task writes it on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a.pending_records() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the record was not written within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(a.requests().records >= 1);
    let before = b.requests();
    assert_eq!(
        b.key_for("LATE@example.com", now).await.expect("key"),
        key,
        "the second handle finds the first one's person"
    );
    assert_eq!(
        b.requests().awaited - before.awaited,
        2,
        "the record and the key read"
    );
    assert_eq!(b.requests().reserves, 0, "no key made for it");
    // Forgetting through the second handle reaches it.
    assert_eq!(
        b.forget("late@example.com", now).await.expect("forget"),
        Some(key.person)
    );
    assert_eq!(a.key_of(key.person).await.expect("key_of"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_racing_for_new_addresses_settle_on_one_person_each_and_keep_the_losers_keys() {
    let server = NatsServer::start();
    let (a, b) = (
        Arc::new(open(server.url()).await),
        Arc::new(open(server.url()).await),
    );
    let now = Utc::now();
    let emails: Vec<String> = (0..30).map(|i| format!("race{i}@example.com")).collect();
    let mut first = Vec::new();
    for email in &emails {
        let (a2, b2, e1, e2) = (Arc::clone(&a), Arc::clone(&b), email.clone(), email.clone());
        let ta = tokio::spawn(async move { a2.key_for(&e1, now).await });
        let tb = tokio::spawn(async move { b2.key_for(&e2, now).await });
        first.push((
            ta.await.expect("join").expect("key"),
            tb.await.expect("join").expect("key"),
        ));
    }
    a.flush().await.expect("flush a");
    b.flush().await.expect("flush b");
    let mut lost = 0;
    for (email, (ka, kb)) in emails.iter().zip(&first) {
        // Losers learn the winner when their record is refused: no waiting for the cache.
        let wa = a.key_for(email, now).await.expect("a");
        let wb = b.key_for(email, now).await.expect("b");
        assert_eq!(wa, wb, "{email}: one person once the records are written");
        assert!(wa == *ka || wa == *kb);
        if ka != kb {
            lost += 1;
            let loser = if wa == *ka { kb } else { ka };
            assert_eq!(
                a.key_of(loser.person).await.expect("key_of"),
                Some(loser.key),
                "{email}: the losing key stays readable"
            );
        }
    }
    eprintln!("{lost} of 30 addresses were given two persons in the race");
}
