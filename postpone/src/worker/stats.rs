//! What a worker has done: claim round trips and outcomes written, for
//! [`WorkerHandle::stats`](super::WorkerHandle::stats) and tests. Counted by the worker's
//! state (`state.rs`) as claims return and outcomes are written.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::Outcome;

/// Counts of claim round trips and written outcomes.
#[derive(Debug, Default)]
pub struct WorkerStats {
    fetches: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    aborted: AtomicU64,
    retried: AtomicU64,
}

impl WorkerStats {
    /// Fetch round trips made (each claims jobs for the free slots and the local queue).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Jobs written as succeeded.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Jobs written as failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Jobs written as aborted.
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Jobs sent back to todo for a retry.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Every outcome written.
    pub fn completed(&self) -> u64 {
        self.succeeded() + self.failed() + self.aborted() + self.retried()
    }

    pub(crate) fn count_fetch(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Aborted => &self.aborted,
            Outcome::Retried => &self.retried,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
