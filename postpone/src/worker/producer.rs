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
//! A job starts only once the database holds a start watermark that covers it (ADR 11): a
//! claim covers the jobs it brings for free slots; when the ready jobs of the local queue
//! run low, the producer asks for a later watermark, as far ahead as the slots start jobs
//! within one watermark write (admission's `mark_ahead`), and the marker writes it. So
//! after a `kill -9` the rescue knows which claimed jobs never started.
//!
//! A claim refused because this worker's row is gone (another worker pruned it, and may
//! have rescued its jobs) hands the local queue back, renews the registration and claims
//! again; any other failure is retried with backoff.
//!
//! Claims skip paused queues in the database. When a queue is paused (a notification, or
//! every polling interval as the fallback) the waiting jobs of paused queues go back to
//! `todo` as on stop; running ones finish.
//!
//! Under flow control (ADR 18: the app has limits, or the database stores some, read every
//! polling interval until then) claims take `fetch_jobs_flow`, which starts no job beyond
//! its buckets' limits; after a short claim the producer sleeps until the next
//! rate-limited start is due, when one is, rather than a polling interval.
//!
//! A waiting job whose abort is requested ends `aborted` without running. On stop, the
//! waiting jobs are handed back (`hand_back_jobs`: `todo` again, no worker, attempts
//! unchanged) for any worker to take.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use super::admission::{Admission, View};
use super::backoff::Backoff;
use super::emit::Emitter;
use super::executor::Executor;
use super::local_queue::LocalQueue;
use super::registration::Registration;
use super::shutdown::Shutdown;
use super::state::WorkerState;
use crate::Error;
use crate::context::AbortReason;
use crate::job::Job;
use crate::store::{FetchJobsParams, StartMark, Store};
use crate::telemetry::{BatchKind, Event};

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
    pub(crate) emitter: Emitter,
    pub(crate) executor: Executor,
    /// Notified to ask for a claim (notifications, the completer).
    pub(crate) wake: Arc<Notify>,
    pub(crate) polling_interval: Duration,
    pub(crate) wait: bool,
    pub(crate) shutdown: Shutdown,
}

