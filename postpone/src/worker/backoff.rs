//! Waits between tries of something that failed for want of the database: doubling from a
//! minimum up to a cap, each wait drawn between half and all of its step (jitter), so the
//! workers of a fleet do not all come back in the same millisecond.
//!
//! The cap is short ([`RETRY_CAP`], 1 s): once the server answers again after a restart,
//! every worker claims, listens and writes again within a second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait between two tries.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(1);

/// A backoff: [`Backoff::next`] after each failure, [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    step: Duration,
}

impl Backoff {
    /// Starting at `min`, capped at [`RETRY_CAP`].
    pub(crate) fn new(min: Duration) -> Self {
        Self { min, step: min }
    }

    /// The wait before the next try; doubles the step for the one after.
    pub(crate) fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(RETRY_CAP);
        step / 2 + jitter(step / 2)
    }

    /// Back to the minimum, after a success.
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A duration in `[0, up_to]`, from the clock's nanoseconds: enough to spread a fleet.
fn jitter(up_to: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    up_to.mul_f64(f64::from(nanos) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut steps = Vec::new();
        for _ in 0..8 {
            steps.push(backoff.next());
        }
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (wait, step) in steps.iter().zip(bounds) {
            let step = Duration::from_millis(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} not within {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }
}
