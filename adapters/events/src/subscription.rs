//! Catch-up then live subscriptions for backends that are read by polling a local file or
//! memory: a wake-up signal from this process's appends, a poll for other processes'.
//!
//! Why the store is read again after every wake-up: the signal only says "something may
//! have changed", so a lost signal can delay an event but never lose it, and an event
//! appended by another process (which sends no signal here) is found by the next poll.
//! While the reader works on one full page the next one is already being read (on the
//! blocking pool, for SQLite), so a rebuild folds and reads at the same time.

use std::time::Duration;

use futures_util::stream;
use tokio::sync::watch;

use crate::{EventStore, LogStream, Position, RecordedEvent, StoreError};

/// How a polling subscription reads.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    /// Events per read.
    pub page: usize,
    /// How long to wait for a wake-up before reading again anyway (other processes).
    pub poll: Duration,
}

type Reading = tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

struct State<S> {
    store: S,
    wake: watch::Receiver<Position>,
    after: Position,
    ahead: Option<Reading>,
    how: Polling,
}

/// A [`LogStream`] over `store` after `after`, woken by `wake` (the position of this
/// process's newest append) and polling every `how.poll`.
pub fn polling<S: EventStore>(
    store: S,
    wake: watch::Receiver<Position>,
    after: Position,
    how: Polling,
) -> LogStream {
    let state = State {
        store,
        wake,
        after,
        ahead: None,
        how: Polling {
            page: how.page.max(1),
            poll: how.poll,
        },
    };
    Box::pin(stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match next_page(&mut state).await {
            Ok(page) => Some((Ok(page), Some(state))),
            // The stream ends after its error.
            Err(e) => Some((Err(e), None)),
        }
    }))
}

async fn next_page<S: EventStore>(s: &mut State<S>) -> Result<Vec<RecordedEvent>, StoreError> {
    loop {
        // Mark the current head as seen before reading, so an append that lands between
        // the read and the wait still wakes us.
        let _ = *s.wake.borrow_and_update();
        let page = match s.ahead.take() {
            Some(reading) => reading
                .await
                .map_err(|e| StoreError::Backend(format!("reading the log failed: {e}")))??,
            None => s.store.read_all(s.after, s.how.page).await?,
        };
        if let Some(last) = page.last() {
            s.after = last.position;
            if page.len() == s.how.page {
                let (store, after, size) = (s.store.clone(), s.after, s.how.page);
                s.ahead = Some(tokio::spawn(
                    async move { store.read_all(after, size).await },
                ));
            }
            return Ok(page);
        }
        match tokio::time::timeout(s.how.poll, s.wake.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => return Err(StoreError::Closed),
        }
    }
}
