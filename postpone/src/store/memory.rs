//! The in-memory store: [`MemoryStore`], a [`Store`] without a database, for users' tests.
//!
//! It keeps the PostgreSQL store's semantics, statement by statement (the integration
//! tests run the same scenarios against both, `tests/it/memory.rs`):
//! - ids increase from 1, for jobs, events and workers alike;
//! - `fetch_jobs` follows `postpone_fetch_jobs_v1` (`procrastinate_fetch_job_v2`'s rules):
//!   todo jobs of the given queues, not scheduled in the future, by priority DESC then id
//!   ASC; a job with a lock only if no job of that lock is doing and no todo job of that
//!   lock comes before it, so a batch holds at most one job per lock;
//! - a queueing lock allows one todo job: [`Error::AlreadyEnqueued`] otherwise, and a
//!   batch is all or nothing;
//! - finish, retry and cancel are `procrastinate_finish_job_v1`, `procrastinate_retry_job_v2`
//!   and `procrastinate_cancel_job_v1` (statuses, attempts, abort requests, deletes);
//! - events are recorded by the same rules as the schema's triggers, in the order
//!   PostgreSQL fires them (by trigger name): see [`MemoryStore::events`];
//! - workers register, heartbeat and are pruned; a removed worker's jobs lose their
//!   `worker_id` (`ON DELETE SET NULL`).
//!
//! Times are the wall clock (`Utc::now()`), one reading per operation, as `now()` is one
//! per transaction. Nothing panics on input; a poisoned lock is recovered.
//!
//! What differs: there is no LISTEN/NOTIFY, so a worker finds new jobs by polling
//! (`fetch_job_polling_interval`; use a short one in tests), or [`MemoryStore::run_all`]
//! runs everything due now with a one-shot worker. [`MemoryStore::job_inserted`] is
//! signalled on every insert, and a worker running on this store is woken by it as by a
//! NOTIFY. A fetch under a worker id that is not registered fails as PostgreSQL's foreign
//! key does (SQLSTATE 23503), so a worker pruned by another one registers again. Counts per
//! name are sorted by bytes, where PostgreSQL sorts by the database's collation.
//!
//! # Testing a task with it
//!
//! ```
//! use std::sync::Arc;
//!
//! use postpone::task::{JobContext, TaskError};
//! use postpone::{App, JobStatus, MemoryStore, Task};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//! }
//!
//! impl Task for SendEmail {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "emails.send_email".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         if self.to.contains('@') {
//!             Ok(())
//!         } else {
//!             Err(TaskError::new("BadAddress", "no @ in the address"))
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> postpone::Result<()> {
//! let store = MemoryStore::new();
//! let app = App::builder()
//!     .task::<SendEmail>()
//!     .store(Arc::new(store.clone()))
//!     .build()?;
//!
//! // The code under test defers jobs...
//! app.defer(SendEmail { to: "ada@example.com".into() }).await?;
//! app.defer(SendEmail { to: "nobody".into() }).await?;
//! let deferred = store.deferred_jobs("emails.send_email");
//! assert_eq!(deferred.len(), 2);
//! assert_eq!(deferred[0].args["to"], "ada@example.com");
//!
//! // ...and the test runs them, now, with a one-shot worker.
//! let stats = store.run_all(&app).await?;
//! assert_eq!((stats.succeeded(), stats.failed()), (1, 1));
//! let statuses: Vec<JobStatus> = store.jobs().iter().map(|job| job.status).collect();
//! assert_eq!(statuses, [JobStatus::Succeeded, JobStatus::Failed]);
//! let events: Vec<&str> = store.events(2).iter().map(|e| e.event_type.as_str()).collect();
//! assert_eq!(events, ["deferred", "started", "failed"]);
//!
//! store.reset(); // as good as new: ids start again at 1
//! assert!(store.jobs().is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use super::{
    CountBy, DeferJobParams, DeleteOldJobsParams, FinishJobParams, JobCounts, RetryJobParams,
    StalledJobsParams, Store,
};
use crate::app::App;
use crate::job::{Job, JobStatus};
use crate::manager::JobFilter;
use crate::worker::{WorkerConfig, WorkerStats};
use crate::{DbError, Error, Result};

/// Longest queue or task name (`character varying(128)`).
const NAME_MAX: usize = 128;

