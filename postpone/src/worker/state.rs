//! The worker's state, in one owner: the jobs it holds, the outcomes not written yet, the
//! lock-order protocol built on them, how long attempts take, and the counts.
//!
//! Every stage reports what happened to a job by calling the method named after the event,
//! in this order for each job: [`WorkerState::claimed`] (the producer's claim returned it),
//! [`WorkerState::started`] (the executor starts it), [`WorkerState::finished`] (its
//! outcome goes to the completer), [`WorkerState::written`] (the completer wrote it); or,
//! for a job that never started, [`WorkerState::handed_back`] after `claimed`. Aborts reach
//! held jobs through [`WorkerState::abort`] (the notifier, the aborter) and
//! [`WorkerState::abort_all`] (shutdown).
//!
//! Invariants:
//! 1. A job is *held* (abortable, listed by [`WorkerState::held_ids`]) from `claimed` until
//!    `finished` or `handed_back`; it is *unwritten* from `claimed` until `written` or
//!    `handed_back`. So `unwritten() >= held`, and 0 means every claimed job is settled.
//! 2. A job's lock stays taken in the database until its outcome is written, so while a
//!    finished job holding a lock is unwritten ([`WorkerState::locks_pending`]) the
//!    producer neither claims (the lock's next job would not be eligible yet) nor starts
//!    waiting jobs (that next job may have to run before them).
//! 3. After such a write, no waiting job starts until a claim that *began after the write*
//!    has returned: [`WorkerState::locks_released`] counts lock outcomes written, the
//!    producer notes its value when a claim begins, and [`WorkerState::holds_starts`]
//!    compares. Jobs then run in the order a Procrastinate worker runs them.
//! 4. `written` bumps `locks_released` before it lowers the pending counts, so a reader
//!    never sees a lock outcome as neither pending nor released.
//! 5. `written` bumps [`WorkerState::writes`] before it lowers `unwritten`: a claim that
//!    finds nothing proves no job is left only if no outcome was written while it ran (a
//!    retry or a freed lock it could not see); a reader that sees `unwritten() == 0` also
//!    sees the write that made it so.
//! 6. A held job starts only at or before the start watermark the database holds
//!    ([`WorkerState::committed_mark`]): the producer asks for a later one
//!    ([`WorkerState::want_mark`]), the marker writes it and reports it
//!    ([`WorkerState::mark_written`]), and a claim writes its own. So a rescue after a
//!    `kill -9` knows which held jobs never started (ADR 11).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::stats::WorkerStats;
use crate::context::{AbortReason, AbortSignal};
use crate::job::Job;
use crate::store::StartMark;
use crate::telemetry::Outcome;

/// A held job: its abort signal, and whether it started.
#[derive(Debug)]
struct Held {
    signal: AbortSignal,
    started: bool,
    /// When its claim returned (`None` for a job started without one).
    claimed: Option<Instant>,
}

/// The worker's state; cheap to clone, clones share it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerState {
    inner: Arc<Inner>,
}

/// The start watermark asked for and the one the database holds.
#[derive(Debug, Clone, Copy)]
struct Marks {
    wanted: StartMark,
    written: StartMark,
}

#[derive(Debug)]
struct Inner {
    held: Mutex<HashMap<i64, Held>>,
    marks: Mutex<Marks>,
    /// Notified when a later watermark is wanted (the marker writes it).
    mark_wanted: Notify,
    /// Notified when a later watermark is written (the producer starts what it covers).
    mark_written: Notify,
    /// Set (and `waiting_aborted` notified) when a job not started yet is aborted.
    waiting_abort: AtomicBool,
    waiting_aborted: Notify,
    /// Set when a queue was paused or resumed (the notifier wakes the producer too).
    pauses_stale: AtomicBool,
    /// Claims honour flow-control limits (ADR 18): the app has some, or the database does.
    flow: AtomicBool,
    /// Claimed jobs whose outcome is not written yet.
    unwritten: AtomicUsize,
    /// Finished jobs holding a lock whose outcome is not written yet.
    finished_with_lock: AtomicUsize,
    /// Lock outcomes written so far.
    locks_released: AtomicU64,
    /// Batches of outcomes written so far.
    writes: AtomicU64,
    /// Exponentially weighted mean of recent attempts' run times (weight 1/8), in
    /// nanoseconds; 0 until an attempt has ended.
    mean_run_nanos: AtomicU64,
    /// The same for the marker's writes; 0 until one was written.
    mark_rtt_nanos: AtomicU64,
    /// The quickest recent attempt, in nanoseconds: a minimum that rises 1/64 a sample, so
    /// it follows jobs that get longer; 0 until an attempt has ended.
    quick_run_nanos: AtomicU64,

