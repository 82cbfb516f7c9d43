//! What the store's operations take and give besides jobs: `...Params` in, counts and
//! outcomes out. Every type here is plain data, shared by both stores.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::job::{JobOptions, JobStatus};
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
}

impl DeferJobParams {
    /// The row `options` make for a job of `task_name` with `args`: unset options take
    /// the defaults (queue `"default"`, priority 0, no lock, due now), a `schedule_in` is
    /// counted from now. The one place those defaults live.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a queue name the schema refuses, both `schedule_at` and
    /// `schedule_in`, or a delay past the calendar's end.
    pub fn resolve(
        task_name: String,
        args: serde_json::Value,
        options: JobOptions,
    ) -> Result<Self> {
        let queue_name = options.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
        check_queue_name(&queue_name)?;
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
}

impl SessionSettings {
    /// Sets [`Self::asynchronous_commit`].
    #[must_use]
    pub fn with_asynchronous_commit(mut self, on: bool) -> Self {
        self.asynchronous_commit = on;
        self
    }
}
