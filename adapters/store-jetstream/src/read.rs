//! Reading events: batches of direct gets from whichever replica is nearest, fenced by the
//! stream leader on a replicated stream.
//!
//! Why direct get: it is stateless (no consumer is created per read, which on a cluster
//! would be a meta-group proposal for every command the engine loads), one request returns
//! a page, and `next_by_subj` seeks a subject from a sequence through the server's subject
//! index, so reading after a tip costs the same however long the stream is.
//!
//! Why a fence: with `allow_direct` every replica answers direct gets, and a follower may
//! not have applied the newest events yet. An append is acknowledged once the leader
//! applied it, so one `STREAM.MSG.GET` (always answered by the leader) for the next
//! matching message after what the page ended with tells whether the page was complete.
//! On a single replica the nearest replica is the leader and the fence is skipped.

use std::time::Duration;

use async_nats::header::{NATS_SEQUENCE, NATS_SUBJECT};
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use dealreg_events::StoreError;
use futures_util::StreamExt;

/// Messages per direct-get request.
pub(crate) const PAGE: usize = 512;

/// A stored message as a read found it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub subject: String,
    pub sequence: u64,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
}

fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!(
        "{what} failed: {e}; check that the NATS server (on a cluster, a quorum) is reachable and retry"
    ))
}

/// Reads messages matching `filter` with sequences from `start`, up to `max`.
pub(crate) struct Reader<'a> {
    pub client: &'a Client,
    pub stream: &'a Stream<()>,
    pub stream_name: &'a str,
    pub replicated: bool,
    pub timeout: Duration,
}

impl Reader<'_> {
    pub(crate) async fn read(
        &self,
        filter: &str,
        start: u64,
        max: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut found: Vec<Stored> = Vec::new();
        let mut next = start.max(1);
        while found.len() < max {
            let want = (max - found.len()).min(PAGE);
            let (page, drained) = self.direct_batch(filter, next, want).await?;
            let got = page.len();
            if let Some(last) = page.last() {
                next = last.sequence + 1;
            }
            found.extend(page);
            if got == want || (got > 0 && !drained) {
                // A full page, or one the server cut short (by bytes): read on.
                continue;
            }
            // This replica has nothing more. On a replicated stream, the leader decides.
            if !self.replicated {
                break;
            }
            match self.leader_next(filter, next).await? {
                None => break,
                Some(message) => {
                    // The replica was behind: go on from the leader, one message at a time,
                    // until it has no more or the page is full.
                    next = message.sequence + 1;
                    found.push(message);
                    while found.len() < max {
                        match self.leader_next(filter, next).await? {
                            Some(message) => {
                                next = message.sequence + 1;
                                found.push(message);
                            }
                            None => break,
                        }
                    }
                    break;
                }
            }
        }
        Ok(found)
    }

    /// One batched direct get; the messages and whether the server said none remain after
    /// them (`Nats-Num-Pending: 0` on the last, or no message at all).
    async fn direct_batch(
        &self,
        filter: &str,
        start: u64,
        batch: usize,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| backend("subscribing for a read", e))?;
        let request = serde_json::json!({ "seq": start, "next_by_subj": filter, "batch": batch });
        let request = serde_json::to_vec(&request).map_err(|e| backend("a read request", e))?;
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", self.stream_name),
                inbox,
                request.into(),
            )
            .await
            .map_err(|e| backend("sending a read", e))?;
        let mut page = Vec::with_capacity(batch.min(PAGE));
        let mut drained = false;
        loop {
            let reply = match tokio::time::timeout(self.timeout, replies.next()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Err(backend("a read", "the connection closed")),
                Err(_) => {
                    return Err(backend(
                        "a read",
                        format!("no answer within {:?}", self.timeout),
                    ))
                }
            };
            if let Some(status) = reply.status {
                match status.as_u16() {
                    // End of batch.
                    204 => break,
                    // Nothing matches from `start` on.
                    404 => {
                        drained = true;
                        break;
                    }
                    503 => {
                        return Err(backend(
                            "a read",
                            format!(
                                "no server answers direct gets for stream `{}` (is it there, with allow_direct?)",
                                self.stream_name
                            ),
                        ))
                    }
                    code => {
                        return Err(backend(
                            "a read",
                            format!(
                                "the server answered {code} {}",
                                reply.description.unwrap_or_default()
                            ),
                        ))
                    }
                }
            }
            let headers = reply.headers;
            let field = |name| {
                headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            let sequence = field(NATS_SEQUENCE)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| backend("a read", "a direct get answer without its sequence"))?;
            let subject = field(NATS_SUBJECT)
                .ok_or_else(|| backend("a read", "a direct get answer without its subject"))?;
            drained = headers
                .as_ref()
                .and_then(|h| h.get("Nats-Num-Pending"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                == Some(0);
            page.push(Stored {
                subject,
                sequence,
                headers,
                payload: reply.payload,
            });
        }
        drop(replies);
        if page.is_empty() {
            drained = true;
        }
        Ok((page, drained))
    }

    /// The first message matching `filter` from `start` on, as the stream leader has it.
    pub(crate) async fn leader_next(
        &self,
        filter: &str,
        start: u64,
    ) -> Result<Option<Stored>, StoreError> {
        match self
            .stream
            .raw_message_builder()
            .sequence(start)
            .next_by_subject(filter)
            .send()
            .await
        {
            Ok(m) => Ok(Some(Stored {
                subject: m.subject.to_string(),
                sequence: m.sequence,
                headers: Some(m.headers),
                payload: m.payload,
            })),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(backend("a read from the stream leader", e)),
        }
    }

    /// The last message on `subject`, as the stream leader has it.
    pub(crate) async fn leader_last(&self, subject: &str) -> Result<Option<Stored>, StoreError> {
        match self
            .stream
            .raw_message_builder()
            .last_by_subject(subject)
            .send()
            .await
        {
            Ok(m) => Ok(Some(Stored {
                subject: m.subject.to_string(),
                sequence: m.sequence,
                headers: Some(m.headers),
                payload: m.payload,
            })),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(backend("reading a stream's last event", e)),
        }
    }
}
