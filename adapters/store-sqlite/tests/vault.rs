//! The key vault file: keys are durable and shared between handles (processes), one per
//! address even when many ask at once, and a forgotten key is gone from every handle and
//! from the file's bytes.

use std::sync::Arc;

use chrono::Utc;
use dealreg_store_sqlite::{vault_path, SqliteVault};
use dealreg_vault::{KeyMaterial, KeyVault};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn bytes_of_vault(store: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = vault_path(store).into_os_string();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(&name) {
            all.extend(bytes);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_get_one_key_per_address_and_it_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let vault = Arc::new(SqliteVault::open(&store, KeyMaterial::Random).unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let vault = Arc::clone(&vault);
            tokio::spawn(async move {
                let mut keys = Vec::new();
                for i in 0..40 {
                    let address = format!("buyer{}@acme.com", (i + t) % 20);
                    let key = vault.key_for(&address, Utc::now()).await.unwrap();
                    keys.push((address, key));
                }
                keys
            })
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for task in tasks {
        for (address, key) in task.await.unwrap() {
            let first = seen.entry(address).or_insert_with(|| key.clone());
            assert_eq!(*first, key, "one address, one key");
        }
    }
    assert_eq!(vault.len().unwrap(), 20);
    drop(vault);
    let reopened = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    for (address, key) in &seen {
        assert_eq!(reopened.known(address).unwrap().as_ref(), Some(key));
        assert_eq!(reopened.key_of(key.person).await.unwrap(), Some(key.key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_forgotten_through_one_handle_is_gone_from_the_other_and_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let serving = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let dana = serving
        .key_for("Dana.Reyes@acme.com", Utc::now())
        .await
        .unwrap();
    let lee = serving.key_for("lee@acme.com", Utc::now()).await.unwrap();
    serving.flush().unwrap();
    // Warm the serving handle's cache, as a running `serve` would have.
    assert!(serving.known("dana.reyes@acme.com").unwrap().is_some());
    assert!(contains(&bytes_of_vault(&store), b"dana.reyes@acme.com"));

    let operator = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    assert_eq!(
        operator
            .forget(" DANA.REYES@acme.com ", Utc::now())
            .await
            .unwrap(),
        Some(dana.person)
    );
    assert_eq!(
        operator
            .forget("dana.reyes@acme.com", Utc::now())
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        serving.known("dana.reyes@acme.com").unwrap(),
        None,
        "the cache was dropped"
    );
    assert_eq!(serving.key_of(dana.person).await.unwrap(), None);
    assert_eq!(serving.key_of(lee.person).await.unwrap(), Some(lee.key));
    drop(serving);
    drop(operator);
    let bytes = bytes_of_vault(&store);
    assert!(
        !contains(&bytes, b"dana.reyes@acme.com"),
        "the address is gone from the file"
    );
    assert!(
        !contains(&bytes, &dana.key),
        "the key is gone from the file"
    );
    assert!(contains(&bytes, &lee.key), "other keys stay");

    let again = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let new_dana = again
        .key_for("dana.reyes@acme.com", Utc::now())
        .await
        .unwrap();
    assert_ne!(new_dana.person, dana.person);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_vault_reads_keys_and_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    assert!(SqliteVault::open_read_only(&store).unwrap().is_none());
    let vault = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let dana = vault.key_for("dana@acme.com", Utc::now()).await.unwrap();
    drop(vault);
    let reader = SqliteVault::open_read_only(&store).unwrap().unwrap();
    assert_eq!(reader.key_of(dana.person).await.unwrap(), Some(dana.key));
    assert!(reader.key_for("lee@acme.com", Utc::now()).await.is_err());
    assert!(reader.forget("dana@acme.com", Utc::now()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_record_a_crash_lost_is_kept_and_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let vault = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let dana = vault.key_for("dana@acme.com", Utc::now()).await.unwrap();
    drop(vault);
    // A power loss took the (unsynced) record of the address: the key looks unhanded.
    let conn = rusqlite::Connection::open(vault_path(&store)).unwrap();
    conn.execute(
        "UPDATE person_keys SET email = NULL, state = 'reserved' WHERE person = ?1",
        [dana.person.to_string()],
    )
    .unwrap();
    drop(conn);
    let reopened = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    assert_eq!(
        reopened.key_of(dana.person).await.unwrap(),
        Some(dana.key),
        "still readable"
    );
    for n in 0..40 {
        let other = reopened
            .key_for(&format!("p{n}@acme.com"), Utc::now())
            .await
            .unwrap();
        assert_ne!(
            other.person, dana.person,
            "a key possibly in use is never handed out again"
        );
    }
    assert!(reopened
        .forget_person(dana.person, Utc::now())
        .await
        .unwrap());
    assert_eq!(reopened.key_of(dana.person).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_handed_out_but_not_yet_recorded_is_dropped_when_another_process_destroys_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let serving = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let dana = serving.key_for("dana@acme.com", Utc::now()).await.unwrap();
    // Its record is not written yet: another process finds the person by the contact.
    let operator = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    assert_eq!(operator.known("dana@acme.com").unwrap(), None);
    assert!(operator
        .forget_person(dana.person, Utc::now())
        .await
        .unwrap());
    assert_eq!(serving.key_of(dana.person).await.unwrap(), None);
    let again = serving.key_for("dana@acme.com", Utc::now()).await.unwrap();
    assert_ne!(
        again.person, dana.person,
        "the destroyed key is never used again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cache_bound_every_address_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let vault = SqliteVault::open(&store, KeyMaterial::Random).unwrap();
    let at = Utc::now();
    let first = vault.key_for("first@acme.com", at).await.unwrap();
    let mut last = None;
    // More persons than one handle caches (65,536): the cache starts over on the way.
    for n in 0..66_000 {
        last = Some(vault.key_for(&format!("p{n}@acme.com"), at).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(vault.key_for("first@acme.com", at).await.unwrap(), first);
    assert_eq!(vault.key_for("p65999@acme.com", at).await.unwrap(), last);
    assert_eq!(vault.key_of(first.person).await.unwrap(), Some(first.key));
    assert_eq!(vault.len().unwrap(), 66_001);
}