impl Producer {
    /// Runs until stopped (or, one-shot, until no job is left); then hands back the jobs
    /// that did not start.
    pub(crate) async fn run(self) {
        let mut queue = LocalQueue::default();
        let mut backoff = Backoff::new(Duration::from_millis(100));
        let mut fetch_now = true;
        let mut next_poll = Instant::now() + self.polling_interval;
        // No round trip before this (backoff after a failed one).
        let mut not_before = Instant::now();
        // Lock outcomes written before the last claim began: that claim saw those locks free.
        let mut locks_seen = self.state.locks_released();
        // When to read the paused queues again without a notification.
        let mut pauses_due = Instant::now() + self.polling_interval;
        loop {
            if self.shutdown.is_stopping() {
                break;
            }
            // Claims skip paused queues in the database; the jobs of a queue paused since
            // they were claimed go back. With none waiting there is nothing to read.
            let pauses_changed = self.state.take_pauses_changed();
            if (pauses_changed || Instant::now() >= pauses_due) && queue.len() > 0 {
                pauses_due = Instant::now() + self.polling_interval;
                self.hand_back_paused(&mut queue).await;
            }
            queue.raise(self.state.committed_mark());
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
            // Ready jobs fall short of the free slots and what the busy ones start within a
            // watermark write while others wait: ask for the watermark over twice that
            // (the marker writes it). With every slot busy on long jobs nothing is marked,
            // so a kill finds the waiting jobs not started.
            let ahead = self.admission.mark_ahead();
            // Ready jobs wanted: one for each free slot, and twice what the busy ones start
            // within a watermark write.
            let target = view.free_slots + 2 * ahead;
            let mut marking = self.state.mark_pending();
            if !marking && queue.waiting() > 0 && queue.ready() < view.free_slots + ahead {
                if let Some(mark) = queue.mark_for(target - queue.ready()) {
                    self.state.want_mark(mark);
                    marking = true;
                }
            }
            // With no room, the claim waits for a slot and keeps it for its first job.
            let mut reserved = None;
            if !may_fetch || self.admission.room(view) == 0 {
                tokio::select! {
                    biased;
                    () = self.shutdown.stopping() => break,
                    () = self.state.waiting_aborted() => continue,
                    // A later watermark is written: the jobs it covers are ready.
                    () = self.state.mark_committed() => continue,
                    // A slot frees: it starts a ready job, or reserves itself for the claim,
                    // or (jobs wait for the watermark) is let go, so the next look asks.
                    slot = self.slots.clone().acquire_owned(), if may_fetch || !hold && queue.ready() > 0 || !marking && queue.waiting() > 0 => {
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
                        self.check_flow().await;
                        continue;
                    }
                }
            }
            view.queued = queue.len();
            view.free_slots = self.slots.available_permits() + usize::from(reserved.is_some());
            let wanted = self.admission.wanted(view);
            // The claim covers the jobs it brings up to the ready jobs wanted, so they start
            // the moment it returns.
            let start = target.saturating_sub(queue.len());
            let mark = None;
            let released = self.state.locks_released();
            let writes = self.state.writes();
            self.state.claiming();
            let params = FetchJobsParams {
                queues: self.queues.as_deref(),
                worker_id: self.registration.id(),
                limit: wanted,
                start,
                mark,
                flow: self.state.flow(),
            };
            let began = Instant::now();
            let span = tracing::info_span!(
                "postpone.claim",
                worker_id = params.worker_id,
                limit = wanted,
                jobs = tracing::field::Empty,
            );
            let fetch = self.store.fetch_jobs(&params).instrument(span.clone());
            tokio::pin!(fetch);
            // Ready jobs keep starting while the claim is in flight (it is never
            // cancelled: jobs the database gave this worker must reach the local queue).
            let fetched = loop {
                tokio::select! {
                    biased;
                    fetched = &mut fetch => break fetched,
                    () = self.state.mark_committed() => queue.raise(self.state.committed_mark()),
                    slot = self.slots.clone().acquire_owned(), if queue.ready() > 0 && !self.state.holds_starts(locks_seen) && !self.shutdown.is_stopping() => {
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
            let jobs = match fetched {
                Ok(jobs) => {
                    backoff.reset();
                    jobs
                }
                Err(Error::WorkerNotRegistered { .. }) => {
                    // Pruned as stalled by another worker, which may have rescued this one's
                    // jobs: give the waiting ones back, and start over under a new id.
                    self.hand_back(queue.take_all()).await;
                    queue.reset_mark();
                    self.state.reset_marks();
                    self.registration.renew().await;
                    continue;
                }
                Err(error) => {
                    self.emitter.database_error("claim", &error);
                    let wait = backoff.next();
                    tracing::warn!(%error, ?wait, "fetching jobs failed; retrying");
                    fetch_now = true;
                    not_before = Instant::now() + wait;
                    next_poll = not_before;
                    continue;
                }
            };
            // The watermark the claim wrote: the one it carried, and its start-th job.
            if let Some(mark) = mark {
                self.state.mark_written(mark);
            }
            if let Some(job) = jobs.get(start.min(jobs.len()).wrapping_sub(1)) {
                self.state.mark_written(StartMark::at(job));
            }
            queue.raise(self.state.committed_mark());
            next_poll = Instant::now() + self.polling_interval;
            locks_seen = released;
            let found = jobs.len();
            span.record("jobs", found);
            self.state.claimed(&jobs);
            self.emitter.emit(|worker_id| Event::Claimed {
                worker_id,
                jobs: &jobs,
                duration: began.elapsed(),
            });
            tracing::trace!(wanted, found, "fetched jobs");
            for job in jobs {
                queue.push(job);
            }
            fetch_now = found == wanted;
            // Jobs may wait for a rate-limited bucket: look again when it has room.
            let flow_due = if params.flow && found < wanted {
                self.flow_due().await
            } else {
                None
            };
            if let Some(due) = flow_due {
                next_poll = next_poll.min(due);
            }
            if !self.wait && found < wanted {
                // Nothing left only if nothing is unwritten and nothing was written while
                // the claim ran (the state's invariant 5): a retry or a freed lock written
                // meanwhile is a job this claim could not see.
                // Jobs waiting for a rate-limited bucket are left too: wait for them.
                if found == 0
                    && self.state.unwritten() == 0
                    && self.state.writes() == writes
                    && flow_due.is_none()
                {
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
        self.hand_back(queue.take_all()).await;
    }

    /// Without flow control yet: turns it on when another process stored limits (read
    /// once a polling interval; a worker whose app has limits starts with it on).
    async fn check_flow(&self) {
        if self.state.flow() {
            return;
        }
        match self.store.flow_in_use().await {
            Ok(true) => {
                tracing::info!("flow-control limits stored by another process: claims honour them");
                self.state.flow_on();
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read whether flow-control limits are in use; trying again at the next poll");
            }
        }
    }

    /// When a rate-limited bucket that is full now has room again (`None`: none is full,
    /// or that cannot be read; the polling interval applies).
    async fn flow_due(&self) -> Option<Instant> {
        match self.store.flow_next_start().await {
            Ok(wait) => wait.map(|wait| Instant::now() + wait),
            Err(error) => {
                tracing::warn!(%error, "cannot read when rate-limited jobs may start; looking again at the next poll");
                None
            }
        }
    }

    /// Hands back the waiting jobs of the paused queues (read from the store).
    async fn hand_back_paused(&self, queue: &mut LocalQueue) {
        let paused = match self.store.list_queue_pauses().await {
            Ok(paused) => paused,
            Err(error) => {
                tracing::warn!(%error, "cannot read the paused queues; trying again at the next poll");
                return;
            }
        };
        if paused.is_empty() {
            return;
        }
        let jobs = queue.take_where(|job| paused.iter().any(|p| p.queue_name == job.queue_name));
        if jobs.is_empty() {
            return;
        }
        let queues: Vec<&str> = paused.iter().map(|p| p.queue_name.as_str()).collect();
        tracing::info!(
            jobs = jobs.len(),
            ?queues,
            "queues paused: handing back their waiting jobs"
        );
        // A job that cannot go back (a todo job took its queueing lock, or the database
        // cannot be reached) is this worker's to run: never dropped.
        let kept = match self.give_back(jobs).await {
            Ok(kept) => kept,
            Err(jobs) => {
                tracing::warn!(
                    jobs = jobs.len(),
                    "the paused queues' waiting jobs could not be handed back: running them"
                );
                jobs
            }
        };
        for job in kept {
            queue.push(job);
        }
    }

    /// Ends the waiting jobs that were aborted, and (unless `hold`) starts ready jobs
    /// while slots are free.
    fn start_ready(&self, queue: &mut LocalQueue, hold: bool) {
        if self.state.take_waiting_abort() {
            queue.retain(|job| {
                if self.state.is_aborted(job.id) {
                    self.executor.abort_waiting(job.clone());
                    false
                } else {
                    true
                }
            });
        }
        while !hold && queue.ready() > 0 {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return;
            };
            if let Some(job) = queue.pop() {
                self.executor.spawn(job, slot);
            }
        }
    }

    /// Hands the jobs that did not start back to the database (as [`Self::give_back`]);
    /// those whose queueing lock a `todo` job holds now run before the worker stops.
    async fn hand_back(&self, jobs: Vec<Job>) {
        let Ok(kept) = self.give_back(jobs).await else {
            tracing::error!(
                "the jobs that did not start stay doing: they are rescued once this worker is gone"
            );
            return;
        };
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
            // Before it starts, the watermark covers it (it is this worker's to run).
            if let Err(error) = self
                .store
                .mark_started(self.registration.id(), StartMark::at(&job))
                .await
            {
                tracing::warn!(%error, job_id = job.id, "could not record the job's start; running it all the same");
            }
            self.executor.spawn(job, slot);
        }
    }

    /// Gives jobs that did not start back to the database: `todo`, no worker, attempts
    /// unchanged. Those whose abort was requested end `aborted` instead. Returns those
    /// that cannot go back because a `todo` job holds their queueing lock now; or, when
    /// the database refused or a forced stop cut the retries, every job it did not give
    /// back (still this worker's).
    async fn give_back(&self, jobs: Vec<Job>) -> Result<Vec<Job>, Vec<Job>> {
        let mut waiting = Vec::with_capacity(jobs.len());
        for job in jobs {
            if self.state.is_aborted(job.id) {
                self.executor.abort_waiting(job);
            } else {
                waiting.push(job);
            }
        }
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = waiting.iter().map(|job| job.id).collect();
        let mut backoff = Backoff::new(Duration::from_millis(50));
        let began = Instant::now();
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
                    self.emitter.database_error("hand_back", &error);
                    let wait = backoff.next();
                    tracing::warn!(%error, jobs = ids.len(), ?wait, "cannot hand back the jobs that did not start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.forced() => {
                            tracing::error!(?ids, "forced stop: these jobs were not handed back");
                            return Err(waiting);
                        }
                    }
                }
                Err(error) => {
                    self.emitter.database_error("hand_back", &error);
                    tracing::error!(%error, ?ids, "cannot hand back the jobs that did not start");
                    return Err(waiting);
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
        self.emitter.emit(|worker_id| Event::BatchWritten {
            worker_id,
            kind: BatchKind::HandBack,
            size: gone.len(),
            duration: began.elapsed(),
        });
        Ok(kept)
    }
}
