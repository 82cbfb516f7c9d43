//! What the store's operations take and give besides jobs: `...Params` in, counts and
//! outcomes out. Every type here is plain data, shared by both stores.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::job::{Job, JobOptions, JobStatus, RetryDecision};
use crate::protocol::{DEFAULT_QUEUE, check_queue_name};
use crate::{Error, Result};

/// One job to insert (Procrastinate's `procrastinate_job_to_defer_v1`): its
/// [`JobOptions`] resolved ([`DeferJobParams::resolve`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeferJobParams {
    /// Queue.
    pub queue_name: String,
    /// Task name.
    pub task_name: String,
    /// Priority.
    pub priority: i32,
    /// Lock.
    pub lock: Option<String>,
    /// Queueing lock.
    pub queueing_lock: Option<String>,
    /// Keyword arguments, a JSON object.
    pub args: serde_json::Value,
    /// Not before.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The job's own timeout (`postpone_job_timeouts`), when its defer call set one.
    pub timeout: Option<std::time::Duration>,
    /// The W3C `traceparent` of the span that deferred it (`postpone_job_traces`), kept
    /// beside the job so that its run's span links to it; set by defer calls of an app
    /// built with the `opentelemetry` feature, inside a sampled span.
    pub trace_context: Option<String>,
    /// The flow-control buckets the job counts against (`postpone_job_flow`): empty for a
    /// job of no limited task or queue. Filled by the defer from the app's limits.
    pub flow: Vec<FlowBucket>,
}

/// One flow-control limit as stored (`postpone_flow_limits`): a bucket, named after its
/// scope and key value, with at most `max_running` jobs `doing` at once and at most
/// `rate` starts in any window of `period`. Made by the defer from a
/// [`FlowLimit`](../../flow/struct.FlowLimit.html); every Postpone worker honours what is
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowBucket {
    /// The bucket's name: `task:<name>` or `queue:<name>`, then `|<field>=<value>` for a
    /// key taken from the args.
    pub name: String,
    /// Most jobs `doing` at once (at least 1), if limited.
    pub max_running: Option<u32>,
    /// Most starts per `period` (at least 1), and the period (at least 1 ms), if limited.
    pub rate: Option<(u32, std::time::Duration)>,
}

impl FlowBucket {
    /// The rate's period in whole milliseconds, as stored (at least 1).
    #[must_use]
    pub fn period_ms(&self) -> Option<i64> {
        self.rate
            .map(|(_, period)| i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1))
    }
}

impl DeferJobParams {
    /// The row `options` make for a job of `task_name` with `args`: unset options take
    /// the defaults (queue `"default"`, priority 0, no lock, due now), a `schedule_in` is
    /// counted from now. The one place those defaults live.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a queue name the schema refuses, both `schedule_at` and
    /// `schedule_in`, a delay past the calendar's end, or a timeout of 0 or over 30 days.
    pub fn resolve(
        task_name: String,
        args: serde_json::Value,
        options: JobOptions,
    ) -> Result<Self> {
        let queue_name = options.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
        check_queue_name(&queue_name)?;
        if let Some(timeout) = options.timeout {
            crate::job::check_timeout("the job's", timeout)?;
        }
        let scheduled_at = match (options.schedule_at, options.schedule_in) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidInput(
                    "both schedule_at and schedule_in are set: give one of them".to_owned(),
                ));
            }
            (Some(at), None) => Some(at),
            (None, Some(delay)) => Some(
                chrono::Duration::from_std(delay)
                    .ok()
                    .and_then(|d| Utc::now().checked_add_signed(d))
                    .ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "schedule_in of {delay:?} is too far in the future"
                        ))
                    })?,
            ),
            (None, None) => None,
        };
        Ok(Self {
            queue_name,
            task_name,
            priority: options.priority.unwrap_or(0),
            lock: options.lock,
            queueing_lock: options.queueing_lock,
            args,
            scheduled_at,
            timeout: options.timeout,
            trace_context: None,
            flow: Vec::new(),
        })
    }
}

