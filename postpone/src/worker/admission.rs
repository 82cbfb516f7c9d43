//! Admission: whether the producer may claim now, and how many jobs.
//!
//! The producer holds the jobs it runs (one slot each) and, waiting in its local queue, a
//! prefetch: what its slots start within [`PREFETCH_HORIZON`] at the pace of recent
//! attempts (`concurrency x horizon / mean run time`), capped by the configured prefetch
//! (a full local queue for short jobs, none for long ones, which would otherwise wait here
//! while another worker could run them, and none before the first attempt has ended). A
//! claim fills the free slots and the prefetch, up to [`FETCH_BATCH_MAX`].
//!
//! It claims again once half the local queue is left (at least a round of slots): on a
//! backlog the claims then run back to back, each carrying half a local queue, while the
//! other half keeps the slots busy. Or at once when a lock was freed: its next job may come
//! before the waiting ones. Never while a finished lock job is unwritten (the worker
//! state's invariant 2).
//!
//! Under flow control (ADR 18) the prefetch is capped at the concurrency: a claimed job
//! counts as running in its buckets while it waits, so at most one round of slots waits.
//!
//! Everything that limits what a worker takes decides here, so a future limit (paused
//! queues, rate limits) is one more rule in [`Admission`], not a change to the fetch loop.

use std::time::Duration;

use super::state::WorkerState;

/// Most jobs claimed by one fetch.
pub const FETCH_BATCH_MAX: usize = 500;

/// How long, at the recent pace, the last job of the local queue may wait for a slot.
pub const PREFETCH_HORIZON: Duration = Duration::from_millis(100);

/// How long a start watermark write is taken to last before one was measured.
const MARK_ROUND_TRIP_GUESS: Duration = Duration::from_millis(1);

/// What the producer knows when it considers a claim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    /// A claim was asked for: by a wake-up, the polling interval, or a full last batch.
    pub(crate) asked: bool,
    /// Jobs waiting in the local queue.
    pub(crate) queued: usize,
    /// Free slots (a slot reserved for the claim's first job counts).
    pub(crate) free_slots: usize,
    /// A lock outcome was written since the last claim began.
    pub(crate) lock_freed: bool,
    /// [`Admission::prefetch`], read once per look.
    pub(crate) prefetch: usize,
}

/// The producer's admission rules.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    concurrency: usize,
    prefetch_max: usize,
    state: WorkerState,
}

impl Admission {
    /// Rules for a worker of this concurrency and configured prefetch.
    pub(crate) fn new(concurrency: usize, prefetch_max: usize, state: WorkerState) -> Self {
        Self {
            concurrency,
            prefetch_max,
            state,
        }
    }

    /// Jobs to claim beyond the free slots now (see the module docs).
    pub(crate) fn prefetch(&self) -> usize {
        let Some(mean) = self.state.mean_run_time() else {
            return 0;
        };
        // Under flow control a waiting job holds its slot in its buckets: at most one round
        // of slots waits (ADR 18).
        let max = if self.state.flow() {
            self.prefetch_max.min(self.concurrency)
        } else {
            self.prefetch_max
        };
        let within =
            PREFETCH_HORIZON.as_nanos() * self.concurrency as u128 / mean.as_nanos().max(1);
        usize::try_from(within).map_or(max, |n| n.min(max))
    }

    /// Whether the producer may claim now.
    pub(crate) fn may_claim(&self, view: View) -> bool {
        let prefetch = view.prefetch;
        let refill_at = (prefetch / 2).max(prefetch.min(self.concurrency));
        (view.lock_freed || view.asked && view.queued <= refill_at) && !self.state.locks_pending()
    }

    /// Jobs the slots and the local queue have room for (0: a claim must wait for a slot).
    pub(crate) fn room(&self, view: View) -> usize {
        (view.free_slots + view.prefetch).saturating_sub(view.queued)
    }

    /// How many jobs one claim asks for.
    pub(crate) fn wanted(&self, view: View) -> usize {
        self.room(view).clamp(1, FETCH_BATCH_MAX)
    }

    /// How many jobs the busy slots start within one start watermark write (ADR 11), at
    /// the pace of the quickest recent attempts: `concurrency x write time / quick run
    /// time` (the quickest, not the mean: one slow attempt among quick ones must not make
    /// the slots wait). The watermark runs that far ahead of the free slots, twice over,
    /// so no slot waits for it: for jobs shorter than a write that is the whole local
    /// queue (each claim covers what it brings), for long jobs nothing but the free slots.
    pub(crate) fn mark_ahead(&self) -> usize {
        let Some(mean) = self.state.quick_run_time() else {
            return 0;
        };
        let write = self
            .state
            .mark_round_trip()
            .unwrap_or(MARK_ROUND_TRIP_GUESS);
        let within = (write.as_nanos() * self.concurrency as u128) / mean.as_nanos().max(1);
        usize::try_from(within).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::job::Job;
    use crate::worker::WorkerStats;

    fn view(admission: &Admission, queued: usize, free_slots: usize) -> View {
        View {
            asked: true,
            queued,
            free_slots,
            lock_freed: false,
            prefetch: admission.prefetch(),
        }
    }

    #[test]
    fn the_prefetch_follows_the_pace_of_attempts() {
        let state = WorkerState::new(Arc::new(WorkerStats::default()));
        let admission = Admission::new(10, 400, state.clone());
        assert_eq!(admission.prefetch(), 0, "nothing before an attempt ended");
        let job: Job = serde_json::from_value(serde_json::json!({
            "id": 1, "queue_name": "q", "task_name": "t", "priority": 0, "lock": null,
            "queueing_lock": null, "args": {}, "status": "doing", "scheduled_at": null,
            "attempts": 0, "abort_requested": false, "worker_id": 1
        }))
        .expect("a job");
        state.claimed(std::slice::from_ref(&job));
        state.finished(&job, Some(Duration::from_millis(10)));
        // 10 slots x 100 ms / 10 ms = 100 jobs.
        assert_eq!(admission.prefetch(), 100);
        assert_eq!(admission.wanted(view(&admission, 0, 10)), 110);
        assert!(
            admission.may_claim(view(&admission, 50, 0)),
            "half left: claim"
        );
        assert!(
            !admission.may_claim(view(&admission, 51, 0)),
            "more than half left"
        );
        assert_eq!(admission.room(view(&admission, 110, 0)), 0);
        assert_eq!(
            admission.wanted(view(&admission, 110, 0)),
            1,
            "at least one"
        );
        // Under flow control, at most one round of slots waits.
        state.flow_on();
        assert_eq!(admission.prefetch(), 10);
        assert_eq!(admission.wanted(view(&admission, 0, 10)), 20);
    }
}
