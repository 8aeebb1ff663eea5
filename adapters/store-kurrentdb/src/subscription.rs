//! [`EventStore::subscribe_all`](dealreg_events::EventStore::subscribe_all) on KurrentDB: a
//! filtered catch-up subscription to `$all`, pumped by a task into a channel, read out in
//! pages.
//!
//! Why a task: a page is "every event that is ready", and the client's
//! `next_subscription_event` cannot be asked "anything ready?" without being cancelled
//! mid-call. The task awaits it in a loop and the page takes what the channel holds. The
//! task ends when the [`LogStream`] is dropped (the channel closes) or after the error it
//! sends.
//!
//! Why it resumes on its own: the subscription is one gRPC call, and a connection drop, a
//! leader change or a server restart ends it. The task remembers the last position it saw,
//! an event's or a checkpoint's (a filtered subscription sends checkpoints as it passes
//! records it does not deliver, so a subscriber whose events are rare does not rescan the
//! whole log), and subscribes again after it, which KurrentDB reads exclusively. An event
//! at or before that position is dropped, so even a server that repeated one would not
//! repeat it here. After [`KurrentOptions::resubscribe_attempts`] drops in a row without
//! progress the stream ends with the error.
//!
//! [`KurrentOptions::resubscribe_attempts`]: crate::KurrentOptions::resubscribe_attempts

use futures_util::stream;
use kurrentdb::{StreamPosition, SubscribeToAllOptions, SubscriptionEvent};
use tokio::sync::mpsc;
use tracing::warn;

use dealreg_events::{LogStream, Position, RecordedEvent, StoreError};

use crate::{error, KurrentStore};

type Item = Result<RecordedEvent, StoreError>;

enum State {
    /// Not polled yet: the task starts on the first poll, inside the caller's runtime.
    Start(KurrentStore, Position),
    Running {
        events: mpsc::Receiver<Item>,
        page: usize,
        /// An error that came after events of the last page: the next item.
        pending: Option<StoreError>,
    },
    Done,
}

/// The log after `after` as pages, catch-up then live.
pub(crate) fn log_stream(store: KurrentStore, after: Position) -> LogStream {
    Box::pin(stream::unfold(State::Start(store, after), next_page))
}

async fn next_page(state: State) -> Option<(Result<Vec<RecordedEvent>, StoreError>, State)> {
    let (mut events, page) = match state {
        State::Done => return None,
        State::Start(store, after) => {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                let e = StoreError::Backend(
                    "a KurrentDB subscription must be polled inside a tokio runtime".into(),
                );
                return Some((Err(e), State::Done));
            };
            let page = store.options().page.max(1);
            let (tx, rx) = mpsc::channel(page.saturating_mul(2));
            runtime.spawn(pump(store, after, tx));
            (rx, page)
        }
        State::Running {
            pending: Some(e), ..
        } => return Some((Err(e), State::Done)),
        State::Running {
            events,
            page,
            pending: None,
        } => (events, page),
    };
    let first = match events.recv().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => return Some((Err(e), State::Done)),
        // The task ends only after sending its error, or when this end is gone.
        None => return Some((Err(StoreError::Closed), State::Done)),
    };
    let mut batch = vec![first];
    let mut pending = None;
    while batch.len() < page {
        match events.try_recv() {
            Ok(Ok(event)) => batch.push(event),
            Ok(Err(e)) => {
                pending = Some(e);
                break;
            }
            Err(_) => break,
        }
    }
    Some((
        Ok(batch),
        State::Running {
            events,
            page,
            pending,
        },
    ))
}

/// Subscribes after `after` and sends every event, resubscribing after drops.
async fn pump(store: KurrentStore, after: Position, tx: mpsc::Sender<Item>) {
    let mut resume = after;
    let mut drops = 0u32;
    loop {
        let start = if resume.is_origin() {
            StreamPosition::Start
        } else {
            StreamPosition::Position(kurrentdb::Position {
                commit: resume.commit(),
                prepare: resume.prepare(),
            })
        };
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(store.filter());
        let mut subscription = store.client().subscribe_to_all(&options).await;
        let dropped = loop {
            let next = tokio::select! {
                next = subscription.next_subscription_event() => next,
                () = tx.closed() => return,
            };
            match next {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    drops = 0;
                    let Some(event) = resolved.link.as_ref().or(resolved.event.as_ref()) else {
                        continue;
                    };
                    let position = Position::pair(event.position.commit, event.position.prepare);
                    if position <= resume {
                        continue;
                    }
                    if crate::is_system(event) {
                        resume = position;
                        continue;
                    }
                    match store.decode(event) {
                        Ok(event) => {
                            resume = position;
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        Err(foreign) => {
                            let _ = tx.send(Err(foreign.into())).await;
                            return;
                        }
                    }
                }
                Ok(SubscriptionEvent::Checkpoint(checkpoint)) => {
                    drops = 0;
                    resume = resume.max(Position::pair(checkpoint.commit, checkpoint.prepare));
                }
                Ok(SubscriptionEvent::CaughtUp(_)) => drops = 0,
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        drop(subscription);
        drops += 1;
        let limit = store.options().resubscribe_attempts;
        if !error::resumable(&dropped) || drops > limit {
            let e = StoreError::Backend(format!(
                "the subscription to KurrentDB's log dropped and could not be resumed after position {resume} ({drops} attempt(s)): {dropped}; check that the server runs and the connection string's user may read $all"
            ));
            let _ = tx.send(Err(e)).await;
            return;
        }
        let pause = store.options().backoff(drops);
        warn!(%resume, drops, error = %dropped, ?pause, "the subscription to KurrentDB's log dropped; resubscribing after the last position seen");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = tx.closed() => return,
        }
    }
}