/// Which jobs to list or count; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// This job only.
    pub id: Option<i64>,
    /// Jobs of this queue.
    pub queue_name: Option<String>,
    /// Jobs of this task.
    pub task_name: Option<String>,
    /// Jobs in this status.
    pub status: Option<JobStatus>,
    /// Jobs with this lock.
    pub lock: Option<String>,
    /// Jobs with this queueing lock.
    pub queueing_lock: Option<String>,
    /// Jobs run by this worker.
    pub worker_id: Option<i64>,
    /// At most this many jobs (lists only).
    pub limit: Option<i64>,
}

impl JobFilter {
    /// Whether `job` passes every field that is set (the limit aside): the memory store's
    /// reading of `list_jobs.sql`'s conditions.
    pub(crate) fn matches(&self, job: &Job) -> bool {
        self.id.is_none_or(|id| job.id == id)
            && self
                .queue_name
                .as_ref()
                .is_none_or(|q| &job.queue_name == q)
            && self.task_name.as_ref().is_none_or(|t| &job.task_name == t)
            && self.status.is_none_or(|s| job.status == s)
            && self
                .lock
                .as_ref()
                .is_none_or(|l| job.lock.as_ref() == Some(l))
            && self
                .queueing_lock
                .as_ref()
                .is_none_or(|l| job.queueing_lock.as_ref() == Some(l))
            && self.worker_id.is_none_or(|w| job.worker_id == Some(w))
    }
}

/// Which running jobs count as stalled (`select_stalled_jobs_by_heartbeat`).
#[derive(Debug, Clone, PartialEq)]
pub struct StalledJobsParams {
    /// A worker whose last heartbeat is older than this is stalled.
    pub seconds_since_heartbeat: f64,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this task.
    pub task_name: Option<String>,
}

/// Which finished jobs to delete (`delete_old_jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOldJobsParams {
    /// Jobs whose last event is older than this many hours.
    pub nb_hours: u32,
    /// Only this queue.
    pub queue: Option<String>,
    /// Statuses to delete (always includes succeeded).
    pub statuses: Vec<JobStatus>,
}

/// What to count jobs by: the manager, `postpone queues|tasks|locks` and the shell's
/// `list_queues|list_tasks|list_locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountBy {
    /// Per queue (`list_queues`).
    Queue,
    /// Per task (`list_tasks`).
    Task,
    /// Per lock (`list_locks`), jobs without a lock left out.
    Lock,
}

impl CountBy {
    /// What is counted, in the singular: `queue`, `task` or `lock`.
    #[must_use]
    pub const fn noun(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Task => "task",
            Self::Lock => "lock",
        }
    }
}

/// Jobs counted per status for one queue, task or lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobCounts {
    /// The queue, task or lock name.
    pub name: String,
    /// All jobs.
    pub jobs_count: i64,
    /// Jobs per status (statuses with no job left out).
    pub stats: BTreeMap<JobStatus, i64>,
}

impl JobCounts {
    /// Jobs in this status.
    #[must_use]
    pub fn count(&self, status: JobStatus) -> i64 {
        self.stats.get(&status).copied().unwrap_or(0)
    }
}

/// How a job ends (`procrastinate_finish_job_v1`'s arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishJobParams {
    /// The job.
    pub id: i64,
    /// `Succeeded`, `Failed` or `Aborted`.
    pub status: JobStatus,
    /// Delete the row instead.
    pub delete_job: bool,
    /// Why the attempt did not succeed, recorded with the outcome (not for a deleted job).
    pub error: Option<AttemptError>,
    /// What the attempt returned, recorded with a `Succeeded` outcome (not for a deleted
    /// job): `postpone_job_results`.
    pub result: Option<AttemptResult>,
}

/// A retry to write: the job, what its strategy decided, and why the attempt failed.
#[derive(Debug, Clone)]
pub struct RetryJob {
    /// The job.
    pub id: i64,
    /// When and where it runs again.
    pub decision: RetryDecision,
    /// Why the attempt failed, recorded with the retry.
    pub error: Option<AttemptError>,
}

/// Why one attempt did not succeed, as the outcome's statement records it in
/// `postpone_job_errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The attempt's number: 1 for the first.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_id: Option<i64>,
    /// The error's kind (a task's, or `Panic`, `Timeout`, `JobAborted`, `Stalled`,
    /// `TaskNotFound`).
    pub kind: String,
    /// Its message.
    pub message: String,
}

