//! The producer: claims jobs in batches into a local queue and starts them as slots free.
//!
//! It holds the jobs it runs (one slot each, `concurrency` slots) and, waiting in its local
//! queue, a prefetch; how many it claims, and when, is the `admission` module's decision. A
//! claim is one round trip (`fetch_jobs`, same rules as `procrastinate_fetch_job_v2`), so
//! each claim carries a batch, the slots keep working while it is in flight, and on a
//! backlog the claims (the drain's critical path) run back to back. Waiting jobs start by
//! priority DESC then id ASC, whichever claim brought them. A claimed job is `doing` in the
//! database, so it holds its lock there from the claim on.
//!
//! After a full batch it claims again as soon as admission allows; after a short or empty
//! one it sleeps until woken: by a notification (through the notifier), by the completer (a
//! lock freed, a job retried), or by the polling interval. Wake-ups coalesce: a burst of a
//! thousand notifications while it fetches leads to one more fetch, not a thousand. The
//! lock-order rules (when waiting jobs may start) are the worker state's invariants 2 and 3
//! (`worker/state.rs`). In one-shot mode it returns when a fetch finds nothing and every job
//! it fetched has its outcome written (a written outcome may free a lock or schedule a
//! retry).
//!
//! A claim refused because this worker's row is gone (another worker pruned it) renews the
//! registration and claims again; any other failure is retried with backoff.
//!
//! A waiting job whose abort is requested ends `aborted` without running. On stop, the
//! waiting jobs are handed back (`hand_back_jobs`: `todo` again, no worker, attempts
//! unchanged) for any worker to take.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::admission::{Admission, View};
use super::backoff::Backoff;
use super::executor::Executor;
use super::registration::Registration;
use super::shutdown::Shutdown;
use super::state::WorkerState;
use crate::Error;
use crate::context::AbortReason;
use crate::job::Job;
use crate::store::Store;

pub use super::admission::{FETCH_BATCH_MAX, PREFETCH_HORIZON};

/// The producer's handles.
pub(crate) struct Producer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registration: Registration,
    pub(crate) queues: Option<Vec<String>>,
    /// One permit per running job (`concurrency` of them).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) admission: Admission,
    pub(crate) state: WorkerState,
    pub(crate) executor: Executor,
    /// Notified to ask for a claim (notifications, the completer).
    pub(crate) wake: Arc<Notify>,
    pub(crate) polling_interval: Duration,
    pub(crate) wait: bool,
    pub(crate) shutdown: Shutdown,
}

/// Claimed jobs waiting for a slot, in starting order (priority DESC, id ASC).
#[derive(Default)]
struct LocalQueue {
    jobs: BTreeMap<(Reverse<i32>, i64), Job>,
}

impl LocalQueue {
    fn push(&mut self, job: Job) {
        self.jobs.insert((Reverse(job.priority), job.id), job);
    }

    fn pop(&mut self) -> Option<Job> {
        self.jobs.pop_first().map(|(_, job)| job)
    }

    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

impl Producer {
    /// Runs until stopped (or, one-shot, until no job is left); then hands back the jobs
    /// that did not start.
    pub(crate) async fn run(self) {
        let mut queue = LocalQueue::default();
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut fetch_now = true;
        let mut next_poll = Instant::now() + self.polling_interval;
        // No claim before this (backoff after a failed one).
        let mut not_before = Instant::now();
        // Lock outcomes written before the last claim began: that claim saw those locks free.
        let mut locks_seen = self.state.locks_released();
        loop {
            if self.shutdown.is_stopping() {
                break;
            }
            let hold = self.state.holds_starts(locks_seen);
            self.start_ready(&mut queue, hold);
            let mut view = View {
                asked: fetch_now,
                queued: queue.len(),
                free_slots: self.slots.available_permits(),
                lock_freed: self.state.locks_released() != locks_seen,
                prefetch: self.admission.prefetch(),
            };
            let may_fetch = self.admission.may_claim(view) && Instant::now() >= not_before;
            // With no room, the claim waits for a slot and keeps it for its first job.
            let mut reserved = None;
            if !may_fetch || self.admission.room(view) == 0 {
                tokio::select! {
                    biased;
                    () = self.shutdown.stopping() => break,
                    () = self.state.waiting_aborted() => continue,
                    slot = self.slots.clone().acquire_owned(), if may_fetch || !hold && !queue.is_empty() => {
                        let Ok(slot) = slot else { break };
                        if !self.state.holds_starts(locks_seen) {
                            if let Some(job) = queue.pop() {
                                self.executor.spawn(job, slot);
                                continue;
                            }
                        }
                        if !may_fetch {
                            continue;
                        }
                        reserved = Some(slot);
                    }
                    // Completer wake-ups (a lock freed) also land here.
                    () = self.wake.notified() => {
                        fetch_now = true;
                        continue;
                    }
                    () = tokio::time::sleep_until(next_poll) => {
                        fetch_now = true;
                        next_poll = Instant::now() + self.polling_interval;
                        continue;
                    }
                }
            }
            view.queued = queue.len();
            view.free_slots = self.slots.available_permits() + usize::from(reserved.is_some());
            let wanted = self.admission.wanted(view);
            let released = self.state.locks_released();
            let writes = self.state.writes();
            self.state.claiming();
            let fetch =
                self.store
                    .fetch_jobs(self.queues.as_deref(), self.registration.id(), wanted);
            tokio::pin!(fetch);
            // Waiting jobs keep starting while the claim is in flight (it is never
            // cancelled: jobs the database gave this worker must reach the local queue).
            let fetched = loop {
                tokio::select! {
                    biased;
                    fetched = &mut fetch => break fetched,
                    slot = self.slots.clone().acquire_owned(), if !queue.is_empty() && !self.state.holds_starts(locks_seen) && !self.shutdown.is_stopping() => {
                        if self.state.holds_starts(locks_seen) || self.shutdown.is_stopping() {
                            continue;
                        }
                        if let (Ok(slot), Some(job)) = (slot, queue.pop()) {
                            self.executor.spawn(job, slot);
                        }
                    }
                }
            };
            drop(reserved);
            next_poll = Instant::now() + self.polling_interval;
            let jobs = match fetched {
                Ok(jobs) => {
                    backoff.reset();
                    locks_seen = released;
                    jobs
                }
                Err(Error::WorkerNotRegistered { .. }) => {
                    self.registration.renew().await;
                    continue;
                }
                Err(error) => {
                    let wait = backoff.next();
                    tracing::warn!(%error, ?wait, "fetching jobs failed; retrying");
                    fetch_now = true;
                    not_before = Instant::now() + wait;
                    next_poll = not_before;
                    continue;
                }
            };
            let found = jobs.len();
            self.state.claimed(&jobs);
            tracing::trace!(wanted, found, "fetched jobs");
            for job in jobs {
                queue.push(job);
            }
            fetch_now = found == wanted;
            if !self.wait && found < wanted {
                // Nothing left only if nothing is unwritten and nothing was written while
                // the claim ran (the state's invariant 5): a retry or a freed lock written
                // meanwhile is a job this claim could not see.
                if found == 0 && self.state.unwritten() == 0 && self.state.writes() == writes {
                    tracing::info!("no job left: stopping (one-shot)");
                    break;
                }
                // Outcomes still being written may free a lock or schedule a retry: look
                // again now when this fetch found some or an outcome was written while it
                // ran, or once the completer has written them (it wakes the producer after
                // every write in one-shot mode).
                fetch_now = found > 0 || self.state.writes() != writes;
            }
        }
        self.hand_back(queue).await;
    }

