//! `dealreg forget --email ADDRESS`: erases a person's contact data by destroying their key.
//!
//! Why nothing in the log changes: events are immutable and hash-chained. The contact
//! was stored sealed under the person's key (`<store>-keys`); once that key is gone the
//! ciphertext in the store, in every export and in every backup is unreadable by anyone,
//! while every chain and signed checkpoint (they cover the ciphertext) still verifies.
//! Contacts written before schema 3 were stored in clear: this job finds them and says so,
//! because erasing those would mean rewriting the log.
//!
//! Destroying the key is not always the end of it on disk: a replicated JetStream vault's
//! servers keep the key's write in their replication logs until they compact them. The
//! report says which (`erasure`: complete, or pending on N replicas until when), `--wait`
//! waits for it, and `--status --person ID` asks again later.

use std::process::ExitCode;

use chrono::Utc;
use dealreg_domain::values::ContactOnRecord;
use dealreg_engine::{decode_event, personal};
use dealreg_events::{LogPages, Position};
use dealreg_vault::{normalise_email, Erasure, KeyMaterial, KeyVault, MemoryVault};
use serde::Serialize;

/// What `forget` did, printed as one JSON line (and a sentence on stderr).
#[derive(Debug, Serialize)]
struct Forgotten {
    email: String,
    /// The person whose key was destroyed; `null` when the vault had none for the address.
    person: Option<uuid::Uuid>,
    /// Sealed contacts of that person in the log: unreadable from now on.
    erased: u64,
    /// Positions of contacts naming the address that were recorded in clear (before
    /// schema 3) and stay readable.
    still_in_clear: Vec<dealreg_events::Position>,
    /// Whether every copy of the destroyed key is gone from the vault's disks; `null`
    /// when no key was destroyed.
    erasure: Option<ErasureReport>,
}

/// [`Erasure`] as printed.
#[derive(Debug, Serialize)]
struct ErasureReport {
    /// `complete`, `pending` or `held` (the key exists: not forgotten).
    state: &'static str,
    /// Servers whose disks may still hold a copy (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<usize>,
    /// When the copies are due to be gone (pending only; `null` when no bound is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<chrono::DateTime<Utc>>,
    /// Why it is complete, or what it waits for.
    #[serde(skip_serializing_if = "String::is_empty")]
    why: String,
}

impl ErasureReport {
    fn of(erasure: &Erasure) -> Self {
        match erasure {
            Erasure::Held => ErasureReport {
                state: "held",
                replicas: None,
                until: None,
                why: "the vault holds this person's key".into(),
            },
            Erasure::Complete { basis } => ErasureReport {
                state: "complete",
                replicas: None,
                until: None,
                why: basis.clone(),
            },
            Erasure::Pending {
                replicas,
                until,
                reason,
            } => ErasureReport {
                state: "pending",
                replicas: Some(*replicas),
                until: *until,
                why: reason.clone(),
            },
        }
    }

    /// One sentence for stderr.
    fn sentence(&self, person: uuid::Uuid) -> String {
        match (self.state, self.until) {
            ("pending", Some(until)) => format!(
                "erasure pending on {} replica(s) until {until} at most: {}; check with `dealreg forget --status --person {person}`",
                self.replicas.unwrap_or(0),
                self.why
            ),
            ("pending", None) => format!(
                "erasure pending on {} replica(s), with no bound known: {}; check with `dealreg forget --status --person {person}`",
                self.replicas.unwrap_or(0),
                self.why
            ),
            ("complete", _) => format!("erasure complete: {}", self.why),
            _ => format!("not forgotten: {}", self.why),
        }
    }
}

/// The erasure of `persons`' keys, waiting (with `wait`) while one is pending with a bound.
async fn erasure_of(
    vault: &std::sync::Arc<dyn KeyVault>,
    persons: &[uuid::Uuid],
    wait: bool,
) -> Result<Option<(uuid::Uuid, Erasure)>, String> {
    let mut worst: Option<(uuid::Uuid, Erasure)> = None;
    for &person in persons {
        loop {
            let erasure = vault.erasure(person).await.map_err(|e| e.to_string())?;
            if let (
                true,
                Erasure::Pending {
                    until: Some(until), ..
                },
            ) = (wait, &erasure)
            {
                let left = (*until - Utc::now()).to_std().unwrap_or_default();
                tracing::info!(%person, %until, "waiting for the servers to compact their replication logs");
                tokio::time::sleep(left + std::time::Duration::from_secs(1)).await;
                continue;
            }
            let rank = |e: &Erasure| match e {
                Erasure::Complete { .. } => 0,
                Erasure::Pending { .. } => 1,
                Erasure::Held => 2,
            };
            if worst.as_ref().is_none_or(|(_, w)| rank(&erasure) > rank(w)) {
                worst = Some((person, erasure));
            }
            break;
        }
    }
    Ok(worst)
}

