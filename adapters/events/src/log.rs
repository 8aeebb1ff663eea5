//! Reading the log up to where it ended when the reader started: what a rebuild, an
//! export, an audit or a replay does. It is [`EventStore::subscribe_all`] stopped at the
//! head, so the log is read one way on every backend.

use futures_util::StreamExt;

use crate::{EventStore, LogStream, Position, RecordedEvent, StoreError};

/// The log after a position, page by page, up to the head it had when [`LogPages::new`]
/// read it. Events appended later are not read: a job that must see them subscribes.
pub struct LogPages {
    pages: Option<LogStream>,
    head: Position,
}

impl LogPages {
    /// Starts reading after `after`, up to the log's newest event now.
    pub async fn new<S: EventStore>(store: &S, after: Position) -> Result<LogPages, StoreError> {
        let head = store.last_position().await?;
        let pages = (head > after).then(|| store.subscribe_all(after));
        Ok(LogPages { pages, head })
    }

    /// Where the reading stops: the log's newest event when it started.
    pub fn head(&self) -> Position {
        self.head
    }

    /// The next page in position order, or `None` once the head was read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let Some(pages) = self.pages.as_mut() else {
            return Ok(None);
        };
        let mut page = match pages.next().await {
            Some(page) => page?,
            None => return Err(StoreError::Closed),
        };
        let head = self.head;
        if page.last().is_some_and(|last| last.position >= head) {
            page.retain(|e| e.position <= head);
            self.pages = None;
        }
        if page.is_empty() {
            return Ok(None);
        }
        Ok(Some(page))
    }
}
