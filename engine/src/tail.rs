//! The log's newest events, read from the store and decoded once for every follower of
//! one process.
//!
//! Why: `dealreg serve` runs a follower per projection and the follow-up reactor, and each
//! read every new event from the store and decoded it itself, so one append was read and
//! decoded six times; under load that was a fifth of the service's CPU. Followers woken by
//! the same appends ask for the same events within milliseconds of each other: the first
//! one's read is kept, decoded, and the others are answered from it.
//!
//! What it never does is answer differently from the store: a reader behind what is kept
//! reads the store itself, and the end of the log is taken from the store (a read that
//! found nothing), shared only for [`END_FRESH`] and only while this process's appends
//! have not moved the head since; appends by other processes on the same store are seen
//! at a follower's next poll, as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dealreg_domain::Event;
use dealreg_events::{EventStore, GlobalPosition};

use crate::codec::decode_event;
use crate::engine::EngineError;

/// One event of the log, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub position: GlobalPosition,
    pub event: Event,
}

/// How many decoded events a tail keeps by default: far more than followers drift apart
/// (a few milliseconds of appends), few enough to stay a few MiB.
pub const KEPT: usize = 8_192;

/// How long a read that found the end of the log answers for other readers asking from
/// the same position (when this process appended nothing since): about the time
/// followers woken by one burst of appends take to arrive.
pub const END_FRESH: Duration = Duration::from_millis(5);

/// The newest events of one store, decoded, shared by the followers of one process.
pub struct LogTail<S> {
    store: S,
    capacity: usize,
    kept: tokio::sync::Mutex<Kept>,
    store_reads: AtomicU64,
}

#[derive(Default)]
struct Kept {
    /// Consecutive events of the log, in position order, ending at `end` when that is set.
    events: VecDeque<Arc<Decoded>>,
    /// The last read that found nothing after a position: the position and when.
    end: Option<(GlobalPosition, Instant)>,
}

impl Kept {
    /// The position just before the first kept event and the last kept one.
    fn span(&self) -> Option<(GlobalPosition, GlobalPosition)> {
        let first = self.events.front()?;
        let last = self.events.back()?;
        Some((
            GlobalPosition(first.position.0.saturating_sub(1)),
            last.position,
        ))
    }
}

impl<S: EventStore> LogTail<S> {
    /// A tail of `store` keeping [`KEPT`] events.
    pub fn new(store: S) -> Self {
        Self::keeping(store, KEPT)
    }

    /// A tail of `store` keeping `capacity` decoded events (0: keeps none, every read goes
    /// to the store).
    pub fn keeping(store: S, capacity: usize) -> Self {
        LogTail {
            store,
            capacity,
            kept: tokio::sync::Mutex::new(Kept::default()),
            store_reads: AtomicU64::new(0),
        }
    }

    /// The store the tail reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many reads went to the store so far (each answered every reader waiting).
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// Up to `max` events after `after`, decoded, in position order; empty at the end of
    /// the log. A reader within or at the end of what is kept is answered from it (at most
    /// up to its end, so a page may be short of `max` before the end of the log).
    pub async fn read_after(
        &self,
        after: GlobalPosition,
        max: usize,
    ) -> Result<Vec<Arc<Decoded>>, EngineError> {
        let max = max.max(1);
        let mut kept = self.kept.lock().await;
        let span = kept.span();
        if let Some((before_first, last)) = span {
            if after >= before_first && after < last {
                // Positions may skip numbers: find the first kept event after `after`.
                let from = kept.events.partition_point(|d| d.position <= after);
                return Ok(kept.events.range(from..).take(max).cloned().collect());
            }
        }
        let at_end = span.is_none_or(|(_, last)| after >= last);
        if !at_end {
            // Behind what is kept (a follower catching up from its checkpoint): it reads
            // the store itself, and the others are not held up by its reads.
            drop(kept);
            return self.read_store(after, max).await;
        }
        if let Some((end, at)) = kept.end {
            let appended_since = *self.store.head().borrow() > end;
            if end == after && !appended_since && at.elapsed() < END_FRESH {
                return Ok(Vec::new());
            }
        }
        // At (or beyond) the end of what is kept: this read is the one the others wait for.
        let page = self.read_store(after, max).await?;
        // A page short of `max` ends where the log ended when it was read.
        let end = page.last().map_or(after, |last| last.position);
        if self.capacity > 0 && !page.is_empty() {
            if span.is_some_and(|(_, last)| after > last) {
                // A reader ahead of what was kept starts a new run of kept events.
                kept.events.clear();
            }
            kept.events.extend(page.iter().cloned());
            let over = kept.events.len().saturating_sub(self.capacity);
            kept.events.drain(..over);
        }
        kept.end = (page.len() < max).then(|| (end, Instant::now()));
        Ok(page)
    }

