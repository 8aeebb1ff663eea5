//! An in-memory backend for engine unit tests: the same semantics as SQLite (expected
//! versions, atomic multi-stream appends, idempotency, hash chains), no durability.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::chain::{event_hash, GENESIS_HASH};
use crate::rules::{check_expected, validate};
use crate::{
    AppendOutcome, AppendRequest, EventStore, GlobalPosition, RecordedEvent, StoreError,
    StreamRevision, WriteOutcome,
};

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    /// stream -> indexes into `events`, in revision order
    streams: HashMap<String, Vec<usize>>,
    idempotency: HashMap<String, (String, AppendOutcome)>,
    event_ids: HashSet<uuid::Uuid>,
}

#[derive(Clone)]
pub struct MemoryStore {
    log: Arc<Mutex<Log>>,
    head: Arc<watch::Sender<GlobalPosition>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let (head, _) = watch::channel(GlobalPosition::ORIGIN);
        MemoryStore {
            log: Arc::new(Mutex::new(Log::default())),
            head: Arc::new(head),
        }
    }

    fn append_now(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        validate(&request)?;
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(idem) = &request.idempotency {
            if let Some((fingerprint, outcome)) = log.idempotency.get(&idem.key) {
                if *fingerprint != idem.fingerprint {
                    return Err(StoreError::IdempotencyKeyReused {
                        key: idem.key.clone(),
                    });
                }
                let mut outcome = outcome.clone();
                outcome.deduplicated = true;
                return Ok(outcome);
            }
        }
        // Event ids are unique across the whole request, as SQLite's UNIQUE(event_id) makes them.
        let mut ids = HashSet::new();
        for write in &request.writes {
            let actual = log
                .streams
                .get(&write.stream)
                .and_then(|ix| ix.last())
                .map(|i| log.events[*i].revision);
            check_expected(&write.stream, write.expected, actual)?;
            for event in &write.events {
                if log.event_ids.contains(&event.event_id) || !ids.insert(event.event_id) {
                    return Err(StoreError::InvalidAppend(format!(
                        "event id {} is already stored; every event needs a new id",
                        event.event_id
                    )));
                }
            }
        }
        let mut writes = Vec::with_capacity(request.writes.len());
        for write in request.writes {
            let (mut revision, mut prev_hash): (StreamRevision, String) =
                match log.streams.get(&write.stream).and_then(|ix| ix.last()) {
                    Some(i) => (log.events[*i].revision + 1, log.events[*i].hash.clone()),
                    None => (0, GENESIS_HASH.to_string()),
                };
            let mut outcome = WriteOutcome {
                stream: write.stream.clone(),
                revisions: Vec::new(),
                positions: Vec::new(),
            };
            for event in write.events {
                let position = GlobalPosition(log.events.len() as u64 + 1);
                let hash = event_hash(
                    &prev_hash,
                    &write.stream,
                    revision,
                    &event.event_id,
                    &event.event_type,
                    &event.data,
                    &event.metadata,
                );
                let index = log.events.len();
                log.event_ids.insert(event.event_id);
                log.events.push(RecordedEvent {
                    stream: write.stream.clone(),
                    revision,
                    position,
                    event_id: event.event_id,
                    event_type: event.event_type,
                    data: event.data,
                    metadata: event.metadata,
                    prev_hash: prev_hash.clone(),
                    hash: hash.clone(),
                });
                log.streams
                    .entry(write.stream.clone())
                    .or_default()
                    .push(index);
                outcome.revisions.push(revision);
                outcome.positions.push(position);
                prev_hash = hash;
                revision += 1;
            }
            writes.push(outcome);
        }
        let outcome = AppendOutcome {
            writes,
            deduplicated: false,
        };
        if let Some(idem) = request.idempotency {
            log.idempotency
                .insert(idem.key, (idem.fingerprint, outcome.clone()));
        }
        let head = GlobalPosition(log.events.len() as u64);
        drop(log);
        self.head.send_replace(head);
        Ok(outcome)
    }
}

impl EventStore for MemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.append_now(request)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: StreamRevision,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(log
            .streams
            .get(stream)
            .map(|ix| {
                ix.iter()
                    .map(|i| &log.events[*i])
                    .filter(|e| e.revision >= from)
                    .take(max)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(after.0)
            .unwrap_or(usize::MAX)
            .min(log.events.len());
        Ok(log.events[start..].iter().take(max).cloned().collect())
    }

    fn head(&self) -> watch::Receiver<GlobalPosition> {
        self.head.subscribe()
    }
}