/// `dealreg forget --status --person ID`: whether the erasure of the person's key is
/// complete. Exit 0 when it is, 3 when it is pending or the key is still held.
pub async fn status(
    spec: &super::store::StoreSpec,
    person: uuid::Uuid,
) -> Result<ExitCode, String> {
    if !super::store::has_vault(spec).await {
        return Err("the store has no key vault: no contact was ever sealed in it".into());
    }
    let vault = super::store::vault(spec, KeyMaterial::Random).await?;
    let erasure = vault.erasure(person).await.map_err(|e| e.to_string())?;
    let report = ErasureReport::of(&erasure);
    println!(
        "{}",
        serde_json::json!({ "person": person, "erasure": report })
    );
    eprintln!("person {person}: {}", report.sentence(person));
    Ok(match erasure {
        Erasure::Complete { .. } => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    })
}

pub async fn run(
    spec: &super::store::StoreSpec,
    email: &str,
    wait: bool,
) -> Result<ExitCode, String> {
    let email = normalise_email(email);
    if !email.contains('@') {
        return Err(format!(
            "`{email}` is not an e-mail address; pass the address the contact was registered with"
        ));
    }
    let store = super::store::open_read(spec).await?;
    // A store without a vault never sealed a contact: nothing to destroy, and no vault is
    // created for it; its log is still read for contacts recorded in clear.
    let vault: std::sync::Arc<dyn KeyVault> = if super::store::has_vault(spec).await {
        super::store::vault(spec, KeyMaterial::Random).await?
    } else {
        tracing::info!("the store has no key vault: no contact was ever sealed in it");
        std::sync::Arc::new(MemoryVault::new(KeyMaterial::Random))
    };
    let person = vault
        .forget(&email, Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    let mut report = Forgotten {
        email: email.clone(),
        person,
        erased: 0,
        still_in_clear: Vec::new(),
        erasure: None,
    };
    // The vault's record of the address is not the only way to find the person: a record
    // a power loss took (see the vault) leaves the key, and the contact still names the
    // address. So every sealed contact that still opens is read, and any that names the
    // address has its key destroyed too.
    let mut forgotten: std::collections::HashSet<uuid::Uuid> = person.into_iter().collect();
    let mut pages = LogPages::new(&store, Position::ORIGIN)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for recorded in page.iter().filter(|r| {
            r.event_type == "registration_submitted" || r.event_type == "alert_subscription_set"
        }) {
            let event = decode_event(recorded).map_err(|e| e.to_string())?;
            let Some(contact) = event.contact() else {
                continue;
            };
            match contact {
                ContactOnRecord::Sealed(sealed) if forgotten.contains(&sealed.person) => {
                    report.erased += 1;
                }
                ContactOnRecord::Sealed(sealed) => {
                    let Some(key) = vault
                        .key_of(sealed.person)
                        .await
                        .map_err(|e| e.to_string())?
                    else {
                        continue;
                    };
                    let names_it = personal::open(sealed, &key)
                        .is_ok_and(|contact| normalise_email(&contact.email) == email);
                    if names_it {
                        vault
                            .forget_person(sealed.person, Utc::now())
                            .await
                            .map_err(|e| e.to_string())?;
                        tracing::info!(person = %sealed.person, position = %recorded.position, "a sealed contact names the address under a key the vault had no record of; destroyed it too");
                        forgotten.insert(sealed.person);
                        report.erased += 1;
                    }
                }
                ContactOnRecord::Clear(contact) if normalise_email(&contact.email) == email => {
                    report.still_in_clear.push(recorded.position);
                }
                _ => {}
            }
        }
    }
    let person = person.or_else(|| forgotten.iter().next().copied());
    report.person = person;
    let mut persons: Vec<uuid::Uuid> = forgotten.iter().copied().collect();
    persons.sort();
    let erasure = erasure_of(&vault, &persons, wait).await?;
    report.erasure = erasure.as_ref().map(|(_, e)| ErasureReport::of(e));
    let erasure_sentence = erasure
        .as_ref()
        .zip(report.erasure.as_ref())
        .map(|((who, _), r)| format!("; {}", r.sentence(*who)))
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    match (person, report.still_in_clear.is_empty()) {
        (Some(person), true) => eprintln!(
            "forgot {email} (person {person}): its key is destroyed; {} sealed contact(s) in the log can no longer be read by anyone, and every hash chain still verifies{erasure_sentence}",
            report.erased
        ),
        (None, true) => eprintln!(
            "the key vault holds no key for {email} (never registered here, or already forgotten); nothing in the log names it in clear"
        ),
        (_, false) => {
            eprintln!(
                "{email}: {} contact(s) were recorded in clear before schema 3 (positions {:?}) and stay readable: erasing them means rewriting the log (export, redact, import, re-sign), which no dealreg job does",
                report.still_in_clear.len(),
                report.still_in_clear
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
