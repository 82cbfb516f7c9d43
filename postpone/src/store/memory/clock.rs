//! The time a [`MemoryStore`](super::MemoryStore) reads: the wall clock, or one a test moves.
//!
//! PostgreSQL reads `now()` once per transaction; the memory store reads its clock once per
//! operation. A test that needs time to pass (a worker whose heartbeat is an hour old, jobs
//! finished yesterday, a job scheduled for later) moves the clock instead of sleeping, so it
//! does not depend on how fast the machine is.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A clock: the wall clock shifted by what [`Clock::advance`] added, or (made with
/// [`Clock::frozen`]) a time that moves only when told. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Added to the base time.
    offset: TimeDelta,
    /// The base time when frozen; the wall clock otherwise.
    frozen_at: Option<DateTime<Utc>>,
}

impl Clock {
    /// The wall clock (what [`MemoryStore::new`](super::MemoryStore::new) uses).
    #[must_use]
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `at` until moved.
    #[must_use]
    pub fn frozen(at: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                offset: TimeDelta::zero(),
                frozen_at: Some(at),
            })),
        }
    }

    /// The time now.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        let inner = self.lock();
        let base = inner.frozen_at.unwrap_or_else(Utc::now);
        base.checked_add_signed(inner.offset).unwrap_or(base)
    }

    /// Moves the clock forward by `by` (for every clone). Past the calendar's end it stays
    /// where it is.
    pub fn advance(&self, by: Duration) {
        let Ok(by) = TimeDelta::from_std(by) else {
            return;
        };
        let mut inner = self.lock();
        if let Some(offset) = inner.offset.checked_add(&by) {
            inner.offset = offset;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values: a panic elsewhere cannot leave them half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z")
            .expect("valid time")
            .with_timezone(&Utc);
        let clock = Clock::frozen(start);
        assert_eq!(clock.now(), start);
        clock.clone().advance(Duration::from_secs(3600));
        assert_eq!(clock.now(), start + TimeDelta::hours(1));
    }

    #[test]
    fn the_system_clock_can_be_moved_ahead() {
        let clock = Clock::system();
        let before = Utc::now();
        clock.advance(Duration::from_secs(86_400));
        assert!(clock.now() >= before + TimeDelta::days(1));
    }
}
