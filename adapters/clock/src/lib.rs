//! The clock and id adapters: the two things a decision takes from the world besides its
//! input. [`ids`] mints command and event ids the same way the clock gives the time.
//!
//! Why an adapter: decisions take the current time as an input (docs/ARCHITECTURE.md, invariant 1), so
//! the engine reads the time in exactly one place. In service that is [`SystemClock`]; in
//! tests and the demo it is [`ControlledClock`], which lets a 120-day program run in seconds
//! and makes every run repeatable.

pub mod ids;

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

pub use ids::{IdSource, SeededIds, SharedIds, TimeOrderedIds};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ControlledClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ControlledClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        ControlledClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`. Moving backwards is refused (returns the unchanged
    /// time) because deadlines and positions assume time never runs back.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if by > Duration::zero() {
            *now += by;
        }
        *now
    }

    /// Sets the clock to `to` if that is not earlier than the current time.
    pub fn set(&self, to: DateTime<Utc>) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if to > *now {
            *now = to;
        }
        *now
    }
}

impl Clock for ControlledClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn controlled_clock_moves_only_forward_and_clones_share_time() {
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).single().unwrap();
        let clock = ControlledClock::starting_at(start);
        let other = clock.clone();
        assert_eq!(
            clock.advance(Duration::hours(2)),
            start + Duration::hours(2)
        );
        assert_eq!(other.now(), start + Duration::hours(2));
        assert_eq!(
            clock.advance(Duration::hours(-5)),
            start + Duration::hours(2)
        );
        assert_eq!(clock.set(start), start + Duration::hours(2));
        assert_eq!(
            clock.set(start + Duration::days(1)),
            start + Duration::days(1)
        );
    }
}

/// Any clock behind one type, for programs that choose the clock at run time (the CLI
/// uses the system clock, or a fixed controllable one with `--at`).
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    pub fn new(clock: impl Clock) -> Self {
        SharedClock(Arc::new(clock))
    }
}

impl Clock for SharedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedClock({})", self.0.now())
    }
}
