//! The engine's state cache: folded boundaries kept between commands, bounded by an
//! estimate of their size, the least recently used evicted first.
//!
//! Why by size, not by count: a partner holding ten thousand open registrations weighs as
//! much as ten thousand small accounts; a bound by entries would let memory grow with each
//! partner's history. Why least recently used: a busy account or partner stays cached
//! while the long tail of quiet accounts is evicted one at a time, instead of the whole
//! cache being dropped at once.
//!
//! Entries are `Arc`s: a decision borrows the cached state without copying it, and after
//! an append the cached state is brought forward in place (`Arc::make_mut` copies only
//! when a concurrent command still holds the old state).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use dealreg_domain::{Event, State};
use dealreg_events::{StreamRevision, StreamTip};

use crate::loaded::Loaded;

/// The default bound: 256 MiB of folded states (estimated by [`weight`]).
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// Nodes a `BTreeMap` of `len` entries allocates: a node holds up to eleven entries and
/// is allocated whole, and maps filled in id order keep them about two-thirds full.
fn nodes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + len / 7
    }
}

/// Bytes a `BTreeMap` of `len` entries of `entry` bytes (key and value) allocates.
fn map_bytes(len: usize, entry: usize) -> usize {
    nodes(len) * (11 * entry + 16)
}

/// An estimate of a state's size in bytes as the allocator sees it: structs, map nodes
/// (a `BTreeMap` node is allocated for eleven entries, so an account with one
/// registration already holds a 3.6 KB node), strings. Checked against the heap profile
/// (valgrind massif) and the resident size of `dealreg apply` runs
/// (`cargo bench --bench apply_growth`).
pub fn weight(state: &State) -> usize {
    use std::mem::size_of;
    // The entry's own bookkeeping: the `Loaded` behind its `Arc`, the stream name twice
    // (map key and LRU order), the maps' slots.
    const ENTRY: usize = size_of::<Loaded>() + 200;
    ENTRY
        + match state {
            State::Program(_) => 4_096,
            State::Partner(p) => {
                map_bytes(
                    p.open_slots.len(),
                    size_of::<dealreg_domain::RegistrationId>()
                        + size_of::<dealreg_domain::AccountKey>(),
                ) + p.open_slots.len() * 32
                    + map_bytes(p.certifications.len(), 40)
                    + p.certifications.len() * 32
                    + p.name.len()
                    + p.motions.len()
                    + p.territories.len() * 64
            }
            State::Account(a) => {
                let registration = size_of::<dealreg_domain::RegistrationId>()
                    + size_of::<dealreg_domain::Registration>();
                let conflict = 24 + size_of::<dealreg_domain::account::Conflict>();
                map_bytes(a.registrations.len(), registration)
                    + a.registrations.len() * 160
                    + map_bytes(a.conflicts.len(), conflict)
                    + a.conflicts
                        .values()
                        .map(|c| 120 + c.parties.len() * 64 + c.breached.len() * 8)
                        .sum::<usize>()
                    + a.direct_opportunities.len() * 160
                    + map_bytes(a.incumbents.len(), 40)
                    + map_bytes(a.renewals.len(), 64)
                    + map_bytes(a.renewal_dates.len(), 32)
                    + a.renewal_reviews.len() * 40
                    + a.company.len()
            }
        }
}

struct Entry {
    loaded: Arc<Loaded>,
    weight: usize,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// tick -> stream, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    weight: usize,
}

impl Inner {
    fn touch(&mut self, stream: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(stream) {
            self.order.remove(&entry.tick);
            entry.tick = tick;
            self.order.insert(tick, stream.to_string());
        }
    }

    fn insert(&mut self, stream: String, loaded: Arc<Loaded>, limit: usize) {
        self.remove(&stream);
        self.tick += 1;
        let weight = weight(&loaded.state);
        self.weight += weight;
        self.order.insert(self.tick, stream.clone());
        self.entries.insert(
            stream,
            Entry {
                loaded,
                weight,
                tick: self.tick,
            },
        );
        while self.weight > limit && self.entries.len() > 1 {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.weight -= entry.weight;
            }
        }
    }

    fn remove(&mut self, stream: &str) {
        if let Some(entry) = self.entries.remove(stream) {
            self.order.remove(&entry.tick);
            self.weight -= entry.weight;
        }
    }
}

pub struct StateCache {
    inner: Mutex<Inner>,
    limit: usize,
}

