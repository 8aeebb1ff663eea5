//! Personal data in events: contacts are sealed before they are stored, and revealed (or
//! shown as erased) when a person reads them.
//!
//! Why here and not in the domain: sealing needs keys from the vault and randomness from
//! the world, and the domain does no I/O. A decision emits the contact in clear
//! ([`ContactOnRecord::Clear`]); the engine seals it with the person's key just before the
//! event is encoded, so the clear contact never reaches the store. What is stored is
//! ChaCha20-Poly1305 over the contact's JSON, with the person's id as associated data and a
//! nonce derived from the person and the event's id (unique per event, so a key never
//! seals twice under one nonce; and the seeded demo stays byte-identical).
//!
//! What counts as personal data here: the contact's name, e-mail address and phone
//! number. Company names, registrable domains, amounts and partner names are business
//! data about organisations, and stay in clear (rules and conflict checks read them).

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use dealreg_domain::values::{Contact, ContactOnRecord, ErasedContact, SealedContact};
use dealreg_domain::Event;
use dealreg_events::hex::{decode as from_hex, encode as to_hex};
use dealreg_vault::{normalise_email, KeyVault, PersonKey, VaultError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why a sealed contact could not be opened with the key its person has.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed contact is not hex")]
    NotHex,
    #[error("the sealed contact does not open under its person's key: it was altered (run `dealreg audit verify`)")]
    Inauthentic,
    #[error("the opened contact is not a contact: {0}")]
    NotAContact(String),
}

/// The addresses whose keys a list of events needs sealed: every event with a clear
/// contact (`registration_submitted`, `alert_subscription_set`).
pub fn addresses_to_seal(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| event.contact()?.email().map(normalise_email))
        .collect()
}

/// The keys of `addresses`, created in the vault where missing.
pub async fn keys_for(
    vault: &dyn KeyVault,
    addresses: &[String],
    at: chrono::DateTime<chrono::Utc>,
) -> Result<HashMap<String, PersonKey>, VaultError> {
    let mut keys = HashMap::with_capacity(addresses.len());
    for address in addresses {
        if keys.contains_key(address) {
            continue;
        }
        let key = match vault.try_key_for(address, at)? {
            Some(key) => key,
            None => vault.key_for(address, at).await?,
        };
        keys.insert(address.clone(), key);
    }
    Ok(keys)
}

/// The event as it is stored: a clear contact sealed with its person's key. `None` when
/// the event holds nothing to seal (store it as it is).
pub fn sealed_for_storage(
    event: &Event,
    keys: &HashMap<String, PersonKey>,
    event_id: Uuid,
) -> Result<Option<Event>, String> {
    let Some(ContactOnRecord::Clear(contact)) = event.contact() else {
        return Ok(None);
    };
    let key = keys.get(&normalise_email(&contact.email)).ok_or_else(|| {
        format!(
            "no key was fetched for the contact of a {} event",
            event.event_type()
        )
    })?;
    let sealed = ContactOnRecord::Sealed(seal(contact, key, event_id)?);
    let mut stored = event.clone();
    if let Some(contact) = stored.contact_mut() {
        *contact = sealed;
    }
    Ok(Some(stored))
}

fn nonce_for(person: Uuid, event_id: Uuid) -> [u8; 12] {
    let mut h = Sha256::new();
    h.update(b"dealreg contact nonce\0");
    h.update(person.as_bytes());
    h.update(event_id.as_bytes());
    let digest = h.finalize();
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&digest[..12]);
    nonce
}

/// Seals `contact` under `key` for the event `event_id`.
pub fn seal(contact: &Contact, key: &PersonKey, event_id: Uuid) -> Result<SealedContact, String> {
    let plaintext = serde_json::to_vec(contact).map_err(|e| e.to_string())?;
    let nonce = nonce_for(key.person, event_id);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.key));
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: key.person.as_bytes(),
            },
        )
        .map_err(|_| "the contact could not be sealed".to_string())?;
    Ok(SealedContact {
        person: key.person,
        nonce: to_hex(&nonce),
        ciphertext: to_hex(&ciphertext),
    })
}

/// Opens a sealed contact with its person's key.
pub fn open(sealed: &SealedContact, key: &[u8; 32]) -> Result<Contact, OpenError> {
    let nonce = from_hex(&sealed.nonce).ok_or(OpenError::NotHex)?;
    let ciphertext = from_hex(&sealed.ciphertext).ok_or(OpenError::NotHex)?;
    if nonce.len() != 12 {
        return Err(OpenError::NotHex);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: sealed.person.as_bytes(),
            },
        )
        .map_err(|_| OpenError::Inauthentic)?;
    serde_json::from_slice(&plaintext).map_err(|e| OpenError::NotAContact(e.to_string()))
}

/// Shows a stored event to a person: a sealed contact opened when its key exists, shown
/// as erased when the key was destroyed. A contact that does not open under an existing
/// key (altered bytes) stays sealed, with a warning: it is never shown as erased, which
/// would hide the damage.
pub async fn reveal(event: &mut Event, vault: &dyn KeyVault) -> Result<(), VaultError> {
    let Some(ContactOnRecord::Sealed(sealed)) = event.contact() else {
        return Ok(());
    };
    let person = sealed.person;
    let shown = match vault.key_of(person).await? {
        None => ContactOnRecord::Erased(ErasedContact {
            person: sealed.person,
        }),
        Some(key) => match open(sealed, &key) {
            Ok(contact) => ContactOnRecord::Clear(contact),
            Err(error) => {
                tracing::warn!(person = %sealed.person, %error, "a sealed contact did not open");
                return Ok(());
            }
        },
    };
    if let Some(contact) = event.contact_mut() {
        *contact = shown;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_vault::{KeyMaterial, MemoryVault};

    fn contact() -> Contact {
        Contact {
            name: "Dana Reyes".into(),
            email: "dana@acme.com".into(),
            phone: Some("+1 415 555 0100".into()),
        }
    }

    #[tokio::test]
    async fn a_sealed_contact_opens_only_under_its_key_and_person() {
        let vault = MemoryVault::new(KeyMaterial::Random);
        let key = vault
            .key_for("dana@acme.com", chrono::Utc::now())
            .await
            .unwrap();
        let event_id = Uuid::now_v7();
        let sealed = seal(&contact(), &key, event_id).unwrap();
        assert!(!sealed.ciphertext.contains("Dana"));
        assert_eq!(open(&sealed, &key.key).unwrap(), contact());
        // Another event gets another nonce.
        assert_ne!(
            seal(&contact(), &key, Uuid::now_v7()).unwrap().nonce,
            sealed.nonce
        );
        let other = vault
            .key_for("lee@acme.com", chrono::Utc::now())
            .await
            .unwrap();
        assert!(matches!(
            open(&sealed, &other.key),
            Err(OpenError::Inauthentic)
        ));
        let passed_off = SealedContact {
            person: other.person,
            ..sealed.clone()
        };
        assert!(matches!(
            open(&passed_off, &key.key),
            Err(OpenError::Inauthentic)
        ));
        let mut flipped = sealed.clone();
        flipped.ciphertext.replace_range(
            0..2,
            if &sealed.ciphertext[0..2] == "00" {
                "01"
            } else {
                "00"
            },
        );
        assert!(matches!(
            open(&flipped, &key.key),
            Err(OpenError::Inauthentic)
        ));
    }
}
