//! The log pump: one subscription to the log per process, each new event decoded once,
//! kept for every follower of the process (the views, the reactor) to read.
//!
//! Why: `dealreg serve` runs a follower per projection and the follow-up reactor. Each
//! used to read every new event from the store and decode it itself, so one append was
//! read and decoded six times (a fifth of the service's CPU under load), and each found
//! new events by polling. Now one task follows the store's own subscription
//! ([`EventStore::subscribe_all`]: a JetStream consumer, a KurrentDB `$all` subscription,
//! SQLite's wake-up and poll), decodes each page once and keeps the newest events;
//! followers read what is kept and wait on [`LogTail::newest`] for more.
//!
//! What it never does is answer differently from the store: a reader behind what is kept
//! (a follower catching up from an old checkpoint) reads the store itself, through the
//! same subscription mechanism, without holding up the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dealreg_domain::Event;
use dealreg_events::{EventStore, Position};
use futures_util::StreamExt;
use tokio::sync::watch;

use dealreg_engine::codec::decode_event;
use dealreg_engine::engine::EngineError;

/// One event of the log, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub position: Position,
    pub event: Event,
}

/// How many decoded events a tail keeps by default: far more than followers drift apart
/// (a few milliseconds of appends), few enough to stay a few MiB.
pub const KEPT: usize = 8_192;

/// How long the pump waits before subscribing again after its subscription failed.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// The newest events of one store, decoded, shared by the followers of one process.
pub struct LogTail<S> {
    store: S,
    shared: Arc<Shared>,
    pump: tokio::task::JoinHandle<()>,
}

struct Shared {
    capacity: usize,
    kept: Mutex<Kept>,
    /// The position of the newest event the pump delivered.
    newest: watch::Sender<Position>,
    store_reads: AtomicU64,
}

#[derive(Default)]
struct Kept {
    /// Consecutive events of the log, in position order, ending at the newest.
    events: VecDeque<Arc<Decoded>>,
    /// The position just before the first kept event: every event after it up to the
    /// newest is kept.
    from: Position,
    /// The pump's last failure to decode, if the log holds an event it cannot read.
    failed: Option<String>,
}

impl<S> Drop for LogTail<S> {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl<S: EventStore> LogTail<S> {
    /// A tail of `store` keeping [`KEPT`] events, following the log from its head now.
    pub async fn new(store: S) -> Result<Self, EngineError> {
        Self::keeping(store, KEPT).await
    }

    /// A tail of `store` keeping `capacity` decoded events (0: keeps none, every read goes
    /// to the store).
    pub async fn keeping(store: S, capacity: usize) -> Result<Self, EngineError> {
        let head = store.last_position().await?;
        let (newest, _) = watch::channel(head);
        let shared = Arc::new(Shared {
            capacity,
            kept: Mutex::new(Kept {
                from: head,
                ..Kept::default()
            }),
            newest,
            store_reads: AtomicU64::new(0),
        });
        let pump = tokio::spawn(pump(store.clone(), Arc::clone(&shared), head));
        Ok(LogTail {
            store,
            shared,
            pump,
        })
    }

    /// The store the tail reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The position of the newest event the tail has seen, and every later one: what a
    /// follower waits on.
    pub fn newest(&self) -> watch::Receiver<Position> {
        self.shared.newest.subscribe()
    }

    /// How many reads of readers behind the kept events went to the store so far.
    pub fn store_reads(&self) -> u64 {
        self.shared.store_reads.load(Ordering::Relaxed)
    }

