//! The JetStream key vault against a real nats-server: one key per address however many
//! processes ask at once, the key found by its person, and `forget` leaving no copy of the
//! key or the address in the server's files.

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
    assert_eq!(ka, kb, "one person and one key for one address");
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
    assert_eq!(b.forget(email, now).await.expect("forget again"), None);
    for (path, bytes) in files(&store) {
        assert!(
            !holds(&bytes, &ka.key),
            "{} still holds the forgotten key",
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
