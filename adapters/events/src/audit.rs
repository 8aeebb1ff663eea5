//! The auditor's check of a log, on any backend: every stream's chain, the chain over the
//! global order, and checkpoints signed with a key kept outside the store.
//!
//! Why all three: a stream's hash chain shows an edited event, but not a stream whose last
//! event was deleted, events moved between positions, or a cut global tail; the log chain
//! (every event commits to the one before it in the global order) shows those once a
//! checkpoint pins it. Neither shows a log regenerated with fresh, consistent chains: only
//! a log hash signed earlier with a key the store never held can.
//!
//! Why the log chain counts events instead of hashing positions: positions belong to a
//! backend (a KurrentDB log has other ones than the SQLite file it was imported from), the
//! order of the events does not. A checkpoint signs "the log hash after the n-th event", so
//! it verifies on every backend the log is moved to. On SQLite, where positions are
//! numbered 1, 2, 3..., the n-th event sits at position n, so checkpoints signed before
//! this change still verify.
//!
//! Everything here reads through [`EventStore`] and writes nothing. Records a backend keeps
//! beside the events (SQLite's stream tips and the highest position assigned) are that
//! backend's to check; it adds its findings to the [`Report`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::chain::{event_hash, log_hash, GENESIS_HASH};
use crate::hex::{decode as unhex, encode as hex};
use crate::{EventStore, LogPages, Position, RecordedEvent, StoreError, StreamTip};

/// What went wrong reading the log (not what is wrong in it: that is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read the log: {0}")]
    Store(#[from] StoreError),
    #[error("a signing key must be 32 bytes as 64 hex digits: {0}")]
    BadKey(String),
}

/// A log hash after a number of events, signed with a key kept outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// How many events the log held: the hash is the log chain's after the last of them.
    /// (Files written before this field was renamed call it `position`; on SQLite the two
    /// are the same number.)
    #[serde(alias = "position")]
    pub events: u64,
    pub log_hash: String,
    pub signed_at: DateTime<Utc>,
    /// The verifying key, hex.
    pub public_key: String,
    /// Ed25519 over [`SignedCheckpoint::message`], hex.
    pub signature: String,
}

impl SignedCheckpoint {
    /// The bytes signed: versioned, one field a line.
    pub fn message(events: u64, log_hash: &str, signed_at: &DateTime<Utc>) -> Vec<u8> {
        format!(
            "dealreg-checkpoint-v1\n{events}\n{log_hash}\n{}",
            signed_at.to_rfc3339()
        )
        .into_bytes()
    }
}