    async fn read_store(
        &self,
        after: GlobalPosition,
        max: usize,
    ) -> Result<Vec<Arc<Decoded>>, EngineError> {
        self.store_reads.fetch_add(1, Ordering::Relaxed);
        let page = self.store.read_all(after, max).await?;
        page.iter()
            .map(|recorded| {
                Ok(Arc::new(Decoded {
                    position: recorded.position,
                    event: decode_event(recorded)?,
                }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_events::memory::MemoryStore;
    use dealreg_events::{AppendRequest, ExpectedVersion, NewEvent, StreamWrite};

    fn offboarded(n: usize) -> NewEvent {
        let event = Event::PartnerOffboarded {
            partner_id: dealreg_domain::PartnerId(uuid::Uuid::from_u128(n as u128)),
            reason: format!("reason {n}"),
            open_registrations: Vec::new(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: event.event_type().to_string(),
            data: serde_json::to_vec(&event).unwrap_or_else(|e| panic!("encode: {e}")),
            metadata: format!("{{\"schema\":{}}}", crate::codec::EVENT_SCHEMA_VERSION).into_bytes(),
        }
    }

    async fn append(store: &MemoryStore, n: usize) {
        store
            .append(AppendRequest {
                idempotency: None,
                writes: vec![StreamWrite {
                    stream: format!("partner-{n}"),
                    expected: ExpectedVersion::NoStream,
                    events: vec![offboarded(n)],
                }],
            })
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
    }

    async fn positions(tail: &LogTail<MemoryStore>, after: u64, max: usize) -> Vec<u64> {
        let page = tail.read_after(GlobalPosition(after), max).await;
        let page = page.unwrap_or_else(|e| panic!("read: {e}"));
        page.iter().map(|d| d.position.0).collect()
    }

    #[tokio::test]
    async fn readers_of_the_same_events_share_one_read_of_the_store() {
        let store = MemoryStore::new();
        for n in 0..10 {
            append(&store, n).await;
        }
        let tail = LogTail::new(store.clone());
        let direct = store.read_all(GlobalPosition(4), 100).await.expect("read");
        let first = tail.read_after(GlobalPosition(4), 100).await.expect("read");
        assert_eq!(tail.store_reads(), 1);
        for _ in 0..5 {
            let again = tail.read_after(GlobalPosition(4), 100).await.expect("read");
            assert_eq!(again, first);
        }
        assert_eq!(
            tail.store_reads(),
            1,
            "the other readers were answered from the tail"
        );
        let expected: Vec<Decoded> = direct
            .iter()
            .map(|r| Decoded {
                position: r.position,
                event: decode_event(r).expect("decode"),
            })
            .collect();
        let got: Vec<Decoded> = first.iter().map(|d| (**d).clone()).collect();
        assert_eq!(got, expected, "the same events the store holds, decoded");
        // Within the kept events, from any position, up to `max`.
        assert_eq!(positions(&tail, 6, 2).await, vec![7, 8]);
        assert_eq!(positions(&tail, 9, 100).await, vec![10]);
        assert_eq!(tail.store_reads(), 1);
    }

    #[tokio::test]
    async fn the_end_of_the_log_is_shared_only_until_this_process_appends() {
        let store = MemoryStore::new();
        append(&store, 0).await;
        let tail = LogTail::new(store.clone());
        assert_eq!(positions(&tail, 0, 10).await, vec![1]);
        assert!(positions(&tail, 1, 10).await.is_empty());
        let reads = tail.store_reads();
        assert!(positions(&tail, 1, 10).await.is_empty());
        assert_eq!(tail.store_reads(), reads, "a fresh end is shared");
        append(&store, 1).await;
        assert_eq!(
            positions(&tail, 1, 10).await,
            vec![2],
            "an append is seen at once"
        );
        // And an end that is no longer fresh is read again.
        assert!(positions(&tail, 2, 10).await.is_empty());
        let reads = tail.store_reads();
        tokio::time::sleep(END_FRESH * 2).await;
        assert!(positions(&tail, 2, 10).await.is_empty());
        assert_eq!(tail.store_reads(), reads + 1);
    }

    #[tokio::test]
    async fn a_reader_behind_or_ahead_of_the_kept_events_gets_the_stores_answer() {
        let store = MemoryStore::new();
        for n in 0..20 {
            append(&store, n).await;
        }
        let tail = LogTail::keeping(store.clone(), 5);
        assert_eq!(
            positions(&tail, 10, 10).await,
            (11..=20).collect::<Vec<_>>()
        );
        // Kept: 16..=20. Behind them, the store answers.
        assert_eq!(positions(&tail, 2, 3).await, vec![3, 4, 5]);
        assert_eq!(positions(&tail, 15, 3).await, vec![16, 17, 18]);
        let reads = tail.store_reads();
        assert_eq!(positions(&tail, 12, 2).await, vec![13, 14]);
        assert_eq!(tail.store_reads(), reads + 1);
        // Nothing kept: every read goes to the store, and answers the same.
        let none = LogTail::keeping(store.clone(), 0);
        assert_eq!(positions(&none, 18, 10).await, vec![19, 20]);
        assert_eq!(positions(&none, 18, 10).await, vec![19, 20]);
        assert_eq!(none.store_reads(), 2);
    }
}
