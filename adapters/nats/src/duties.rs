//! The deployment's shared duties beside a log that several hosts share: a JetStream
//! key-value bucket ([`dealreg_views::SharedDuties`]).
//!
//! Why: with the log on JetStream or KurrentDB every host keeps its own views file, and the
//! lease in that file only orders the processes of one host. Publishing the feeds, the
//! follow-up reactor and the timekeeper must be done by one process of the whole
//! deployment: it holds the lease in this bucket, and marks in it how far each duty got.
//!
//! A lease is one key (`lease.duties`), its value `{"holder", "expires_ms"}`. It is taken with a
//! create (the key is absent) or an update at the revision read (the holder renews, or the
//! lease expired), so two processes taking it at once cannot both succeed: the bucket's
//! compare-and-set decides. Expiry is judged by each process's clock: keep the hosts' clocks
//! in step (NTP) to well under the lease's time to live (6 s by default).

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use dealreg_events::Position;
use dealreg_views::ViewsError;
use serde::{Deserialize, Serialize};

/// The bucket the lease and the marks are kept in.
pub const LEASE_BUCKET: &str = "DEALREG_DUTIES";

#[derive(Debug, Serialize, Deserialize)]
struct Held {
    holder: String,
    expires_ms: i64,
}

/// The shared duties' lease and marks in a JetStream key-value bucket.
#[derive(Clone)]
pub struct JetStreamDuties {
    bucket: kv::Store,
}

/// The bucket's key of a lease, and of a duty's mark. Names are dealreg's own
/// (`views`, `feed/pipeline`, `reactor`): letters, digits, `-`, `_` and `/`, all valid in
/// a key.
fn lease_key(lease: &str) -> String {
    format!("lease.{lease}")
}

fn mark_key(duty: &str) -> String {
    format!("done.{duty}")
}

fn failed(what: &str, e: impl std::fmt::Display) -> ViewsError {
    ViewsError::Backend(format!(
        "the lease bucket {LEASE_BUCKET} {what}: {e}; check JetStream on the servers"
    ))
}

impl JetStreamDuties {
    /// Opens the bucket on `client`'s servers, creating it (with `replicas`) when missing.
    pub async fn open(
        client: async_nats::Client,
        replicas: usize,
    ) -> Result<JetStreamDuties, ViewsError> {
        let js = jetstream::new(client);
        let bucket = match js.get_key_value(LEASE_BUCKET).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: LEASE_BUCKET.into(),
                    description: "which dealreg process keeps the views; see docs/DEPLOYMENT.md"
                        .into(),
                    history: 1,
                    // Written only by the process holding the lease (a few keys): small.
                    max_bytes: 1 << 20,
                    num_replicas: replicas.max(1),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| failed("cannot be created", e))?,
        };
        Ok(JetStreamDuties { bucket })
    }

    /// The current value of `lease` and its revision.
    async fn read(&self, lease: &str) -> Result<Option<(Option<Held>, u64)>, ViewsError> {
        let entry = self
            .bucket
            .entry(lease_key(lease))
            .await
            .map_err(|e| failed("cannot be read", e))?;
        Ok(entry.map(|e| {
            let held = match e.operation {
                kv::Operation::Put => serde_json::from_slice::<Held>(&e.value).ok(),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            (held, e.revision)
        }))
    }
}

impl dealreg_views::Leases for JetStreamDuties {
    async fn try_acquire(
        &self,
        lease: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, ViewsError> {
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let value = serde_json::to_vec(&Held {
            holder: holder.to_string(),
            expires_ms: until.timestamp_millis(),
        })
        .map_err(|e| failed("cannot encode a lease", e))?;
        let taken = match self.read(lease).await? {
            None => self
                .bucket
                .create(lease_key(lease), value.into())
                .await
                .is_ok(),
            Some((held, revision)) => {
                let free = held
                    .as_ref()
                    .is_none_or(|h| h.holder == holder || h.expires_ms <= now.timestamp_millis());
                free && self
                    .bucket
                    .update(lease_key(lease), value.into(), revision)
                    .await
                    .is_ok()
            }
        };
        Ok(taken)
    }

    async fn release(&self, lease: &str, holder: &str) -> Result<(), ViewsError> {
        if let Some((Some(held), revision)) = self.read(lease).await? {
            if held.holder == holder {
                // Expired now, at the revision read: a process that took it meanwhile keeps it.
                let value = serde_json::to_vec(&Held {
                    holder: holder.to_string(),
                    expires_ms: 0,
                })
                .map_err(|e| failed("cannot encode a lease", e))?;
                let _ = self
                    .bucket
                    .update(lease_key(lease), value.into(), revision)
                    .await;
            }
        }
        Ok(())
    }
}

impl dealreg_views::SharedDuties for JetStreamDuties {
    async fn mark_done(&self, name: &str, position: Position) -> Result<(), ViewsError> {
        // Compare and set, so a mark never moves back even with a late writer.
        for _ in 0..8 {
            let entry = self
                .bucket
                .entry(mark_key(name))
                .await
                .map_err(|e| failed("cannot be read", e))?;
            let value = position.to_string().into_bytes();
            let written = match entry {
                Some(entry) => {
                    let marked = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|t| t.parse::<Position>().ok());
                    if entry.operation == kv::Operation::Put
                        && marked.is_some_and(|m| m >= position)
                    {
                        return Ok(());
                    }
                    self.bucket
                        .update(mark_key(name), value.into(), entry.revision)
                        .await
                        .is_ok()
                }
                None => self
                    .bucket
                    .create(mark_key(name), value.into())
                    .await
                    .is_ok(),
            };
            if written {
                return Ok(());
            }
        }
        Err(failed(
            "keeps changing under the mark",
            format!("{name} could not be marked done through {position}"),
        ))
    }

    async fn done_through(&self, name: &str) -> Result<Option<Position>, ViewsError> {
        let entry = self
            .bucket
            .entry(mark_key(name))
            .await
            .map_err(|e| failed("cannot be read", e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let text = std::str::from_utf8(&entry.value)
                    .map_err(|e| failed("holds a mark that is not text", e))?;
                text.parse::<Position>()
                    .map(Some)
                    .map_err(|e| failed("holds a mark that is not a position", e))
            }
            _ => Ok(None),
        }
    }
}