/// How often [`MemoryStore::run_all`]'s worker polls (it has no NOTIFY to wake it).
pub const RUN_ALL_POLLING_INTERVAL: Duration = Duration::from_millis(10);

/// What happened to a job (`procrastinate_job_event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Inserted as todo.
    Deferred,
    /// todo -> doing.
    Started,
    /// doing -> todo.
    DeferredForRetry,
    /// doing -> failed.
    Failed,
    /// doing -> succeeded.
    Succeeded,
    /// todo -> cancelled (or finished without running).
    Cancelled,
    /// The abort request flag was raised.
    AbortRequested,
    /// doing -> aborted.
    Aborted,
    /// Written as todo with a `scheduled_at` (at that time).
    Scheduled,
    /// failed -> todo (manual retry).
    Retried,
}

impl EventType {
    /// The name PostgreSQL uses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deferred => "deferred",
            Self::Started => "started",
            Self::DeferredForRetry => "deferred_for_retry",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
            Self::AbortRequested => "abort_requested",
            Self::Aborted => "aborted",
            Self::Scheduled => "scheduled",
            Self::Retried => "retried",
        }
    }

    /// The event a status change stands for
    /// (`procrastinate_trigger_function_status_events_update_v1`).
    const fn for_change(old: JobStatus, new: JobStatus) -> Option<Self> {
        use JobStatus as S;
        match (old, new) {
            (S::Todo, S::Doing) => Some(Self::Started),
            (S::Todo, S::Cancelled | S::Failed | S::Succeeded) => Some(Self::Cancelled),
            (S::Doing, S::Todo) => Some(Self::DeferredForRetry),
            (S::Doing, S::Failed) => Some(Self::Failed),
            (S::Doing, S::Succeeded) => Some(Self::Succeeded),
            (S::Doing, S::Aborted) => Some(Self::Aborted),
            (S::Failed, S::Todo) => Some(Self::Retried),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `procrastinate_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    /// Increasing from 1.
    pub id: i64,
    /// The job.
    pub job_id: i64,
    /// What happened.
    pub event_type: EventType,
    /// When (for `scheduled`: the time the job is scheduled for).
    pub at: DateTime<Utc>,
}

/// What the in-memory store refuses, worded as PostgreSQL would.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: impl Into<String>) -> Error {
    Error::Database(DbError::other(Refused(message.into())))
}

/// The tables.
#[derive(Debug, Default)]
struct State {
    jobs: BTreeMap<i64, Job>,
    events: Vec<JobEvent>,
    /// Worker id to last heartbeat.
    workers: BTreeMap<i64, DateTime<Utc>>,
    last_job_id: i64,
    last_event_id: i64,
    last_worker_id: i64,
    /// `procrastinate_periodic_defers`: (task name, periodic id, tick timestamp).
    periodic_defers: BTreeSet<(String, String, i64)>,
}

/// Which columns an `UPDATE` sets: `AFTER UPDATE OF column` triggers look at this list,
/// not at whether the value changed.
#[derive(Clone, Copy)]
struct Sets {
    status: bool,
    abort_requested: bool,
}

impl State {
    fn event(&mut self, job_id: i64, event_type: EventType, at: DateTime<Utc>) {
        self.last_event_id += 1;
        self.events.push(JobEvent {
            id: self.last_event_id,
            job_id,
            event_type,
            at,
        });
    }

    /// Updates one job and fires the update triggers, in PostgreSQL's order (by name):
    /// abort_requested, then scheduled, then status events.
    fn update(&mut self, id: i64, sets: Sets, now: DateTime<Utc>, change: impl FnOnce(&mut Job)) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let old_status = job.status;
        change(job);
        let new = job.clone();
        if sets.abort_requested && new.abort_requested {
            self.event(id, EventType::AbortRequested, now);
        }
        if let (Some(at), JobStatus::Todo) = (new.scheduled_at, new.status) {
            self.event(id, EventType::Scheduled, at);
        }
        if sets.status {
            if let Some(event) = EventType::for_change(old_status, new.status) {
                self.event(id, event, now);
            }
        }
    }

    fn delete_job(&mut self, id: i64) {
        self.jobs.remove(&id);
        self.events.retain(|e| e.job_id != id);
    }

    /// Deletes a worker: its jobs lose their `worker_id` (`ON DELETE SET NULL`, an
    /// update that fires the scheduled trigger on todo jobs).
    fn delete_worker(&mut self, worker_id: i64, now: DateTime<Utc>) {
        self.workers.remove(&worker_id);
        let ids: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.worker_id == Some(worker_id))
            .map(|j| j.id)
            .collect();
        let sets = Sets {
            status: false,
            abort_requested: false,
        };
        for id in ids {
            self.update(id, sets, now, |job| job.worker_id = None);
        }
    }

    /// Inserts jobs, all or nothing, with their insert-trigger events; their ids.
    fn insert_jobs(&mut self, jobs: &[DeferJobParams], now: DateTime<Utc>) -> Result<Vec<i64>> {
        // All or nothing: check every row before writing one.
        let mut batch_locks = HashSet::new();
        for (n, job) in (1_i64..).zip(jobs) {
            check_defer(job)?;
            if let Some(queueing_lock) = &job.queueing_lock {
                if !batch_locks.insert(queueing_lock.as_str())
                    || self.queueing_lock_taken(queueing_lock, None)
                {
                    // The rows up to the collision took ids from the sequence, and a
                    // rollback does not give them back.
                    self.last_job_id += n;
                    return Err(Error::AlreadyEnqueued {
                        queueing_lock: queueing_lock.clone(),
                    });
                }
            }
        }
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            self.last_job_id += 1;
            let id = self.last_job_id;
            self.jobs.insert(
                id,
                Job {
                    id,
                    queue_name: job.queue_name.clone(),
                    task_name: job.task_name.clone(),
                    priority: job.priority,
                    lock: job.lock.clone(),
                    queueing_lock: job.queueing_lock.clone(),
                    args: job.args.clone(),
                    status: JobStatus::Todo,
                    scheduled_at: job.scheduled_at,
                    attempts: 0,
                    abort_requested: false,
                    worker_id: None,
                },
            );
            // Insert triggers by name: scheduled, then status (deferred).
            if let Some(at) = job.scheduled_at {
                self.event(id, EventType::Scheduled, at);
            }
            self.event(id, EventType::Deferred, now);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Is a todo job already holding this queueing lock (other than `except`)?
    fn queueing_lock_taken(&self, queueing_lock: &str, except: Option<i64>) -> bool {
        self.jobs.values().any(|j| {
            j.status == JobStatus::Todo
                && Some(j.id) != except
                && j.queueing_lock.as_deref() == Some(queueing_lock)
        })
    }
}

/// `at < now - seconds`, as `make_interval(secs => seconds)` compares.
fn older_than(at: DateTime<Utc>, now: DateTime<Utc>, seconds: f64) -> Result<bool> {
    if !seconds.is_finite() {
        return Err(refused(format!("interval out of range: {seconds} seconds")));
    }
    // Saturating float-to-int cast: out-of-range delays clamp to the widest interval.
    #[allow(clippy::cast_possible_truncation)]
    let micros = (seconds * 1_000_000.0).round() as i64;
    let threshold = now.checked_sub_signed(TimeDelta::microseconds(micros));
    Ok(match threshold {
        Some(threshold) => at < threshold,
        // Past the calendar's ends: everything is newer (delay > 0) or older (delay < 0).
        None => micros < 0,
    })
}

/// A [`Store`] in memory, with PostgreSQL's semantics, for tests (see the module docs).
///
/// Cheap to clone: clones share the same jobs. Give an app a clone with
/// `App::builder().store(Arc::new(store.clone()))` and keep the original to look inside.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    inserted: Notify,
    /// Tells this store's clones from other stores (see [`MemoryStore::run_all`]).
    instance: u64,
}

static INSTANCES: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(
            f,
            "MemoryStore #{} {{ jobs: {}, workers: {} }}",
            self.shared.instance,
            state.jobs.len(),
            state.workers.len()
        )
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
                ..Shared::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves whole rows behind: carry on.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every job, by id.
    #[must_use]
    pub fn jobs(&self) -> Vec<Job> {
        self.state().jobs.values().cloned().collect()
    }

    /// Every job of this task (any status), by id.
    #[must_use]
    pub fn deferred_jobs(&self, task_name: &str) -> Vec<Job> {
        self.state()
            .jobs
            .values()
            .filter(|j| j.task_name == task_name)
            .cloned()
            .collect()
    }

    /// A job's events, oldest first (empty once the job is deleted, as `ON DELETE CASCADE`).
    #[must_use]
    pub fn events(&self, job_id: i64) -> Vec<JobEvent> {
        self.state()
            .events
            .iter()
            .filter(|e| e.job_id == job_id)
            .cloned()
            .collect()
    }

    /// Registered workers and their last heartbeat, by id.
    #[must_use]
    pub fn workers(&self) -> Vec<(i64, DateTime<Utc>)> {
        self.state()
            .workers
            .iter()
            .map(|(id, at)| (*id, *at))
            .collect()
    }

    /// Forgets everything, ids included: as good as a new store (a worker still running
    /// on it is unregistered, and its next fetch fails).
    pub fn reset(&self) {
        *self.state() = State::default();
    }

    /// Signalled (`notify_waiters`) after every insert, as PostgreSQL sends
    /// `job_inserted`: `store.job_inserted().notified().await` waits for the next one.
    #[must_use]
    pub fn job_inserted(&self) -> &Notify {
        &self.shared.inserted
    }

    /// Runs every job due now with a one-shot worker (concurrency 1, so in fetch order),
    /// including retries due at once, and returns what it wrote. `app` must run on this
    /// store (built with `.store(Arc::new(store.clone()))`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `app` runs on another store, or the worker's error.
    pub async fn run_all(&self, app: &App) -> Result<Arc<WorkerStats>> {
        self.run_all_with(app, WorkerConfig::default()).await
    }

    /// As [`Self::run_all`], with these worker settings (say, `additional_context` or a
    /// concurrency); one-shot, without NOTIFY, polling every [`RUN_ALL_POLLING_INTERVAL`],
    /// and without the periodic deferrer (defer ticks with [`App::defer_periodic_jobs`]).
    ///
    /// # Errors
    /// As [`Self::run_all`], and [`Error::InvalidInput`] for bad settings.
    pub async fn run_all_with(&self, app: &App, config: WorkerConfig) -> Result<Arc<WorkerStats>> {
        let ours = format!("MemoryStore #{} ", self.shared.instance);
        if !format!("{:?}", app.store()).starts_with(&ours) {
            return Err(Error::InvalidInput(
                "run_all: the app does not run on this MemoryStore: build it with .store(Arc::new(store.clone()))"
                    .to_owned(),
            ));
        }
        let config = WorkerConfig {
            wait: false,
            listen_notify: false,
            install_signal_handlers: false,
            fetch_job_polling_interval: RUN_ALL_POLLING_INTERVAL,
            periodic: false,
            ..config
        };
        let handle = app.start_worker(config).await?;
        let stats = handle.stats();
        handle.join().await?;
        Ok(stats)
    }
}

fn check_defer(job: &DeferJobParams) -> Result<()> {
    for (what, value) in [
        ("queue_name", &job.queue_name),
        ("task_name", &job.task_name),
    ] {
        if value.chars().count() > NAME_MAX {
            return Err(refused(format!(
                "value too long for type character varying({NAME_MAX}) ({what})"
            )));
        }
    }
    Ok(())
}

fn count_name(job: &Job, by: CountBy) -> Option<&str> {
    match by {
        CountBy::Queue => Some(&job.queue_name),
        CountBy::Task => Some(&job.task_name),
        CountBy::Lock => job.lock.as_deref(),
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn job_inserted(&self) -> Option<&Notify> {
        Some(MemoryStore::job_inserted(self))
    }

    async fn defer_jobs(&self, jobs: &[DeferJobParams]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.state().insert_jobs(jobs, Utc::now())?;
        self.shared.inserted.notify_waiters();
        Ok(ids)
    }

    async fn defer_periodic_job(
        &self,
        job: &DeferJobParams,
        periodic_id: &str,
        defer_timestamp: i64,
    ) -> Result<Option<i64>> {
        let id = {
            let mut state = self.state();
            let tick = (
                job.task_name.clone(),
                periodic_id.to_owned(),
                defer_timestamp,
            );
            if state.periodic_defers.contains(&tick) {
                return Ok(None); // another worker deferred this tick
            }
            // A failed insert (queueing lock taken) records no tick, as the rollback does.
            let ids = state.insert_jobs(std::slice::from_ref(job), Utc::now())?;
            state.periodic_defers.retain(|(task, periodic, timestamp)| {
                !(task == &tick.0 && periodic == &tick.1 && *timestamp < defer_timestamp)
            });
            state.periodic_defers.insert(tick);
            ids.first().copied()
        };
        self.shared.inserted.notify_waiters();
        Ok(id)
    }

    async fn get_job(&self, id: i64) -> Result<Option<Job>> {
        Ok(self.state().jobs.get(&id).cloned())
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let limit = match filter.limit {
            Some(limit) if limit < 0 => {
                return Err(refused("LIMIT must not be negative"));
            }
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let matches = |j: &&Job| {
            filter.id.is_none_or(|id| j.id == id)
                && filter
                    .queue_name
                    .as_ref()
                    .is_none_or(|q| &j.queue_name == q)
                && filter.task_name.as_ref().is_none_or(|t| &j.task_name == t)
                && filter.status.is_none_or(|s| j.status == s)
                && filter
                    .lock
                    .as_ref()
                    .is_none_or(|l| j.lock.as_ref() == Some(l))
                && filter
                    .queueing_lock
                    .as_ref()
                    .is_none_or(|l| j.queueing_lock.as_ref() == Some(l))
                && filter.worker_id.is_none_or(|w| j.worker_id == Some(w))
        };
        Ok(self
            .state()
            .jobs
            .values()
            .filter(matches)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        let state = self.state();
        let mut counts: BTreeMap<&str, BTreeMap<JobStatus, i64>> = BTreeMap::new();
        for job in state.jobs.values().filter(|j| {
            filter
                .queue_name
                .as_ref()
                .is_none_or(|q| &j.queue_name == q)
                && filter.task_name.as_ref().is_none_or(|t| &j.task_name == t)
                && filter.status.is_none_or(|s| j.status == s)
                && filter
                    .lock
                    .as_ref()
                    .is_none_or(|l| j.lock.as_ref() == Some(l))
        }) {
            if let Some(name) = count_name(job, by) {
                *counts
                    .entry(name)
                    .or_default()
                    .entry(job.status)
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(name, stats)| JobCounts {
                name: name.to_owned(),
                jobs_count: stats.values().sum(),
                stats,
            })
            .collect())
    }

    async fn cancel_job(&self, id: i64, abort: bool, delete: bool) -> Result<Option<i64>> {
        let now = Utc::now();
        let mut state = self.state();
        let Some(status) = state.jobs.get(&id).map(|j| j.status) else {
            return Ok(None);
        };
        // Same steps as procrastinate_cancel_job_v1.
        if delete && status == JobStatus::Todo {
            state.delete_job(id);
            return Ok(Some(id));
        }
        if abort {
            if !matches!(status, JobStatus::Todo | JobStatus::Doing) {
                return Ok(None);
            }
            let sets = Sets {
                status: true,
                abort_requested: true,
            };
            state.update(id, sets, now, |job| {
                job.abort_requested = true;
                if job.status == JobStatus::Todo {
                    job.status = JobStatus::Cancelled;
                }
            });
            return Ok(Some(id));
        }
        if status != JobStatus::Todo {
            return Ok(None);
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        state.update(id, sets, now, |job| job.status = JobStatus::Cancelled);
        Ok(Some(id))
    }

    async fn retry_job(&self, id: i64, params: &RetryJobParams) -> Result<()> {
        let now = Utc::now();
        let mut state = self.state();
        // Same steps as procrastinate_retry_job_v2.
        let Some(job) = state
            .jobs
            .get(&id)
            .filter(|j| matches!(j.status, JobStatus::Doing | JobStatus::Failed))
        else {
            return Err(refused(format!(
                "Job was not found or has an invalid status to retry (job id: {id})"
            )));
        };
        if job.status == JobStatus::Doing && job.abort_requested {
            let sets = Sets {
                status: true,
                abort_requested: false,
            };
            state.update(id, sets, now, |job| job.status = JobStatus::Failed);
            return Ok(());
        }
        if job.abort_requested {
            return Err(refused(
                "new row for relation \"procrastinate_jobs\" violates check constraint \"check_not_todo_abort_requested\"",
            ));
        }
        if let Some(queueing_lock) = &job.queueing_lock {
            if state.queueing_lock_taken(queueing_lock, Some(id)) {
                return Err(Error::AlreadyEnqueued {
                    queueing_lock: queueing_lock.clone(),
                });
            }
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        state.update(id, sets, now, |job| {
            job.status = JobStatus::Todo;
            job.attempts = job.attempts.saturating_add(1);
            job.scheduled_at = Some(params.retry_at.unwrap_or(now));
            apply_retry(job, params);
        });
        Ok(())
    }

    async fn list_stalled_jobs(&self, params: &StalledJobsParams) -> Result<Vec<Job>> {
        let now = Utc::now();
        let state = self.state();
        let mut stalled = Vec::new();
        for job in state.jobs.values() {
            if job.status != JobStatus::Doing
                || params.queue.as_ref().is_some_and(|q| &job.queue_name != q)
                || params
                    .task_name
                    .as_ref()
                    .is_some_and(|t| &job.task_name != t)
            {
                continue;
            }
            let heartbeat = job.worker_id.and_then(|w| state.workers.get(&w));
            let is_stalled = match heartbeat {
                None => true,
                Some(at) => older_than(*at, now, params.seconds_since_heartbeat)?,
            };
            if is_stalled {
                stalled.push(job.clone());
            }
        }
        Ok(stalled)
    }

    async fn delete_old_jobs(&self, params: &DeleteOldJobsParams) -> Result<u64> {
        let now = Utc::now();
        // Past the calendar's start, no event is older.
        let Some(threshold) = now.checked_sub_signed(TimeDelta::hours(i64::from(params.nb_hours)))
        else {
            return Ok(0);
        };
        let mut state = self.state();
        let mut latest: HashMap<i64, DateTime<Utc>> = HashMap::new();
        for event in &state.events {
            let at = latest.entry(event.job_id).or_insert(event.at);
            *at = (*at).max(event.at);
        }
        let doomed: Vec<i64> = state
            .jobs
            .values()
            .filter(|j| {
                params.statuses.contains(&j.status)
                    && params.queue.as_ref().is_none_or(|q| &j.queue_name == q)
                    && latest.get(&j.id).is_some_and(|at| *at < threshold)
            })
            .map(|j| j.id)
            .collect();
        let doomed_set: BTreeSet<i64> = doomed.iter().copied().collect();
        state.jobs.retain(|id, _| !doomed_set.contains(id));
        state.events.retain(|e| !doomed_set.contains(&e.job_id));
        Ok(doomed.len() as u64)
    }

    async fn register_worker(&self) -> Result<i64> {
        let mut state = self.state();
        state.last_worker_id += 1;
        let id = state.last_worker_id;
        state.workers.insert(id, Utc::now());
        Ok(id)
    }

    async fn unregister_worker(&self, worker_id: i64) -> Result<()> {
        self.state().delete_worker(worker_id, Utc::now());
        Ok(())
    }

    async fn update_heartbeat(&self, worker_id: i64) -> Result<()> {
        if let Some(at) = self.state().workers.get_mut(&worker_id) {
            *at = Utc::now();
        }
        Ok(())
    }

    async fn prune_stalled_workers(&self, seconds_since_heartbeat: f64) -> Result<Vec<i64>> {
        let now = Utc::now();
        let mut state = self.state();
        let mut pruned = Vec::new();
        for (id, at) in &state.workers {
            if older_than(*at, now, seconds_since_heartbeat)? {
                pruned.push(*id);
            }
        }
        for id in &pruned {
            state.delete_worker(*id, now);
        }
        Ok(pruned)
    }

    async fn fetch_jobs(
        &self,
        queues: Option<&[String]>,
        worker_id: i64,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let now = Utc::now();
        let mut state = self.state();
        // Per lock: is a job doing, and which todo job comes first (priority DESC, id ASC)?
        let mut busy: HashSet<&str> = HashSet::new();
        let mut first: HashMap<&str, (i32, i64)> = HashMap::new();
        for job in state.jobs.values() {
            let Some(lock) = job.lock.as_deref() else {
                continue;
            };
            match job.status {
                JobStatus::Doing => {
                    busy.insert(lock);
                }
                JobStatus::Todo => {
                    let entry = first.entry(lock).or_insert((job.priority, job.id));
                    if job.priority > entry.0 {
                        *entry = (job.priority, job.id);
                    }
                }
                _ => {}
            }
        }
        let mut candidates: Vec<(i32, i64)> = state
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Todo
                    && queues.is_none_or(|qs| qs.contains(&j.queue_name))
                    && j.scheduled_at.is_none_or(|at| at <= now)
                    && j.lock.as_deref().is_none_or(|lock| {
                        !busy.contains(lock) && first.get(lock) == Some(&(j.priority, j.id))
                    })
            })
            .map(|j| (j.priority, j.id))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        candidates.truncate(limit);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        if !state.workers.contains_key(&worker_id) {
            // SQLSTATE 23503 (foreign_key_violation), as PostgreSQL says it: a worker
            // pruned by another one registers again.
            return Err(Error::Database(
                DbError::other(Refused(format!(
                    "insert or update on table \"procrastinate_jobs\" violates foreign key constraint \"procrastinate_jobs_worker_id_fkey\": worker {worker_id} is not registered (pruned as stalled, or unregistered)"
                )))
                .with_code("23503"),
            ));
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        let mut fetched = Vec::with_capacity(candidates.len());
        for (_, id) in candidates {
            state.update(id, sets, now, |job| {
                job.status = JobStatus::Doing;
                job.worker_id = Some(worker_id);
            });
            if let Some(job) = state.jobs.get(&id) {
                fetched.push(job.clone());
            }
        }
        Ok(fetched)
    }

    async fn finish_jobs(&self, jobs: &[FinishJobParams]) -> Result<Vec<i64>> {
        let now = Utc::now();
        let mut state = self.state();
        let open = |state: &State, id: i64| {
            state
                .jobs
                .get(&id)
                .is_some_and(|j| matches!(j.status, JobStatus::Todo | JobStatus::Doing))
        };
        // Same rows as finish_jobs.sql: the deleted ones, then the updated ones.
        let mut deleted = Vec::new();
        let mut updated = Vec::new();
        for finish in jobs {
            if !open(&state, finish.id) {
                continue;
            }
            if finish.delete_job {
                state.delete_job(finish.id);
                deleted.push(finish.id);
            } else {
                let sets = Sets {
                    status: true,
                    abort_requested: true,
                };
                state.update(finish.id, sets, now, |job| {
                    if job.status == JobStatus::Doing {
                        job.attempts = job.attempts.saturating_add(1);
                    }
                    job.status = finish.status;
                    job.abort_requested = false;
                });
                updated.push(finish.id);
            }
        }
        deleted.extend(updated);
        Ok(deleted)
    }

    async fn retry_jobs(&self, jobs: &[(i64, RetryJobParams)]) -> Result<Vec<i64>> {
        let now = Utc::now();
        let mut state = self.state();
        // A job back in todo must not collide on its queueing lock (unique index): check
        // the whole statement before writing, as PostgreSQL would fail it whole.
        let mut batch_locks = HashSet::new();
        for (id, _) in jobs {
            let Some(job) = state.jobs.get(id) else {
                continue;
            };
            if job.status != JobStatus::Doing || job.abort_requested {
                continue;
            }
            if let Some(queueing_lock) = &job.queueing_lock {
                if !batch_locks.insert(queueing_lock.clone())
                    || state.queueing_lock_taken(queueing_lock, Some(*id))
                {
                    return Err(Error::AlreadyEnqueued {
                        queueing_lock: queueing_lock.clone(),
                    });
                }
            }
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        let mut written = Vec::new();
        for (id, params) in jobs {
            if state
                .jobs
                .get(id)
                .is_none_or(|j| j.status != JobStatus::Doing)
            {
                continue;
            }
            state.update(*id, sets, now, |job| {
                if job.abort_requested {
                    job.status = JobStatus::Failed;
                } else {
                    job.status = JobStatus::Todo;
                    job.attempts = job.attempts.saturating_add(1);
                    job.scheduled_at = Some(params.retry_at.unwrap_or(now));
                    apply_retry(job, params);
                }
            });
            written.push(*id);
        }
        Ok(written)
    }

    async fn list_jobs_to_abort(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let state = self.state();
        let wanted: BTreeSet<i64> = ids.iter().copied().collect();
        Ok(wanted
            .into_iter()
            .filter(|id| {
                state
                    .jobs
                    .get(id)
                    .is_some_and(|j| j.status == JobStatus::Doing && j.abort_requested)
            })
            .collect())
    }
}

/// The new priority, queue and lock of a retry, when given (`coalesce(new, old)`).
fn apply_retry(job: &mut Job, params: &RetryJobParams) {
    if let Some(priority) = params.priority {
        job.priority = priority;
    }
    if let Some(queue) = &params.queue {
        job.queue_name.clone_from(queue);
    }
    if let Some(lock) = &params.lock {
        job.lock = Some(lock.clone());
    }
}