    stats: Arc<WorkerStats>,
}

impl WorkerState {
    /// A worker holding nothing, counting into `stats`.
    pub(crate) fn new(stats: Arc<WorkerStats>) -> Self {
        Self {
            inner: Arc::new(Inner {
                held: Mutex::new(HashMap::new()),
                marks: Mutex::new(Marks {
                    wanted: StartMark::NONE,
                    written: StartMark::NONE,
                }),
                mark_wanted: Notify::new(),
                mark_written: Notify::new(),
                waiting_abort: AtomicBool::new(false),
                waiting_aborted: Notify::new(),
                pauses_stale: AtomicBool::new(false),
                flow: AtomicBool::new(false),
                unwritten: AtomicUsize::new(0),
                finished_with_lock: AtomicUsize::new(0),
                locks_released: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                mean_run_nanos: AtomicU64::new(0),
                mark_rtt_nanos: AtomicU64::new(0),
                quick_run_nanos: AtomicU64::new(0),

                stats,
            }),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // Events, in the order they happen to a job.

    /// A claim round trip begins (counted in the stats whatever it brings).
    pub(crate) fn claiming(&self) {
        self.inner.stats.count_fetch();
    }

    /// A claim returned these jobs: held (abortable, not started) and unwritten.
    pub(crate) fn claimed(&self, jobs: &[Job]) {
        self.inner.unwritten.fetch_add(jobs.len(), Ordering::SeqCst);
        let claimed = Some(Instant::now());
        let mut held = self.held();
        for job in jobs {
            held.insert(
                job.id,
                Held {
                    signal: AbortSignal::default(),
                    started: false,
                    claimed,
                },
            );
        }
    }

    /// A job starts: its abort signal (the one it had while waiting, if any), and when its
    /// claim returned (`None` for a job started without one).
    pub(crate) fn started(&self, id: i64) -> (AbortSignal, Option<Instant>) {
        let mut held = self.held();
        let job = held.entry(id).or_insert_with(|| Held {
            signal: AbortSignal::default(),
            started: false,
            claimed: None,
        });
        job.started = true;
        (job.signal.clone(), job.claimed)
    }

    /// A job's outcome is decided and goes to the completer: no longer held; its lock (if
    /// any) counts as pending until written. `ran` is how long its attempt took, when it
    /// ran (it sizes the prefetch).
    pub(crate) fn finished(&self, job: &Job, ran: Option<Duration>) {
        if let Some(elapsed) = ran {
            self.record_run_time(elapsed);
        }
        self.held().remove(&job.id);
        if job.lock.is_some() {
            self.inner.finished_with_lock.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The completer wrote a batch of `n` outcomes (or found those jobs already ended),
    /// `with_lock` of them for jobs holding a lock; `outcomes` are the ones the database
    /// took, counted in the stats.
    pub(crate) fn written(
        &self,
        n: usize,
        with_lock: usize,
        outcomes: impl IntoIterator<Item = Outcome>,
    ) {
        for outcome in outcomes {
            self.inner.stats.count(outcome);
        }
        // Invariant 4: released before the pending counts drop.
        self.inner
            .locks_released
            .fetch_add(with_lock as u64, Ordering::SeqCst);
        self.inner
            .finished_with_lock
            .fetch_sub(with_lock, Ordering::SeqCst);
        // Invariant 5: counted before the unwritten count drops.
        self.inner.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.unwritten.fetch_sub(n, Ordering::SeqCst);
    }

    /// These claimed jobs went back to the database without running (or are no longer
    /// this worker's): no longer held, nothing to write.
    pub(crate) fn handed_back(&self, ids: &[i64]) {
        let mut held = self.held();
        for id in ids {
            held.remove(id);
        }
        drop(held);
        self.inner.unwritten.fetch_sub(ids.len(), Ordering::SeqCst);
    }

    // Aborts.

    /// Asks one held job to stop; false when this worker does not hold it.
    pub(crate) fn abort(&self, id: i64, reason: AbortReason) -> bool {
        let waiting = match self.held().get(&id) {
            Some(job) => {
                job.signal.abort(reason);
                !job.started
            }
            None => return false,
        };
        if waiting {
            self.inner.waiting_abort.store(true, Ordering::SeqCst);
            self.inner.waiting_aborted.notify_one();
        }
        true
    }

    /// Asks every running job to stop (jobs waiting to start are the producer's to hand
    /// back).
    pub(crate) fn abort_all(&self, reason: AbortReason) {
        for job in self.held().values().filter(|job| job.started) {
            job.signal.abort(reason);
        }
    }

    /// True (once) when a waiting job was aborted since the last call.
    pub(crate) fn take_waiting_abort(&self) -> bool {
        self.inner.waiting_abort.swap(false, Ordering::SeqCst)
    }

    /// Completes when a waiting job is aborted (check with [`Self::take_waiting_abort`]).
    pub(crate) async fn waiting_aborted(&self) {
        self.inner.waiting_aborted.notified().await;
    }

    // Paused queues.

    /// A queue was paused or resumed (the notifier heard it): the producer reads the
    /// paused queues again at its next look.
    pub(crate) fn pauses_changed(&self) {
        self.inner.pauses_stale.store(true, Ordering::SeqCst);
    }

    /// True (once) when a queue was paused or resumed since the last call.
    pub(crate) fn take_pauses_changed(&self) -> bool {
        self.inner.pauses_stale.swap(false, Ordering::SeqCst)
    }

    // Flow control.

    /// From now on, claims honour the flow-control limits and outcomes wake the workers
    /// waiting for the slots they free (never switched off: limits stay stored).
    pub(crate) fn flow_on(&self) {
        self.inner.flow.store(true, Ordering::SeqCst);
    }

    /// Whether claims honour the flow-control limits.
    pub(crate) fn flow(&self) -> bool {
        self.inner.flow.load(Ordering::SeqCst)
    }

    /// Whether this held job was asked to stop.
    pub(crate) fn is_aborted(&self, id: i64) -> bool {
        self.held()
            .get(&id)
            .is_some_and(|job| job.signal.is_aborted())
    }

    // The start watermark (invariant 6).

    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.inner
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The producer wants the jobs up to `mark` to be able to start.
    pub(crate) fn want_mark(&self, mark: StartMark) {
        let mut marks = self.marks();
        if mark > marks.wanted {
            marks.wanted = mark;
            drop(marks);
            self.inner.mark_wanted.notify_one();
        }
    }

    /// The watermark to write, when one later than the written one is wanted.
    pub(crate) fn mark_to_write(&self) -> Option<StartMark> {
        let marks = self.marks();
        (marks.wanted > marks.written).then_some(marks.wanted)
    }

    /// The database holds `mark` now (the marker wrote it, or a claim did).
    pub(crate) fn mark_written(&self, mark: StartMark) {
        let mut marks = self.marks();
        if mark > marks.written {
            marks.written = mark;
            marks.wanted = marks.wanted.max(mark);
            drop(marks);
            self.inner.mark_written.notify_one();
        }
    }

    /// The watermark the database holds.
    pub(crate) fn committed_mark(&self) -> StartMark {
        self.marks().written
    }

    /// Whether a later watermark is wanted than the one written.
    pub(crate) fn mark_pending(&self) -> bool {
        self.mark_to_write().is_some()
    }

    /// Forgets the watermarks (a new registration starts with none).
    pub(crate) fn reset_marks(&self) {
        *self.marks() = Marks {
            wanted: StartMark::NONE,
            written: StartMark::NONE,
        };
    }

    /// Completes when a later watermark is wanted.
    pub(crate) async fn mark_requested(&self) {
        self.inner.mark_wanted.notified().await;
    }

    /// Completes when a later watermark is written.
    pub(crate) async fn mark_committed(&self) {
        self.inner.mark_written.notified().await;
    }

    // What the stages read.

    /// Every held job, running or waiting.
    pub(crate) fn held_ids(&self) -> Vec<i64> {
        self.held().keys().copied().collect()
    }

    /// Jobs running.
    pub(crate) fn running(&self) -> usize {
        self.held().values().filter(|job| job.started).count()
    }

    /// Claimed jobs whose outcome is not written yet.
    pub(crate) fn unwritten(&self) -> usize {
        self.inner.unwritten.load(Ordering::SeqCst)
    }

    /// Invariant 5: batches of outcomes written so far.
    pub(crate) fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::SeqCst)
    }

    /// Invariant 2: a finished lock job's outcome is not written yet.
    pub(crate) fn locks_pending(&self) -> bool {
        self.inner.finished_with_lock.load(Ordering::SeqCst) > 0
    }

    /// Invariant 3: lock outcomes written so far; when it changed since a claim began, a
    /// lock was freed that the claim did not see.
    pub(crate) fn locks_released(&self) -> u64 {
        self.inner.locks_released.load(Ordering::SeqCst)
    }

    /// Invariants 2 and 3: waiting jobs must not start now, given the value of
    /// [`Self::locks_released`] when the last claim began.
    pub(crate) fn holds_starts(&self, locks_seen: u64) -> bool {
        self.locks_pending() || self.locks_released() != locks_seen
    }

    /// How long attempts take lately; `None` until one has ended.
    pub(crate) fn mean_run_time(&self) -> Option<Duration> {
        mean(&self.inner.mean_run_nanos)
    }

    fn record_run_time(&self, elapsed: Duration) {
        record(&self.inner.mean_run_nanos, elapsed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self.inner.quick_run_nanos.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |quick| {
                Some(match quick {
                    0 => nanos,
                    quick => nanos.min(quick.saturating_add(quick / 64 + 1)),
                })
            },
        );
    }

    /// How long the quickest recent attempts take (robust to a slow one, where the mean is
    /// not); `None` until one has ended.
    pub(crate) fn quick_run_time(&self) -> Option<Duration> {
        mean(&self.inner.quick_run_nanos)
    }

    /// How long the marker's writes take lately; `None` until one was written.
    pub(crate) fn mark_round_trip(&self) -> Option<Duration> {
        mean(&self.inner.mark_rtt_nanos)
    }

    /// A watermark write took `elapsed`.
    pub(crate) fn record_mark_round_trip(&self, elapsed: Duration) {
        record(&self.inner.mark_rtt_nanos, elapsed);
    }
}

/// An exponentially weighted mean (weight 1/8) of durations, in nanoseconds; 0: none yet.
fn mean(nanos: &AtomicU64) -> Option<Duration> {
    match nanos.load(Ordering::Relaxed) {
        0 => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

fn record(mean: &AtomicU64, elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
    let _ = mean.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
        Some(match current {
            0 => nanos,
            current => (current - current / 8).saturating_add(nanos / 8).max(1),
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, lock: Option<&str>) -> Job {
        Job {
            id,
            queue_name: "q".to_owned(),
            task_name: "t".to_owned(),
            priority: 0,
            lock: lock.map(str::to_owned),
            queueing_lock: None,
            args: serde_json::json!({}),
            status: crate::JobStatus::Doing,
            scheduled_at: None,
            attempts: 0,
            abort_requested: false,
            worker_id: Some(1),
            timeout: None,
            trace_context: None,
        }
    }

    #[test]
    fn a_lock_job_holds_starts_until_written_and_claimed_again() {
        let stats = Arc::new(WorkerStats::default());
        let state = WorkerState::new(stats.clone());
        let (locked, free) = (job(1, Some("L")), job(2, None));
        state.claiming();
        state.claimed(&[locked.clone(), free.clone()]);
        let seen = state.locks_released();
        assert_eq!((state.unwritten(), state.held_ids().len()), (2, 2));
        assert!(!state.holds_starts(seen));

        state.started(1);
        state.finished(&locked, Some(Duration::from_millis(4)));
        assert!(
            state.holds_starts(seen),
            "invariant 2: lock outcome unwritten"
        );
        state.written(1, 1, [Outcome::Succeeded]);
        assert!(!state.locks_pending());
        assert!(
            state.holds_starts(seen),
            "invariant 3: no claim since the write"
        );
        assert!(
            !state.holds_starts(state.locks_released()),
            "a new claim saw it"
        );

        state.handed_back(&[2]);
        assert_eq!((state.unwritten(), state.held_ids().len()), (0, 0));
        assert_eq!((stats.fetches(), stats.succeeded()), (1, 1));
        assert_eq!(state.mean_run_time(), Some(Duration::from_millis(4)));
    }

    #[test]
    fn aborts_reach_held_jobs_only_and_flag_waiting_ones() {
        let state = WorkerState::new(Arc::new(WorkerStats::default()));
        state.claimed(&[job(1, None), job(2, None)]);
        let (running, _) = state.started(1);
        assert!(!state.abort(3, AbortReason::UserRequest), "not held");
        assert!(state.abort(2, AbortReason::UserRequest));
        assert!(state.take_waiting_abort() && !state.take_waiting_abort());
        state.abort_all(AbortReason::Shutdown);
        assert_eq!(running.reason(), Some(AbortReason::Shutdown));
        assert_eq!(state.running(), 1);
    }
}