    /// Ends the waiting jobs that were aborted, and (unless `hold`) starts waiting jobs
    /// while slots are free.
    fn start_ready(&self, queue: &mut LocalQueue, hold: bool) {
        if self.state.take_waiting_abort() {
            queue.jobs.retain(|_, job| {
                if self.state.is_aborted(job.id) {
                    self.executor.abort_waiting(job.clone());
                    false
                } else {
                    true
                }
            });
        }
        while !hold && !queue.is_empty() {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return;
            };
            if let Some(job) = queue.pop() {
                self.executor.spawn(job, slot);
            }
        }
    }

    /// Hands the jobs that did not start back to the database: `todo`, no worker,
    /// attempts unchanged. Those whose abort was requested end `aborted` instead, and
    /// those whose queueing lock a `todo` job holds now run before the worker stops.
    async fn hand_back(&self, mut queue: LocalQueue) {
        let mut waiting = Vec::with_capacity(queue.len());
        while let Some(job) = queue.pop() {
            if self.state.is_aborted(job.id) {
                self.executor.abort_waiting(job);
            } else {
                waiting.push(job);
            }
        }
        if waiting.is_empty() {
            return;
        }
        let ids: Vec<i64> = waiting.iter().map(|job| job.id).collect();
        let mut backoff = Backoff::new(Duration::from_millis(50));
        let handed = loop {
            match self
                .store
                .hand_back_jobs(self.registration.id(), &ids)
                .await
            {
                Ok(handed) => break handed,
                // The connection; or a job deferred meanwhile with the queueing lock of one
                // handed back, between the statement's check and its write: the next try
                // sees that job and keeps this one.
                Err(error)
                    if error.is_transient() || matches!(error, Error::AlreadyEnqueued { .. }) =>
                {
                    let wait = backoff.next();
                    tracing::warn!(%error, jobs = ids.len(), ?wait, "cannot hand back the jobs that did not start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.forced() => {
                            tracing::error!(?ids, "forced stop: these jobs were not handed back; they stay doing and will be found stalled");
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, ?ids, "cannot hand back the jobs that did not start; they stay doing and will be found stalled");
                    return;
                }
            }
        };
        tracing::info!(
            jobs = handed.todo.len(),
            "handed back the jobs that did not start"
        );
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for job in waiting {
            if handed.abort_requested.contains(&job.id) {
                // Its abort was requested after the last poll: it ends aborted, as it
                // would have had the request come earlier.
                self.executor.abort_waiting(job);
            } else if handed.queueing_lock_taken.contains(&job.id) {
                kept.push(job);
            } else {
                if !handed.todo.contains(&job.id) {
                    tracing::warn!(
                        job_id = job.id,
                        "job no longer held by this worker when handed back; left as it is"
                    );
                }
                gone.push(job.id);
            }
        }
        self.state.handed_back(&gone);
        // A job that cannot go back is this worker's to run: it starts as a slot frees.
        for job in kept {
            tracing::info!(
                job_id = job.id,
                "a todo job holds this job's queueing lock: running it before stopping"
            );
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot,
                () = self.shutdown.forced() => {
                    // Forced stop: free the slots now; this job is aborted with the
                    // running ones once it starts.
                    self.state.abort_all(AbortReason::Shutdown);
                    self.slots.clone().acquire_owned().await
                }
            };
            let Ok(slot) = slot else { return };
            self.executor.spawn(job, slot);
        }
    }
}
