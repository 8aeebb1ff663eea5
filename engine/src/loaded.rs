//! A boundary's folded state as the engine keeps it: the state, where its stream ends,
//! and the idempotency keys of the commands that wrote it.
//!
//! Why a module of its own: the engine decides on it and the state cache keeps it; neither
//! owns the other.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use dealreg_domain::{evolve, Actor, Boundary, Event, State};
use dealreg_events::{ExpectedVersion, StreamRevision, StreamTip};

/// What the commands that wrote a stream with an idempotency key wrote: the reply of a
/// retry is rebuilt from these revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The command's fingerprint (`None` in logs written before it was recorded: any
    /// command with the key counts as the same).
    pub fingerprint: Option<String>,
    /// The stream's last event before the command's (`None`: they were its first).
    pub after: Option<StreamTip>,
    pub first: StreamRevision,
    pub last: StreamRevision,
}

/// A boundary's folded state, where its stream ends, and the idempotency keys of the
/// commands that wrote it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: State,
    /// The stream's last event (`None`: the stream has none).
    pub tip: Option<StreamTip>,
    /// When the newest event folded into the state was decided.
    pub newest: Option<DateTime<Utc>>,
    /// Record key (`<actor scope>/<key>`) -> what that command wrote to this stream.
    pub keys: HashMap<String, KeyRecord>,
    /// When the state was last known to be the stream's: read, or written by this engine.
    pub checked_at: Instant,
}

impl Loaded {
    /// Brings the state forward by `events` appended after its tip and ending at `tip`.
    pub(crate) fn advance(
        &mut self,
        events: &[Event],
        tip: StreamTip,
        key: Option<((String, Option<String>), StreamRevision)>,
    ) {
        for event in events {
            evolve(&mut self.state, event);
            self.newest = self.newest.max(Some(event.at()));
        }
        let before = self.tip.replace(tip.clone());
        if let Some(((key, fingerprint), first)) = key {
            self.note_key(key, fingerprint, before, first, tip.revision);
        }
        self.checked_at = Instant::now();
    }

    pub(crate) fn initial(boundary: &Boundary) -> Loaded {
        Loaded {
            state: State::initial(boundary),
            tip: None,
            newest: None,
            keys: HashMap::new(),
            checked_at: Instant::now(),
        }
    }

    /// The revision of the last event folded into the state.
    pub fn version(&self) -> Option<StreamRevision> {
        self.tip.as_ref().map(|t| t.revision)
    }

    pub(crate) fn expected(&self) -> ExpectedVersion {
        ExpectedVersion::after(self.tip.as_ref())
    }

    /// Folds one stored event of the stream (its metadata names the command's key).
    pub(crate) fn fold(&mut self, recorded: &dealreg_events::RecordedEvent, event: &Event) {
        evolve(&mut self.state, event);
        self.newest = self.newest.max(Some(event.at()));
        let before = self.tip.replace(StreamTip::of(recorded));
        if let Some((key, fingerprint)) = key_of(&recorded.metadata) {
            self.note_key(
                key,
                fingerprint,
                before,
                recorded.revision,
                recorded.revision,
            );
        }
    }

    /// Records that the command with `key` wrote revisions `first..=last`, after `before`.
    fn note_key(
        &mut self,
        key: String,
        fingerprint: Option<String>,
        before: Option<StreamTip>,
        first: StreamRevision,
        last: StreamRevision,
    ) {
        self.keys
            .entry(key)
            .and_modify(|r| r.last = r.last.max(last))
            .or_insert(KeyRecord {
                fingerprint,
                after: before,
                first,
                last,
            });
    }
}

/// The idempotency record key and fingerprint an event's metadata names, if any.
fn key_of(metadata: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Keyed {
        actor: Actor,
        idempotency_key: Option<String>,
        #[serde(default)]
        fingerprint: Option<String>,
    }
    // Most events carry no key: skip parsing them.
    if !metadata
        .windows(b"\"idempotency_key\"".len())
        .any(|w| w == b"\"idempotency_key\"")
    {
        return None;
    }
    let keyed: Keyed = serde_json::from_slice(metadata).ok()?;
    let key = keyed.idempotency_key?;
    Some((
        idempotency_record_key(&keyed.actor, &key),
        keyed.fingerprint,
    ))
}

/// The key an idempotency key is recorded under for an actor: keys are scoped to the
/// actor, so two partners' keys never meet and one partner can never receive another's
/// reply (invariant 7).
pub fn idempotency_record_key(actor: &Actor, key: &str) -> String {
    format!("{}/{}", actor_scope(actor), key)
}

fn actor_scope(actor: &Actor) -> String {
    match actor {
        Actor::Partner { partner_id, .. } => format!("partner:{partner_id}"),
        Actor::Vendor { .. } => "vendor".to_string(),
        Actor::System { .. } => "system".to_string(),
    }
}
