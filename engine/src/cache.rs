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

use dealreg_domain::{evolve, Event, State};
use dealreg_store::StreamRevision;

use crate::engine::Loaded;

/// The default bound, in weight units (about a hundred bytes each, see [`weight`]).
pub const DEFAULT_LIMIT: usize = 2_000_000;

/// An estimate of a state's size in units of about a hundred bytes: what makes states big
/// is their registrations, conflicts and capacity slots.
pub fn weight(state: &State) -> usize {
    match state {
        State::Program(_) => 4,
        State::Partner(p) => 2 + p.open_slots.len() + p.certifications.len(),
        State::Account(a) => {
            2 + a.registrations.len() * 4
                + a.conflicts
                    .values()
                    .map(|c| 2 + c.parties.len())
                    .sum::<usize>()
                + a.direct_opportunities.len()
                + a.renewals.len()
                + a.renewal_dates.len()
                + a.renewal_reviews.len()
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
            .is_some_and(|e| e.loaded.version > loaded.version);
        if !newer {
            inner.insert(stream.to_string(), loaded, self.limit);
        }
    }

    /// Brings the cached state of `stream` forward by `events`, which were appended right
    /// after revision `from` and end at revision `to`. `decided_on` is the state the events
    /// were decided on: it becomes the entry when the stream was not cached. An entry at
    /// another version is left alone (the next load reads the stream forward).
    pub fn advance(
        &self,
        stream: &str,
        decided_on: Arc<Loaded>,
        events: &[Event],
        to: StreamRevision,
    ) {
        let from = decided_on.version;
        let mut inner = self.lock();
        let cached_at = inner.entries.get(stream).map(|e| e.loaded.version);
        let mut loaded = match cached_at {
            Some(version) if version == from => {
                // Let go of our own reference first, so the cache holds the only one
                // and the state is changed in place, not copied.
                drop(decided_on);
                match inner.entries.remove(stream) {
                    Some(entry) => {
                        inner.order.remove(&entry.tick);
                        inner.weight -= entry.weight;
                        entry.loaded
                    }
                    None => return,
                }
            }
            Some(_) => return,
            None => decided_on,
        };
        let state = Arc::make_mut(&mut loaded);
        for event in events {
            evolve(&mut state.state, event);
            state.newest = state.newest.max(Some(event.at()));
        }
        state.version = Some(to);
        inner.insert(stream.to_string(), loaded, self.limit);
    }

    /// The cache's estimated size, in weight units, and how many streams it holds.
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
            version: Some(version),
            newest: None,
        })
    }

    #[test]
    fn the_least_recently_used_stream_goes_first_when_the_bound_is_passed() {
        // Each empty partner weighs 2; a limit of 6 holds three.
        let cache = StateCache::new(6);
        for s in ["a", "b", "c"] {
            cache.put(s, loaded(0));
        }
        assert!(cache.get("a").is_some(), "a is used again");
        cache.put("d", loaded(0));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        for s in ["a", "c", "d"] {
            assert!(cache.get(s).is_some(), "{s} stays");
        }
        assert_eq!(cache.size(), (6, 3));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = StateCache::new(100);
        cache.put("a", loaded(5));
        cache.put("a", loaded(3));
        assert_eq!(cache.get("a").map(|l| l.version), Some(Some(5)));
    }

    #[test]
    fn advancing_changes_the_cached_state_in_place() {
        let cache = StateCache::new(100);
        cache.put("a", loaded(1));
        let decided_on = cache.get("a").expect("cached");
        let before = Arc::as_ptr(&decided_on);
        cache.advance("a", decided_on, &[], 2);
        let after = cache.get("a").expect("cached");
        assert_eq!(after.version, Some(2));
        assert_eq!(Arc::as_ptr(&after), before, "not copied");
        // An entry at another version is left for the next load to bring forward.
        cache.advance("a", loaded(7), &[], 8);
        assert_eq!(cache.get("a").map(|l| l.version), Some(Some(2)));
    }
}
