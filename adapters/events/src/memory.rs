//! An in-memory backend for engine unit tests: the same semantics as SQLite (expected
//! versions, atomic appends to one or several streams, hash chains), no durability.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::chain::link;
use crate::rules::{check_expected, validate};
use crate::subscription::{polling, Polling};
use crate::{
    Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamAppend, StreamTip,
};

#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    /// stream -> indexes into `events`, in revision order
    streams: HashMap<String, Vec<usize>>,
}

impl Log {
    fn tip(&self, stream: &str) -> Option<&RecordedEvent> {
        self.streams
            .get(stream)
            .and_then(|ix| ix.last())
            .map(|i| &self.events[*i])
    }

    fn check(&self, stream: &str, expected: &ExpectedVersion) -> Result<(), StoreError> {
        check_expected(stream, expected, self.tip(stream).map(|e| e.revision))
    }

    /// Writes an append whose expectation was checked.
    fn write(&mut self, stream: &str, events: Vec<NewEvent>) -> Appended {
        let tip = self.tip(stream).map(|e| (e.revision, e.hash.clone()));
        let links = link(stream, tip.as_ref().map(|(r, h)| (*r, h.as_str())), &events);
        let mut revisions = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        for (event, l) in events.into_iter().zip(links) {
            let position = Position::at(self.events.len() as u64 + 1);
            let index = self.events.len();
            self.events.push(RecordedEvent {
                stream: stream.to_string(),
                revision: l.revision,
                position,
                event_id: event.event_id,
                event_type: event.event_type,
                data: event.data,
                metadata: event.metadata,
                prev_hash: l.prev_hash,
                hash: l.hash,
            });
            self.streams
                .entry(stream.to_string())
                .or_default()
                .push(index);
            revisions.push(l.revision);
            positions.push(position);
        }
        let last = self.events.last().map(StreamTip::of);
        Appended {
            stream: stream.to_string(),
            revisions,
            positions,
            tip: last.unwrap_or(StreamTip {
                revision: 0,
                position: Position::ORIGIN,
                hash: String::new(),
            }),
        }
    }
}

#[derive(Clone)]
pub struct MemoryStore {
    log: Arc<Mutex<Log>>,
    head: Arc<watch::Sender<Position>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let (head, _) = watch::channel(Position::ORIGIN);
        MemoryStore {
            log: Arc::new(Mutex::new(Log::default())),
            head: Arc::new(head),
        }
    }

    fn appended(&self, log: std::sync::MutexGuard<'_, Log>) {
        let head = Position::at(log.events.len() as u64);
        drop(log);
        self.head.send_replace(head);
    }
}

impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        validate(stream, &events)?;
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.check(stream, &expected)?;
        let appended = log.write(stream, events);
        self.appended(log);
        Ok(appended)
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = after.map_or(0, |t| t.revision + 1);
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
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(after.commit())
            .unwrap_or(usize::MAX)
            .min(log.events.len());
        Ok(log.events[start..].iter().take(max).cloned().collect())
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        polling(
            self.clone(),
            self.head.subscribe(),
            after,
            Polling {
                page: 512,
                poll: Duration::from_secs(1),
            },
        )
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Position::at(log.events.len() as u64))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dense_positions: true,
            multi_stream_append: true,
            capacity_in_one_append: true,
        }
    }

    async fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, StoreError> {
        for (i, a) in appends.iter().enumerate() {
            validate(&a.stream, &a.events)?;
            if appends[..i].iter().any(|b| b.stream == a.stream) {
                return Err(StoreError::InvalidAppend(format!(
                    "stream `{}` appears twice in one append; put its events in one part",
                    a.stream
                )));
            }
        }
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        for a in &appends {
            log.check(&a.stream, &a.expected)?;
        }
        let written = appends
            .into_iter()
            .map(|a| log.write(&a.stream, a.events))
            .collect();
        self.appended(log);
        Ok(written)
    }
}