/// A signing key from its 64 hex digits.
pub fn signing_key(hex_seed: &str) -> Result<SigningKey, AuditError> {
    let bytes: [u8; 32] = unhex(hex_seed.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditError::BadKey("not 64 hex digits".into()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A verifying key from its 64 hex digits.
pub fn verifying_key(hex_key: &str) -> Result<VerifyingKey, AuditError> {
    let bytes: [u8; 32] = unhex(hex_key.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditError::BadKey("not 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| AuditError::BadKey(e.to_string()))
}

/// The hex of a key's public half.
pub fn public_hex(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

/// The chain over the global order, fed the log's events in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChain {
    events: u64,
    hash: String,
}

impl Default for LogChain {
    fn default() -> Self {
        LogChain {
            events: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

impl LogChain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Chains the next event of the log (by its stored hash) and gives the log hash now.
    pub fn observe(&mut self, event: &RecordedEvent) -> &str {
        self.events += 1;
        self.hash = log_hash(&self.hash, self.events, &event.hash);
        &self.hash
    }

    /// Events chained so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The log hash after the events chained so far.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Signs the log's head, reading only what was appended since its last signature: what a
/// service that signs every few seconds keeps.
#[derive(Debug, Default)]
pub struct HeadSigner {
    chain: LogChain,
    after: Position,
}

impl HeadSigner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the log up to its head and signs it with `key` at `now`.
    pub async fn sign<S: EventStore>(
        &mut self,
        store: &S,
        key: &SigningKey,
        now: DateTime<Utc>,
    ) -> Result<SignedCheckpoint, AuditError> {
        let mut pages = LogPages::new(store, self.after).await?;
        while let Some(page) = pages.next_page().await? {
            for event in &page {
                self.chain.observe(event);
                self.after = event.position;
            }
        }
        let (events, log) = (self.chain.events(), self.chain.hash().to_string());
        let signature = key.sign(&SignedCheckpoint::message(events, &log, &now));
        Ok(SignedCheckpoint {
            events,
            log_hash: log,
            signed_at: now,
            public_key: public_hex(key),
            signature: hex(&signature.to_bytes()),
        })
    }

    /// Where the log stood when it last signed.
    pub fn position(&self) -> Position {
        self.after
    }
}

/// What kind of damage a finding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// Stored bytes differ from what their hash committed to.
    Altered,
    /// An event the chains never committed to.
    Inserted,
    /// Events missing: positions or revisions skipped, a stream gone.
    Removed,
    /// Events at other positions than the log committed them to.
    Reordered,
    /// The end cut off: of the log, or of a stream.
    Truncated,
    /// The log differs from a signed checkpoint: rewritten after it was signed.
    Rewritten,
    /// A record beside the events (tips, head) disagrees with them.
    Records,
    /// A checkpoint whose signature does not verify, or signed by another key.
    Signature,
}

impl Damage {
    /// The word a report prints.
    pub fn word(self) -> &'static str {
        match self {
            Damage::Altered => "altered",
            Damage::Inserted => "inserted",
            Damage::Removed => "removed",
            Damage::Reordered => "reordered",
            Damage::Truncated => "truncated",
            Damage::Rewritten => "rewritten",
            Damage::Records => "records",
            Damage::Signature => "signature",
        }
    }
}

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub damage: Damage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Which checkpoint (1-based, in the file's order), for `rewritten` and `signature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<usize>,
    pub detail: String,
}

impl Finding {
    /// A finding about the whole log (no stream, revision or position).
    pub fn of(damage: Damage, detail: String) -> Finding {
        Finding {
            damage,
            stream: None,
            revision: None,
            position: None,
            checkpoint: None,
            detail,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.damage.word())?;
        if let Some(n) = self.checkpoint {
            write!(f, " (checkpoint {n})")?;
        }
        if let Some(stream) = &self.stream {
            write!(f, " stream {stream}")?;
        }
        if let Some(revision) = self.revision {
            write!(f, " revision {revision}")?;
        }
        if let Some(position) = self.position {
            write!(f, " position {position}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub events: u64,
    pub streams: usize,
    pub head_position: Position,
    pub head_log_hash: String,
    pub checkpoints: usize,
    pub findings: Vec<Finding>,
    /// Each stream's last event as the walk found it, for a backend's own records check.
    #[serde(skip)]
    pub tips: BTreeMap<String, StreamTip>,
}

/// Checks the log of `store`: every stream's chain, the log's chain, gaps in the
/// positions where the backend numbers them densely, and every checkpoint (signed by
/// `pinned` when given, else by the key it names).
pub async fn verify<S: EventStore>(
    store: &S,
    checkpoints: &[SignedCheckpoint],
    pinned: Option<&VerifyingKey>,
) -> Result<Report, AuditError> {
    let dense = store.capabilities().dense_positions;
    let wanted: std::collections::HashSet<u64> = checkpoints.iter().map(|c| c.events).collect();
    let mut log_at: HashMap<u64, String> = HashMap::new();
    let mut findings = Vec::new();
    let mut tips: BTreeMap<String, StreamTip> = BTreeMap::new();
    let mut chain = LogChain::new();
    let mut last = Position::ORIGIN;
    let mut pages = LogPages::new(store, Position::ORIGIN).await?;
    while let Some(page) = pages.next_page().await? {
        for e in &page {
            check_event(e, dense, last, &tips, &mut findings);
            tips.insert(e.stream.clone(), StreamTip::of(e));
            chain.observe(e);
            if wanted.contains(&chain.events()) {
                log_at.insert(chain.events(), chain.hash().to_string());
            }
            last = e.position;
        }
    }
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        check_checkpoint(
            index + 1,
            checkpoint,
            pinned,
            &chain,
            &log_at,
            &mut findings,
        );
    }
    Ok(Report {
        events: chain.events(),
        streams: tips.len(),
        head_position: last,
        head_log_hash: chain.hash().to_string(),
        checkpoints: checkpoints.len(),
        findings,
        tips,
    })
}

/// One event against its own hash, its stream's chain so far and the position before it.
fn check_event(
    e: &RecordedEvent,
    dense: bool,
    last: Position,
    tips: &BTreeMap<String, StreamTip>,
    findings: &mut Vec<Finding>,
) {
    let at = |damage, detail: String| Finding {
        damage,
        stream: Some(e.stream.clone()),
        revision: Some(e.revision),
        position: Some(e.position),
        checkpoint: None,
        detail,
    };
    if dense && e.position.commit() > last.commit() + 1 {
        findings.push(Finding {
            position: Some(Position::at(last.commit() + 1)),
            ..Finding::of(
                Damage::Removed,
                format!(
                    "positions {}..={} are missing from the log",
                    last.commit() + 1,
                    e.position.commit() - 1
                ),
            )
        });
    }
    let recomputed = event_hash(
        &e.prev_hash,
        &e.stream,
        e.revision,
        &e.event_id,
        &e.event_type,
        &e.data,
        &e.metadata,
    );
    if recomputed != e.hash {
        findings.push(at(
            Damage::Altered,
            "the stored bytes differ from the event's hash: the event was edited".into(),
        ));
    }
    match tips.get(&e.stream) {
        None if e.revision != 0 => findings.push(at(
            Damage::Removed,
            format!(
                "the stream starts at revision {}: its first events are missing",
                e.revision
            ),
        )),
        None if e.prev_hash != GENESIS_HASH => findings.push(at(
            Damage::Inserted,
            "the stream's first event does not chain from the genesis hash".into(),
        )),
        Some(seen) if e.revision <= seen.revision => findings.push(at(
            Damage::Reordered,
            format!(
                "revision {} comes after revision {} in the log",
                e.revision, seen.revision
            ),
        )),
        Some(seen) if e.revision > seen.revision + 1 => findings.push(at(
            Damage::Removed,
            format!(
                "revisions {}..={} of the stream are missing",
                seen.revision + 1,
                e.revision - 1
            ),
        )),
        Some(seen) if e.prev_hash != seen.hash => findings.push(at(
            Damage::Inserted,
            "the event does not chain from the stream's previous event".into(),
        )),
        _ => {}
    }
}

fn check_checkpoint(
    number: usize,
    checkpoint: &SignedCheckpoint,
    pinned: Option<&VerifyingKey>,
    chain: &LogChain,
    log_at: &HashMap<u64, String>,
    findings: &mut Vec<Finding>,
) {
    let named = |damage, detail: String| Finding {
        checkpoint: Some(number),
        ..Finding::of(damage, detail)
    };
    let key = match verifying_key(&checkpoint.public_key) {
        Ok(key) => key,
        Err(e) => {
            findings.push(named(
                Damage::Signature,
                format!("the checkpoint's key cannot be read: {e}"),
            ));
            return;
        }
    };
    if pinned.is_some_and(|p| *p != key) {
        findings.push(named(
            Damage::Signature,
            "the checkpoint is signed by another key than the one given".into(),
        ));
        return;
    }
    let signature = unhex(&checkpoint.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    let message = SignedCheckpoint::message(
        checkpoint.events,
        &checkpoint.log_hash,
        &checkpoint.signed_at,
    );
    if signature.is_none_or(|s| key.verify(&message, &s).is_err()) {
        findings.push(named(
            Damage::Signature,
            "the signature does not verify: the checkpoint was altered".into(),
        ));
        return;
    }
    if checkpoint.events > chain.events() {
        findings.push(named(
            Damage::Truncated,
            format!(
                "the checkpoint signed a log of {} events, the log holds {}: its tail was removed",
                checkpoint.events,
                chain.events()
            ),
        ));
    } else if checkpoint.events > 0 {
        match log_at.get(&checkpoint.events) {
            Some(hash) if *hash == checkpoint.log_hash => {}
            _ => findings.push(named(
                Damage::Rewritten,
                format!(
                    "the log's hash after event {} is not the one signed on {}: the log was rewritten after this checkpoint (events removed, moved, inserted or edited before it)",
                    checkpoint.events,
                    checkpoint.signed_at.to_rfc3339()
                ),
            )),
        }
    }
}
