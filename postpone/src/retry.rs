//! Retry policies: what happens when a task fails.
//!
//! Same rules as Procrastinate's `procrastinate/retry.py`: a [`RetryStrategy`] retries at
//! most `max_attempts` times (counting the runs already made, `job.attempts`), waiting
//! `wait + linear_wait * attempts + exponential_wait ^ (attempts + 1)` seconds, and only
//! for the listed error kinds when a list is given. A [`Retry::Custom`] decision can also
//! move the job to another queue, priority or lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::job::Job;

pub use crate::job::RetryDecision;

pub use crate::job::STALLED_ERROR_KIND;

/// A classic retry strategy (Procrastinate's `RetryStrategy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryStrategy {
    /// Retry while `job.attempts < max_attempts`; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// Constant wait.
    pub wait: Duration,
    /// Added `attempts` times.
    pub linear_wait: Duration,
    /// Raised to the power `attempts + 1` (in seconds).
    pub exponential_wait: Duration,
    /// Retry only errors of these kinds (see [`crate::task::TaskError::kind`]); `None` retries all.
    pub retry_on: Option<Vec<String>>,
}

impl RetryStrategy {
    /// Retries up to `max_attempts` times, at once.
    #[must_use]
    pub fn max_attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: Some(max_attempts),
            ..Self::default()
        }
    }

    /// Sets the constant wait.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the linear wait.
    #[must_use]
    pub fn with_linear_wait(mut self, wait: Duration) -> Self {
        self.linear_wait = wait;
        self
    }

    /// Sets the exponential wait.
    #[must_use]
    pub fn with_exponential_wait(mut self, wait: Duration) -> Self {
        self.exponential_wait = wait;
        self
    }

    /// Retries only errors of these kinds.
    #[must_use]
    pub fn with_retry_on<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.retry_on = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// The wait before the next run, after `attempts` runs; `None` means do not retry.
    #[must_use]
    pub fn next_wait(&self, attempts: u32, error_kind: &str) -> Option<Duration> {
        if let Some(max) = self.max_attempts {
            if max > 0 && attempts >= max {
                return None;
            }
        }
        if let Some(kinds) = &self.retry_on {
            if !kinds.is_empty() && !kinds.iter().any(|k| k == error_kind) {
                return None;
            }
        }
        let secs = self.wait.as_secs_f64()
            + self.linear_wait.as_secs_f64() * f64::from(attempts)
            + self
                .exponential_wait
                .as_secs_f64()
                .powi(i32::try_from(attempts.saturating_add(1)).unwrap_or(i32::MAX));
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

/// A custom retry decision: given the job and the error kind and message, decide.
pub type RetryFn =
    Arc<dyn Fn(&Job, &crate::task::TaskError) -> Option<RetryDecision> + Send + Sync>;

/// A task's retry policy.
#[derive(Clone, Default)]
pub enum Retry {
    /// Never retry (Procrastinate's `retry=False`, the default).
    #[default]
    Never,
    /// Retry with a strategy.
    Strategy(RetryStrategy),
    /// Retry as a function decides.
    Custom(RetryFn),
}

impl Retry {
    /// Decides what to do after `job` failed with `error`; `None` means the job fails.
    #[must_use]
    pub fn decide(&self, job: &Job, error: &crate::task::TaskError) -> Option<RetryDecision> {
        match self {
            Self::Never => None,
            Self::Strategy(strategy) => {
                let attempts = u32::try_from(job.attempts).unwrap_or(0);
                strategy
                    .next_wait(attempts, error.kind())
                    .map(RetryDecision::retry_in)
            }
            Self::Custom(decide) => decide(job, error),
        }
    }
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("Never"),
            Self::Strategy(s) => f.debug_tuple("Strategy").field(s).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl From<RetryStrategy> for Retry {
    fn from(strategy: RetryStrategy) -> Self {
        Self::Strategy(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn waits_follow_procrastinates_formula() {
        let s = RetryStrategy::default()
            .with_wait(secs(1))
            .with_linear_wait(secs(3))
            .with_exponential_wait(secs(2));
        // wait + linear * attempts + exponential ^ (attempts + 1)
        assert_eq!(s.next_wait(0, "E"), Some(secs(1 + 2)));
        assert_eq!(s.next_wait(1, "E"), Some(secs(1 + 3 + 4)));
        assert_eq!(s.next_wait(3, "E"), Some(secs(1 + 9 + 16)));
    }

    #[test]
    fn max_attempts_counts_runs_already_made() {
        let s = RetryStrategy::max_attempts(2);
        assert_eq!(s.next_wait(0, "E"), Some(Duration::ZERO));
        assert_eq!(s.next_wait(1, "E"), Some(Duration::ZERO));
        assert_eq!(s.next_wait(2, "E"), None);
    }

    #[test]
    fn retry_on_filters_error_kinds() {
        let s = RetryStrategy::default().with_retry_on(["Timeout"]);
        assert!(s.next_wait(0, "Timeout").is_some());
        assert!(s.next_wait(0, "ParseError").is_none());
    }
}