impl AttemptError {
    /// The error of `job`'s current attempt (its number from the job's `attempts`).
    #[must_use]
    pub fn of(job: &crate::job::Job, kind: &str, message: &str) -> Self {
        Self {
            attempt: job.attempts.saturating_add(1),
            worker_id: job.worker_id,
            kind: kind.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// What one successful attempt returned, as the outcome's statement records it in
/// `postpone_job_results`: the task's value, serialised to JSON by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The attempt's number: 1 for the first.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_id: Option<i64>,
    /// The value, as JSON text.
    pub json: String,
}

impl AttemptResult {
    /// The result of `job`'s current attempt (its number from the job's `attempts`).
    #[must_use]
    pub fn of(job: &crate::job::Job, json: String) -> Self {
        Self {
            attempt: job.attempts.saturating_add(1),
            worker_id: job.worker_id,
            json,
        }
    }
}

/// A job's stored result (`postpone_job_results`): what its successful attempt returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobResultRow {
    /// The job.
    pub job_id: i64,
    /// The attempt that returned it: 1 for the first.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_id: Option<i64>,
    /// The value, as JSON text (parse it with [`Self::value`] or [`Self::decode`]).
    pub json: String,
    /// When its outcome was written.
    pub finished_at: DateTime<Utc>,
}

impl JobResultRow {
    /// The value as a JSON tree.
    ///
    /// # Errors
    /// [`Error::InvalidResult`] when the stored text is not JSON (written by hand).
    pub fn value(&self) -> Result<serde_json::Value> {
        self.decode()
    }

    /// The value as a `T`.
    ///
    /// # Errors
    /// [`Error::InvalidResult`] when it does not fit `T` (the message names the field).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let mut de = serde_json::Deserializer::from_str(&self.json);
        serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::InvalidResult {
                id: self.job_id,
                message: if path == "." {
                    inner.to_string()
                } else {
                    format!("field `{path}`: {inner}")
                },
                wanted: std::any::type_name::<T>(),
            }
        })
    }
}

/// A recorded attempt that did not succeed (`postpone_job_errors`), for people asking why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedAttempt {
    /// The job.
    pub job_id: i64,
    /// The attempt's number: 1 for the first.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker_id: Option<i64>,
    /// The error's kind.
    pub kind: String,
    /// Its message.
    pub message: String,
    /// When its outcome was written.
    pub failed_at: DateTime<Utc>,
}

/// What `hand_back_jobs` did with the claimed jobs it was given (ids left out of all three
/// lists were no longer held by the worker, and were left alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandedBack {
    /// Back to `todo`, `worker_id` NULL, attempts unchanged.
    pub todo: Vec<i64>,
    /// Left `doing`: their abort was requested.
    pub abort_requested: Vec<i64>,
    /// Left `doing`: a `todo` job holds their queueing lock now.
    pub queueing_lock_taken: Vec<i64>,
}

/// Settings for the connections of a store made with
/// [`Store::with_session`](super::Store::with_session): what a worker asks of the
/// sessions its claims and outcomes are written on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSettings {
    /// Commit without waiting for the WAL flush (`synchronous_commit = off`).
    pub asynchronous_commit: bool,
    /// No JIT compilation (`jit = off`): for reads over large tables whose cost estimates
    /// pass `jit_above_cost` while they run in milliseconds (the dashboard's), where
    /// compiling would take hundreds.
    pub jit_off: bool,
}

impl SessionSettings {
    /// Sets [`Self::asynchronous_commit`].
    #[must_use]
    pub fn with_asynchronous_commit(mut self, on: bool) -> Self {
        self.asynchronous_commit = on;
        self
    }

    /// Sets [`Self::jit_off`].
    #[must_use]
    pub fn with_jit_off(mut self, off: bool) -> Self {
        self.jit_off = off;
        self
    }
}

/// A place in start order (priority DESC, then id ASC): a worker's start watermark. The jobs
/// a worker holds at or before its watermark may have started; those after it have not
/// (`docs/adr/0011-rescue.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StartMark {
    /// The priority of the job at the mark.
    pub priority: i32,
    /// Its id.
    pub job_id: i64,
}

