//! The narrow storage boundary: everything Postpone asks of its database.
//!
//! [`Store`] is implemented by [`postgres::PgStore`] (the real thing, SQL in
//! `postgres/queries/`, one named query per file, named after Procrastinate's
//! `queries.sql`). Inputs are `...Params`, outputs are rows from [`crate::job`].
//! The trait is object safe so an [`crate::App`] holds an `Arc<dyn Store>`.

pub mod memory;
pub mod postgres;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

use crate::job::{Job, JobStatus};
use crate::manager::JobFilter;

/// One job to insert (Procrastinate's `procrastinate_job_to_defer_v1`).
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

/// How to retry a job (`procrastinate_retry_job_v2`'s arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryJobParams {
    /// Run again at this time (now if `None`).
    pub retry_at: Option<DateTime<Utc>>,
    /// New priority.
    pub priority: Option<i32>,
    /// New queue.
    pub queue: Option<String>,
    /// New lock.
    pub lock: Option<String>,
}

impl From<crate::retry::RetryDecision> for RetryJobParams {
    fn from(decision: crate::retry::RetryDecision) -> Self {
        Self {
            retry_at: decision.retry_at,
            priority: decision.priority,
            queue: decision.queue,
            lock: decision.lock,
        }
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

/// What to count jobs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountBy {
    /// Per queue (`list_queues`).
    Queue,
    /// Per task (`list_tasks`).
    Task,
    /// Per lock (`list_locks`), jobs without a lock left out.
    Lock,
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

/// Everything Postpone asks of its database.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Inserts jobs in one statement, all or nothing; ids in input order.
    async fn defer_jobs(&self, jobs: &[DeferJobParams]) -> Result<Vec<i64>>;
    /// Defers one tick of a periodic task (`procrastinate_defer_periodic_job_v2`): the
    /// job's id, or `None` when this `(task, periodic_id, defer_timestamp)` was deferred
    /// already, by any worker. Older ticks of the same schedule are forgotten.
    async fn defer_periodic_job(
        &self,
        job: &DeferJobParams,
        periodic_id: &str,
        defer_timestamp: i64,
    ) -> Result<Option<i64>>;
    /// One job.
    async fn get_job(&self, id: i64) -> Result<Option<Job>>;
    /// Jobs matching a filter, by id.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;
    /// Jobs counted per queue, task or lock, and per status.
    async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<JobCounts>>;
    /// `procrastinate_cancel_job_v1`: the id when something was done.
    async fn cancel_job(&self, id: i64, abort: bool, delete: bool) -> Result<Option<i64>>;
    /// `procrastinate_retry_job_v2`.
    async fn retry_job(&self, id: i64, params: &RetryJobParams) -> Result<()>;
    /// Running jobs of stalled (or pruned) workers.
    async fn list_stalled_jobs(&self, params: &StalledJobsParams) -> Result<Vec<Job>>;
    /// Deletes old finished jobs; how many.
    async fn delete_old_jobs(&self, params: &DeleteOldJobsParams) -> Result<u64>;

    /// Registers a worker; its id.
    async fn register_worker(&self) -> Result<i64>;
    /// Unregisters a worker.
    async fn unregister_worker(&self, worker_id: i64) -> Result<()>;
    /// Records a worker's heartbeat.
    async fn update_heartbeat(&self, worker_id: i64) -> Result<()>;
    /// Deletes workers silent for longer than this; their ids.
    async fn prune_stalled_workers(&self, seconds_since_heartbeat: f64) -> Result<Vec<i64>>;
    /// Claims up to `limit` jobs for a worker (`None` queues: all).
    async fn fetch_jobs(
        &self,
        queues: Option<&[String]>,
        worker_id: i64,
        limit: usize,
    ) -> Result<Vec<Job>>;
    /// Finishes jobs; the ids written (jobs no longer todo/doing are left out).
    async fn finish_jobs(&self, jobs: &[FinishJobParams]) -> Result<Vec<i64>>;
    /// Sends doing jobs back to todo (or to failed when abort was requested); ids written.
    async fn retry_jobs(&self, jobs: &[(i64, RetryJobParams)]) -> Result<Vec<i64>>;
    /// Sends jobs a worker claimed but did not start back to `todo` as if never fetched
    /// (no worker, attempts unchanged); see [`HandedBack`] for the ones it leaves.
    async fn hand_back_jobs(&self, worker_id: i64, ids: &[i64]) -> Result<HandedBack>;
    /// Which of these jobs have an abort request.
    async fn list_jobs_to_abort(&self, ids: &[i64]) -> Result<Vec<i64>>;

    /// Signalled when jobs are inserted, for stores without LISTEN/NOTIFY (the worker wakes
    /// on it as on a NOTIFY). PostgreSQL has none: its notifier listens instead.
    fn job_inserted(&self) -> Option<&tokio::sync::Notify> {
        None
    }
}