impl StateCache {
    pub fn new(limit: usize) -> StateCache {
        StateCache {
            inner: Mutex::new(Inner::default()),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached state of `stream`, marked as just used.
    pub fn get(&self, stream: &str) -> Option<Arc<Loaded>> {
        let mut inner = self.lock();
        let loaded = inner.entries.get(stream).map(|e| Arc::clone(&e.loaded))?;
        inner.touch(stream);
        Some(loaded)
    }

    /// Keeps `loaded` unless the cache already holds a newer version of the stream.
    pub fn put(&self, stream: &str, loaded: Arc<Loaded>) {
        let mut inner = self.lock();
        let newer = inner
            .entries
            .get(stream)
            .is_some_and(|e| e.loaded.version() > loaded.version());
        if !newer {
            inner.insert(stream.to_string(), loaded, self.limit);
        }
    }

    /// Brings the cached state of `stream` forward by `events`, which were appended right
    /// after the tip of `decided_on` and end at `tip`; `key` is the idempotency record of
    /// the command that wrote them, with the revision of their first event. `decided_on`
    /// becomes the entry when the stream was not cached. Gives the state after the events
    /// (an entry at another version is left alone: the next load reads the stream forward).
    pub fn advance(
        &self,
        stream: &str,
        decided_on: Arc<Loaded>,
        events: &[Event],
        tip: StreamTip,
        key: Option<((String, Option<String>), StreamRevision)>,
    ) -> Arc<Loaded> {
        let from = decided_on.version();
        let mut inner = self.lock();
        let cached_at = inner.entries.get(stream).map(|e| e.loaded.version());
        let cached = if cached_at == Some(from) {
            inner.entries.remove(stream)
        } else {
            None
        };
        let mut loaded = match (cached, cached_at) {
            (Some(entry), _) => {
                inner.order.remove(&entry.tick);
                inner.weight -= entry.weight;
                // Let go of our own reference, so the cache's is the only one and the
                // state is changed in place, not copied.
                drop(decided_on);
                entry.loaded
            }
            (None, Some(_)) => {
                drop(inner);
                let mut after = Arc::unwrap_or_clone(decided_on);
                after.advance(events, tip, key);
                return Arc::new(after);
            }
            (None, None) => decided_on,
        };
        Arc::make_mut(&mut loaded).advance(events, tip, key);
        inner.insert(stream.to_string(), Arc::clone(&loaded), self.limit);
        loaded
    }

    /// The cache's estimated size in bytes, and how many streams it holds.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.weight, inner.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dealreg_domain::{Boundary, PartnerId};

    fn loaded(version: u64) -> Arc<Loaded> {
        Arc::new(Loaded {
            state: State::initial(&Boundary::Partner(PartnerId(uuid::Uuid::nil()))),
            tip: Some(tip(version)),
            newest: None,
            keys: Default::default(),
            checked_at: std::time::Instant::now(),
        })
    }

    fn tip(revision: u64) -> StreamTip {
        StreamTip {
            revision,
            position: dealreg_events::Position::at(revision + 1),
            hash: String::new(),
        }
    }

    #[test]
    fn the_least_recently_used_stream_goes_first_when_the_bound_is_passed() {
        // A limit of three empty partners holds three.
        let one = weight(&loaded(0).state);
        let cache = StateCache::new(3 * one);
        for s in ["a", "b", "c"] {
            cache.put(s, loaded(0));
        }
        assert!(cache.get("a").is_some(), "a is used again");
        cache.put("d", loaded(0));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        for s in ["a", "c", "d"] {
            assert!(cache.get(s).is_some(), "{s} stays");
        }
        assert_eq!(cache.size(), (3 * one, 3));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = StateCache::new(100);
        cache.put("a", loaded(5));
        cache.put("a", loaded(3));
        assert_eq!(cache.get("a").map(|l| l.version()), Some(Some(5)));
    }

    #[test]
    fn advancing_changes_the_cached_state_in_place() {
        let cache = StateCache::new(100);
        cache.put("a", loaded(1));
        let decided_on = cache.get("a").expect("cached");
        let before = Arc::as_ptr(&decided_on);
        cache.advance("a", decided_on, &[], tip(2), None);
        let after = cache.get("a").expect("cached");
        assert_eq!(after.version(), Some(2));
        assert_eq!(Arc::as_ptr(&after), before, "not copied");
        // An entry at another version is left for the next load to bring forward.
        let moved = cache.advance("a", loaded(7), &[], tip(8), None);
        assert_eq!(
            moved.version(),
            Some(8),
            "the caller gets the state after its events"
        );
        assert_eq!(cache.get("a").map(|l| l.version()), Some(Some(2)));
    }
}