impl StartMark {
    /// Before every job: nothing started (a new worker's mark).
    pub const NONE: Self = Self {
        priority: i32::MAX,
        job_id: 0,
    };

    /// The mark at this job.
    #[must_use]
    pub fn at(job: &Job) -> Self {
        Self {
            priority: job.priority,
            job_id: job.id,
        }
    }

    /// Whether `job` is at or before this mark in start order (it may have started).
    #[must_use]
    pub fn covers(self, job: &Job) -> bool {
        self >= Self::at(job)
    }
}

impl Ord for StartMark {
    /// Start order: a later mark has a lower priority, or the same and a higher id.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.job_id.cmp(&other.job_id))
    }
}

impl PartialOrd for StartMark {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A claim (`fetch_jobs`): up to `limit` jobs of `queues` (`None`: all) for a worker, and
/// the worker's start watermark raised in the same statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchJobsParams<'a> {
    /// Only these queues (`None`: all).
    pub queues: Option<&'a [String]>,
    /// The claiming worker.
    pub worker_id: i64,
    /// At most this many jobs.
    pub limit: usize,
    /// How many of the claimed jobs (first in start order) start at once: the mark covers
    /// them.
    pub start: usize,
    /// Raise the mark to at least this (jobs already held that start next).
    pub mark: Option<StartMark>,
    /// Honour the flow-control limits stored with the jobs (`postpone_fetch_jobs_flow_v1`);
    /// false: today's claim, which ignores them (a worker with no limit in sight).
    pub flow: bool,
}

impl<'a> FetchJobsParams<'a> {
    /// Up to `limit` jobs of `queues` for `worker_id`, none started by the claim.
    #[must_use]
    pub fn new(queues: Option<&'a [String]>, worker_id: i64, limit: usize) -> Self {
        Self {
            queues,
            worker_id,
            limit,
            start: 0,
            mark: None,
            flow: false,
        }
    }
}

/// Which stalled jobs to rescue (`Store::rescue_stalled_jobs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RescueParams {
    /// A worker silent for longer than this is dead: its jobs are rescued and its row
    /// removed.
    pub seconds_since_heartbeat: f64,
}

/// What the rescue does with a job that may have started on a dead worker: retry it (a
/// failed attempt, by its task's strategy) or end it `failed`.
pub type RescueDecide<'a> = dyn Fn(&Job) -> Option<RetryDecision> + Send + Sync + 'a;

/// What one rescue pass did (job ids, by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RescueReport {
    /// Never started: back to `todo`, no attempt counted.
    pub handed_back: Vec<i64>,
    /// May have started: a failed attempt, retried.
    pub retried: Vec<i64>,
    /// May have started and no attempt is left (or its task is unknown here, or its abort
    /// was requested): ended `failed`.
    pub failed: Vec<i64>,
    /// Never started, and its abort was requested: ended `aborted`.
    pub aborted: Vec<i64>,
    /// Never started, but a `todo` job holds its queueing lock: left for a later pass.
    pub kept: Vec<i64>,
    /// The dead workers whose rows were removed.
    pub pruned_workers: Vec<i64>,
    /// The stalled jobs the pass looked at, as they were before it (their `worker_id` the
    /// dead worker's), the kept ones too.
    pub jobs: Vec<Job>,
}

impl RescueReport {
    /// Whether the pass changed anything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handed_back.is_empty()
            && self.retried.is_empty()
            && self.failed.is_empty()
            && self.aborted.is_empty()
            && self.pruned_workers.is_empty()
    }
}

/// A paused queue (`postpone_queue_pauses`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuePause {
    /// The queue.
    pub queue_name: String,
    /// Since when.
    pub paused_at: DateTime<Utc>,
}

/// One rescue of a job (`postpone_rescues`), for people asking why a job ran again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rescue {
    /// The job.
    pub job_id: i64,
    /// The dead worker (`None`: it had been pruned before).
    pub worker_id: Option<i64>,
    /// When.
    pub rescued_at: DateTime<Utc>,
    /// Whether the job may have started there.
    pub started: bool,
    /// `todo`, `retried`, `failed` or `aborted`.
    pub outcome: String,
}
