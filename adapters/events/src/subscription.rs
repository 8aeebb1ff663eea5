//! Catch-up then live subscriptions, generic over every backend.
//!
//! Why generic: the only thing a backend must provide is `read_all` and a head watch. The
//! subscription always re-reads from the store after a wake-up, so it can neither miss an
//! event (the store is the truth) nor deliver one twice (it resumes after the last position
//! it delivered).

use std::collections::VecDeque;

use crate::{EventStore, GlobalPosition, RecordedEvent, StoreError};

const BATCH: usize = 512;

pub struct Subscription<S> {
    store: S,
    position: GlobalPosition,
    buffer: VecDeque<RecordedEvent>,
    head: tokio::sync::watch::Receiver<GlobalPosition>,
}

impl<S: EventStore> Subscription<S> {
    pub fn new(store: S, after: GlobalPosition) -> Self {
        let head = store.head();
        Subscription {
            store,
            position: after,
            buffer: VecDeque::new(),
            head,
        }
    }

    /// The position of the last event delivered (where to resume after a restart).
    pub fn position(&self) -> GlobalPosition {
        self.position
    }

    /// The next event after the last one delivered; waits for new appends when caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.position;
                return Ok(event);
            }
            // Mark the current head as seen before reading, so an append that lands
            // between the read and the wait still wakes us.
            let _ = *self.head.borrow_and_update();
            let page = self.store.read_all(self.position, BATCH).await?;
            if !page.is_empty() {
                self.buffer.extend(page);
                continue;
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }
}
