//! The producer: claims jobs in batches into a local queue and starts them as slots free.
//!
//! It holds the jobs it runs (one slot each, `concurrency` slots) and, waiting in its local
//! queue, up to `prefetch` more: it claims in one round trip (`fetch_jobs`, same rules as
//! `procrastinate_fetch_job_v2`) enough jobs to fill both, up to [`FETCH_BATCH_MAX`], and
//! claims again once half the local queue is left (at least a round of slots), so each
//! claim carries a batch, the slots keep working while it is in flight, and on a backlog
//! the claims (the drain's critical path) run back to back. Waiting jobs start by priority
//! DESC then id ASC, whichever claim brought them. A claimed job is `doing` in the
//! database, so it holds its lock there from the claim on.
//!
//! The prefetch is what the slots start within [`PREFETCH_HORIZON`] at the pace of recent
//! attempts (`concurrency x horizon / mean run time`), capped by the configured prefetch:
//! a full local queue for short jobs, none for long ones (which would otherwise wait here
//! while another worker could run them), and none before the first attempt has ended.
//!
//! After a full batch it claims again as soon as the local queue is low; after a short or
//! empty one it sleeps until woken: by a NOTIFY (through the notifier), by the completer (a
//! lock freed, a job retried), or by the polling interval. Wake-ups coalesce: a burst of a
//! thousand notifications while it fetches leads to one more fetch, not a thousand. While
//! a finished job holding a lock is unwritten it neither claims nor starts waiting jobs,
//! and after the write it claims before starting any (the lock's next job may come first:
//! `Unwritten` in the worker module). In one-shot mode it returns when a fetch finds
//! nothing and every job it fetched has its outcome written (a written outcome may free a
//! lock or schedule a retry).
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
use tokio_util::sync::CancellationToken;

use super::WorkerId;
use super::executor::{Executor, RunTimes};
use super::running::Running;
use crate::Error;
use crate::context::AbortReason;
use crate::job::Job;
use crate::store::Store;

/// Most jobs claimed by one fetch.
pub const FETCH_BATCH_MAX: usize = 500;

/// How long, at the recent pace, the last job of the local queue may wait for a slot.
pub const PREFETCH_HORIZON: Duration = Duration::from_millis(100);

