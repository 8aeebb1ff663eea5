//! The id adapter: where the engine (and any client that mints ids, like the demo) gets
//! new UUIDs.
//!
//! Why an adapter, like the clock: command and event ids are part of the stored (and
//! hashed) bytes. Minted from the wall clock and the OS's randomness, two runs of the same
//! input can never give the same log; minted from a seed, they do, byte for byte, hashes
//! included, which is what makes recorded replay fixtures possible.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A source of new ids. `now` is the clock adapter's time of the command being decided, so
/// a seeded source can still give time-ordered (UUID v7) ids.
pub trait IdSource: Send + Sync + 'static {
    fn next_id(&self, now: DateTime<Utc>) -> Uuid;
}

/// UUID v7 from the machine's clock and randomness: the ids of a running service.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeOrderedIds;

impl IdSource for TimeOrderedIds {
    fn next_id(&self, _now: DateTime<Utc>) -> Uuid {
        Uuid::now_v7()
    }
}

/// UUID v7 whose time is the given `now` and whose random bits come from a fixed-seed
/// generator: the same seed and the same sequence of calls give the same ids. For the
/// demo, tests and replays. Clones share one sequence.
#[derive(Debug, Clone)]
pub struct SeededIds {
    state: Arc<Mutex<u64>>,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds {
            // splitmix64 must not start from the all-zero state of xorshift-style
            // generators; any seed is fine for splitmix, but keep 0 distinct from 1.
            state: Arc::new(Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// The next 64 random bits (splitmix64: tiny, fast, and well mixed).
    fn next_u64(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn next_id(&self, now: DateTime<Utc>) -> Uuid {
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let (a, b) = (self.next_u64(), self.next_u64());
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&a.to_be_bytes());
        random[8..].copy_from_slice(&b.to_be_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

/// Any id source behind one type, for programs that choose it at run time.
#[derive(Clone)]
pub struct SharedIds(Arc<dyn IdSource>);

impl SharedIds {
    pub fn new(ids: impl IdSource) -> Self {
        SharedIds(Arc::new(ids))
    }
}

impl IdSource for SharedIds {
    fn next_id(&self, now: DateTime<Utc>) -> Uuid {
        self.0.next_id(now)
    }
}

impl std::fmt::Debug for SharedIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedIds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn seeded_ids_repeat_for_the_same_seed_and_are_v7_at_the_given_time() {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).single().unwrap();
        let (a, b, c) = (SeededIds::new(7), SeededIds::new(7), SeededIds::new(8));
        let first: Vec<Uuid> = (0..5).map(|_| a.next_id(at)).collect();
        let again: Vec<Uuid> = (0..5).map(|_| b.next_id(at)).collect();
        let other: Vec<Uuid> = (0..5).map(|_| c.next_id(at)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_eq!(
            first.len(),
            first
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        for id in &first {
            assert_eq!(id.get_version_num(), 7);
            let (secs, _) = id.get_timestamp().unwrap().to_unix();
            assert_eq!(secs as i64, at.timestamp());
        }
    }
}