    /// Up to `max` events after `after`, decoded, in position order; empty at the newest
    /// event the tail has seen. A reader within what is kept is answered from it.
    pub async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<Arc<Decoded>>, EngineError> {
        let max = max.max(1);
        {
            let kept = self
                .shared
                .kept
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(reason) = &kept.failed {
                return Err(EngineError::Decode(dealreg_engine::codec::DecodeError {
                    stream: "the log".into(),
                    position: *self.shared.newest.borrow(),
                    reason: reason.clone(),
                }));
            }
            if after >= kept.from {
                // Positions may skip numbers: find the first kept event after `after`.
                let start = kept.events.partition_point(|d| d.position <= after);
                return Ok(kept.events.range(start..).take(max).cloned().collect());
            }
        }
        // Behind what is kept (a follower catching up from its checkpoint): it reads the
        // store itself, and the others are not held up by its reads.
        self.shared.store_reads.fetch_add(1, Ordering::Relaxed);
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

/// Follows the store's subscription from `after`, decoding each page once into `shared`;
/// subscribes again from the last event it kept when the subscription fails.
async fn pump<S: EventStore>(store: S, shared: Arc<Shared>, mut after: Position) {
    loop {
        let mut pages = store.subscribe_all(after);
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "the log subscription failed; subscribing again");
                    break;
                }
            };
            let mut decoded = Vec::with_capacity(page.len());
            for recorded in &page {
                match decode_event(recorded) {
                    Ok(event) => decoded.push(Arc::new(Decoded {
                        position: recorded.position,
                        event,
                    })),
                    Err(e) => {
                        tracing::error!(error = %e, "the log holds an event this build cannot decode; the views stop here");
                        shared
                            .kept
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .failed = Some(e.to_string());
                        return;
                    }
                }
            }
            let Some(last) = decoded.last().map(|d| d.position) else {
                continue;
            };
            {
                let mut kept = shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
                kept.events.extend(decoded);
                let over = kept.events.len().saturating_sub(shared.capacity);
                if over > 0 {
                    kept.events.drain(..over);
                    kept.from = kept
                        .events
                        .front()
                        .map_or(last, |first| before(first.position, over));
                }
                if shared.capacity == 0 {
                    kept.from = last;
                }
            }
            after = last;
            shared.newest.send_replace(last);
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// A position just before `first` (the kept events start after it): the first kept
/// event's own position minus one where positions are numbers, which only a reader at
/// exactly that position could tell apart, and it then reads the store.
fn before(first: Position, _dropped: usize) -> Position {
    match first.sequence() {
        Some(n) => Position::at(n.saturating_sub(1)),
        None => Position::pair(first.commit(), first.prepare().saturating_sub(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_events::memory::MemoryStore;
    use dealreg_events::{ExpectedVersion, NewEvent};

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
            metadata: format!(
                "{{\"schema\":{}}}",
                dealreg_engine::codec::EVENT_SCHEMA_VERSION
            )
            .into_bytes(),
        }
    }

    async fn append(store: &MemoryStore, n: usize) {
        store
            .append(
                &format!("partner-{n}"),
                ExpectedVersion::NoStream,
                vec![offboarded(n)],
            )
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
    }

    async fn positions(tail: &LogTail<MemoryStore>, after: u64, max: usize) -> Vec<u64> {
        let page = tail.read_after(Position::at(after), max).await;
        let page = page.unwrap_or_else(|e| panic!("read: {e}"));
        page.iter().map(|d| d.position.commit()).collect()
    }

    async fn seen(tail: &LogTail<MemoryStore>, position: u64) {
        let mut newest = tail.newest();
        tokio::time::timeout(
            Duration::from_secs(10),
            newest.wait_for(|p| *p >= Position::at(position)),
        )
        .await
        .unwrap_or_else(|_| panic!("the pump did not reach position {position}"))
        .unwrap_or_else(|e| panic!("the pump stopped: {e}"));
    }

    #[tokio::test]
    async fn new_events_are_decoded_once_for_every_reader() {
        let store = MemoryStore::new();
        append(&store, 0).await;
        let tail = LogTail::new(store.clone()).await.expect("tail");
        for n in 1..=10 {
            append(&store, n).await;
        }
        seen(&tail, 11).await;
        let direct = store.read_all(Position::at(4), 100).await.expect("read");
        let first = tail.read_after(Position::at(4), 100).await.expect("read");
        for _ in 0..5 {
            let again = tail.read_after(Position::at(4), 100).await.expect("read");
            assert_eq!(again, first);
        }
        assert_eq!(
            tail.store_reads(),
            0,
            "every reader was answered from the tail"
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
        assert_eq!(positions(&tail, 6, 2).await, vec![7, 8]);
        assert_eq!(positions(&tail, 10, 100).await, vec![11]);
        assert!(positions(&tail, 11, 100).await.is_empty(), "the end");
        append(&store, 11).await;
        seen(&tail, 12).await;
        assert_eq!(positions(&tail, 11, 100).await, vec![12], "live");
    }

    #[tokio::test]
    async fn a_reader_behind_the_kept_events_gets_the_stores_answer() {
        let store = MemoryStore::new();
        for n in 0..5 {
            append(&store, n).await;
        }
        let tail = LogTail::keeping(store.clone(), 5).await.expect("tail");
        for n in 5..20 {
            append(&store, n).await;
        }
        seen(&tail, 20).await;
        // Kept: 16..=20. Before the tail started, and behind what it keeps, the store
        // answers.
        assert_eq!(positions(&tail, 2, 3).await, vec![3, 4, 5]);
        assert_eq!(positions(&tail, 12, 2).await, vec![13, 14]);
        let reads = tail.store_reads();
        assert_eq!(positions(&tail, 15, 3).await, vec![16, 17, 18]);
        assert_eq!(tail.store_reads(), reads, "kept events come from memory");
        // Nothing kept: every read goes to the store, and answers the same.
        let none = LogTail::keeping(store.clone(), 0).await.expect("tail");
        assert_eq!(positions(&none, 18, 10).await, vec![19, 20]);
        assert_eq!(none.store_reads(), 1);
    }
}