/// The producer's handles.
pub(crate) struct Producer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) worker_id: WorkerId,
    pub(crate) queues: Option<Vec<String>>,
    /// Jobs run at once.
    pub(crate) concurrency: usize,
    /// One permit per running job (`concurrency` of them).
    pub(crate) slots: Arc<Semaphore>,
    /// Most jobs waiting in the local queue.
    pub(crate) prefetch: usize,
    pub(crate) run_times: RunTimes,
    pub(crate) executor: Executor,
    pub(crate) running: Running,
    pub(crate) wake: Arc<Notify>,
    pub(crate) polling_interval: Duration,
    pub(crate) wait: bool,
    pub(crate) stop: CancellationToken,
    /// Cancelled on a forced stop: stop retrying a hand-back the database does not take.
    pub(crate) give_up: CancellationToken,
    /// Jobs fetched whose outcome is not written yet.
    pub(crate) unwritten: super::Unwritten,
    pub(crate) stats: Arc<super::WorkerStats>,
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
        let mut backoff = Duration::from_millis(100);
        let mut fetch_now = true;
        let mut next_poll = Instant::now() + self.polling_interval;
        // No claim before this (backoff after a failed one).
        let mut not_before = Instant::now();
        // Lock outcomes written before the last claim began: that claim saw those locks free.
        let mut locks_seen = self.unwritten.locks_released();
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let hold = self.holds_starts(locks_seen);
            self.start_ready(&mut queue, hold);
            let prefetch = self.prefetch_now();
            // Claim again once half the local queue is left (at least a round of slots):
            // on a backlog the claims then run back to back, each carrying half a local
            // queue, while the other half keeps the slots busy. Or at once when a lock was
            // freed: its next job may come before the waiting ones.
            let lock_freed = self.unwritten.locks_released() != locks_seen;
            let refill_at = (prefetch / 2).max(prefetch.min(self.concurrency));
            let may_fetch = (lock_freed || fetch_now && queue.len() <= refill_at)
                && !self.unwritten.locks_pending()
                && Instant::now() >= not_before;
            let room = (self.slots.available_permits() + prefetch).saturating_sub(queue.len());
            // With no room, the claim waits for a slot and keeps it for its first job.
            let mut reserved = None;
            if !may_fetch || room == 0 {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break,
                    () = self.running.waiting_aborted() => continue,
                    slot = self.slots.clone().acquire_owned(), if may_fetch || !hold && !queue.is_empty() => {
                        let Ok(slot) = slot else { break };
                        if !self.holds_starts(locks_seen) {
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
            let room =
                (self.slots.available_permits() + usize::from(reserved.is_some()) + prefetch)
                    .saturating_sub(queue.len());
            let wanted = room.clamp(1, FETCH_BATCH_MAX);
            let released = self.unwritten.locks_released();
            self.stats.count_fetch();
            let fetch = self
                .store
                .fetch_jobs(self.queues.as_deref(), self.worker_id.get(), wanted);
            tokio::pin!(fetch);
            // Waiting jobs keep starting while the claim is in flight (it is never
            // cancelled: jobs the database gave this worker must reach the local queue).
            let fetched = loop {
                tokio::select! {
                    biased;
                    fetched = &mut fetch => break fetched,
                    slot = self.slots.clone().acquire_owned(), if !queue.is_empty() && !self.holds_starts(locks_seen) && !self.stop.is_cancelled() => {
                        if self.holds_starts(locks_seen) || self.stop.is_cancelled() {
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
                    backoff = Duration::from_millis(100);
                    locks_seen = released;
                    jobs
                }
                Err(error) if is_missing_worker(&error) => {
                    // Another worker pruned this one as stalled (its heartbeat was late),
                    // so claiming jobs under its id breaks the foreign key: register again.
                    match self.store.register_worker().await {
                        Ok(id) => {
                            tracing::warn!(
                                old_id = self.worker_id.get(),
                                new_id = id,
                                "this worker was pruned as stalled by another one; registered again"
                            );
                            self.worker_id.set(id);
                        }
                        Err(error) => tracing::warn!(%error, "registering the worker again failed"),
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "fetching jobs failed; retrying");
                    fetch_now = true;
                    not_before = Instant::now() + backoff;
                    next_poll = not_before;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let found = jobs.len();
            self.unwritten.fetched(found);
            tracing::trace!(wanted, found, "fetched jobs");
            for job in jobs {
                self.running.claimed(job.id);
                queue.push(job);
            }
            fetch_now = found == wanted;
            if !self.wait && found < wanted {
                if found == 0 && self.unwritten.count() == 0 {
                    tracing::info!("no job left: stopping (one-shot)");
                    break;
                }
                // Outcomes still being written may free a lock or schedule a retry: look
                // again now when this fetch found some, or once the completer has written
                // them (it wakes the producer after every write in one-shot mode).
                fetch_now = found > 0;
            }
        }
        self.hand_back(queue).await;
    }

    /// Waiting jobs do not start while a finished lock job is unwritten, nor after its
    /// write until a claim has seen its lock free (the lock's next job may come first).
    fn holds_starts(&self, locks_seen: u64) -> bool {
        self.unwritten.locks_pending() || self.unwritten.locks_released() != locks_seen
    }

    /// Jobs to claim beyond the free slots: what the slots start within the horizon at
    /// the pace of recent attempts, at most the configured prefetch.
    fn prefetch_now(&self) -> usize {
        let Some(mean) = self.run_times.mean() else {
            return 0;
        };
        let within =
            PREFETCH_HORIZON.as_nanos() * self.concurrency as u128 / mean.as_nanos().max(1);
        usize::try_from(within).map_or(self.prefetch, |n| n.min(self.prefetch))
    }

    /// Ends the waiting jobs that were aborted, and (unless `hold`) starts waiting jobs
    /// while slots are free.
    fn start_ready(&self, queue: &mut LocalQueue, hold: bool) {
        if self.running.take_waiting_abort() {
            queue.jobs.retain(|_, job| {
                if self.running.is_aborted(job.id) {
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
            if self.running.is_aborted(job.id) {
                self.executor.abort_waiting(job);
            } else {
                waiting.push(job);
            }
        }
        if waiting.is_empty() {
            return;
        }
        let ids: Vec<i64> = waiting.iter().map(|job| job.id).collect();
        let mut backoff = Duration::from_millis(50);
        let handed = loop {
            match self.store.hand_back_jobs(self.worker_id.get(), &ids).await {
                Ok(handed) => break handed,
                // The connection, or a job deferred meanwhile with the queueing lock of
                // one handed back (the next try sees it and keeps that one).
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, jobs = ids.len(), ?backoff, "cannot hand back the jobs that did not start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.give_up.cancelled() => {
                            tracing::error!(?ids, "forced stop: these jobs were not handed back; they stay doing and will be found stalled");
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
        let mut gone = 0;
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
                self.running.remove(job.id);
                gone += 1;
            }
        }
        self.unwritten.handed_back(gone);
        // A job that cannot go back is this worker's to run: it starts as a slot frees.
        for job in kept {
            tracing::info!(
                job_id = job.id,
                "a todo job holds this job's queueing lock: running it before stopping"
            );
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot,
                () = self.give_up.cancelled() => {
                    // Forced stop: free the slots now; this job is aborted with the
                    // running ones once it starts.
                    self.running.abort_all(AbortReason::Shutdown);
                    self.slots.clone().acquire_owned().await
                }
            };
            let Ok(slot) = slot else { return };
            self.executor.spawn(job, slot);
        }
    }
}

/// The claim broke `procrastinate_jobs.worker_id`'s foreign key: our worker row is gone.
fn is_missing_worker(error: &Error) -> bool {
    matches!(error, Error::Database(db) if db.code() == Some("23503"))
}

/// Errors worth trying the hand-back again for.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Connect { .. } | Error::AlreadyEnqueued { .. } => true,
        Error::Database(db) => db.is_connection(),
        _ => false,
    }
}
