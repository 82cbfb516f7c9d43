//! The job manager: look at jobs and act on them (Procrastinate's `JobManager`).
//!
//! Status, lists with filters, counts per queue / task / lock, cancel (with abort and
//! delete), retry of a failed job, stalled jobs (by worker heartbeat, as
//! `get_stalled_jobs` does), deletion of old finished jobs, and (Postpone's own) pausing
//! and resuming queues.
//!
//! The reads of a dashboard over a busy table (`postpone-web`) are here too, each bounded
//! by an index or a cap whatever the table's size ([`crate::store::inspect`]): pages of
//! jobs by keyset, queues at a glance, workers, a job's events, event counts since an id,
//! periodic ticks and held locks.

use std::sync::Arc;

use crate::job::{Job, JobStatus, RetryDecision};
use crate::protocol::check_queue_name;
use crate::store::{DeleteOldJobsParams, StalledJobsParams, Store};
use crate::{Error, Result};

pub use crate::store::{
    CountBy, FailedAttempt, JobCounts, JobFilter, JobResultRow, QueuePause, Rescue,
};
pub use crate::store::{
    EstimatedCounts, EventCount, EventTally, EventType, JobEvent, JobPage, JobPageParams,
    OldestRunnable, PageCursor, PeriodicDefer, QueueState, WorkerRow,
};

/// How long a worker may go without heartbeat before its jobs count as stalled
/// (Procrastinate's `stalled_worker_timeout` default, in seconds).
pub const STALLED_WORKER_TIMEOUT_DEFAULT: f64 = 30.0;

/// Which old jobs to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOldJobsOptions {
    /// Jobs whose last event is older than this many hours.
    pub nb_hours: u32,
    /// Only this queue.
    pub queue: Option<String>,
    /// Also failed jobs.
    pub include_failed: bool,
    /// Also cancelled jobs.
    pub include_cancelled: bool,
    /// Also aborted jobs.
    pub include_aborted: bool,
}

/// Looks at jobs and acts on them.
#[derive(Debug, Clone)]
pub struct JobManager {
    store: Arc<dyn Store>,
}

impl JobManager {
    /// A manager over a store (usually from [`crate::App::job_manager`]).
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// One job.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], or a database error.
    pub async fn get_job(&self, id: i64) -> Result<Job> {
        self.store
            .get_job(id)
            .await?
            .ok_or(Error::JobNotFound { id })
    }

    /// A job's status.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], or a database error.
    pub async fn get_job_status(&self, id: i64) -> Result<JobStatus> {
        Ok(self.get_job(id).await?.status)
    }

    /// Jobs matching the filter, by id.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        self.store.list_jobs(filter).await
    }

    /// Why jobs ran again without a person: their rescues from dead workers, oldest first
    /// (which worker died, whether the job may have started there, what the rescue did).
    ///
    /// # Errors
    /// A database error.
    pub async fn list_rescues(&self, job_ids: &[i64]) -> Result<Vec<Rescue>> {
        self.store.list_rescues(job_ids).await
    }

    /// Why each attempt of these jobs that did not succeed ended (`postpone_job_errors`):
    /// by job, oldest first. Jobs run by Python workers have none.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_job_errors(&self, job_ids: &[i64]) -> Result<Vec<FailedAttempt>> {
        self.store.list_job_errors(job_ids).await
    }

    /// What the job's successful attempt returned (`postpone_job_results`), as stored:
    /// `None` when it has not succeeded, set no result, ran on a Python worker, or is gone.
    /// Typed: [`App::job_result`](crate::App::job_result).
    ///
    /// # Errors
    /// A database error.
    pub async fn get_job_result(&self, id: i64) -> Result<Option<JobResultRow>> {
        self.store.get_job_result(id).await
    }

    /// Jobs counted per queue, task or lock, and per status.
    ///
    /// # Errors
    /// A database error.
    pub async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        self.store.count_jobs(by, filter).await
    }

    /// Queues with their job counts per status.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_queues(&self, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        self.count_jobs(CountBy::Queue, filter).await
    }

    /// Pauses a queue: Postpone workers claim none of its jobs until it is resumed, and
    /// hand back the ones they claimed but did not start, within one notification (or one
    /// polling interval without notifications). Running jobs finish; deferring goes on.
    /// **Python workers do not know about pauses** and keep taking its jobs. Returns false
    /// when it was paused already. A queue without jobs can be paused too.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a queue name that cannot exist (empty, over 40 bytes);
    /// a database error.
    pub async fn pause_queue(&self, queue: &str) -> Result<bool> {
        check_queue_name(queue)?;
        self.store.pause_queue(queue).await
    }

    /// Resumes a paused queue: workers claim its jobs again at once. Returns false when
    /// it was not paused.
    ///
    /// # Errors
    /// As [`Self::pause_queue`].
    pub async fn resume_queue(&self, queue: &str) -> Result<bool> {
        check_queue_name(queue)?;
        self.store.resume_queue(queue).await
    }

    /// The paused queues, by name, with when each was paused.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_queue_pauses(&self) -> Result<Vec<QueuePause>> {
        self.store.list_queue_pauses().await
    }

    /// Tasks with their job counts per status.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_tasks(&self, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        self.count_jobs(CountBy::Task, filter).await
    }

    /// Locks with their job counts per status.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_locks(&self, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        self.count_jobs(CountBy::Lock, filter).await
    }

    /// Cancels a job (Procrastinate's `cancel_job_by_id`): a `todo` job becomes
    /// `cancelled` (or is deleted with `delete`); with `abort`, a `doing` job is asked to
    /// stop. Returns false when nothing was done (no such job, or not todo/doing).
    ///
    /// # Errors
    /// A database error.
    pub async fn cancel_job_by_id(&self, id: i64, abort: bool, delete: bool) -> Result<bool> {
        Ok(self.store.cancel_job(id, abort, delete).await?.is_some())
    }

    /// Puts a `failed` job, or a `doing` one (a stalled job whose worker is gone), back in
    /// `todo` (Procrastinate's `retry_job_by_id`, `procrastinate_retry_job_v2`), optionally
    /// at another time, priority, queue or lock. A `doing` job with an abort request ends
    /// `failed` instead. Retrying a `doing` job whose worker is alive runs it twice: check
    /// with [`Self::list_stalled_jobs`] first.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::InvalidJobStatus`] unless the job failed or is
    /// doing, or [`Error::InvalidInput`] for a bad queue name.
    pub async fn retry_job_by_id(&self, id: i64, retry: RetryDecision) -> Result<()> {
        if let Some(queue) = &retry.queue {
            check_queue_name(queue)?;
        }
        let job = self.get_job(id).await?;
        if !matches!(job.status, JobStatus::Failed | JobStatus::Doing) {
            return Err(Error::InvalidJobStatus {
                id,
                action: "retried",
                status: job.status.to_string(),
            });
        }
        self.store.retry_job(id, &retry).await
    }

    /// Puts a `failed` job back in `todo`, as [`Self::retry_job_by_id`] does, but only if it
    /// is still failed when the database does it: false, with nothing changed, when another
    /// person retried it first (and a worker may be running it). What a dashboard button
    /// wants; never runs a job twice.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad queue name, [`Error::AlreadyEnqueued`] when its
    /// queueing lock is taken, or a database error.
    pub async fn retry_failed_job(&self, id: i64, retry: RetryDecision) -> Result<bool> {
        if let Some(queue) = &retry.queue {
            check_queue_name(queue)?;
        }
        self.store.retry_failed_job(id, &retry).await
    }

    /// Running jobs whose worker has not sent a heartbeat for `seconds_since_heartbeat`
    /// (or was pruned): Procrastinate's `get_stalled_jobs`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a negative or non-finite delay, or a database error.
    pub async fn list_stalled_jobs(
        &self,
        seconds_since_heartbeat: f64,
        queue: Option<&str>,
        task_name: Option<&str>,
    ) -> Result<Vec<Job>> {
        if !seconds_since_heartbeat.is_finite() || seconds_since_heartbeat < 0.0 {
            return Err(Error::InvalidInput(format!(
                "seconds since heartbeat is {seconds_since_heartbeat}: give a number of seconds >= 0"
            )));
        }
        self.store
            .list_stalled_jobs(&StalledJobsParams {
                seconds_since_heartbeat,
                queue: queue.map(str::to_owned),
                task_name: task_name.map(str::to_owned),
            })
            .await
    }

    /// Deletes jobs that finished more than `nb_hours` ago: succeeded ones, and failed,
    /// cancelled or aborted ones when asked. Returns how many. Workflows go by the same
    /// rule: one whose every node ended in those statuses (of `queue`, when given) more
    /// than `nb_hours` ago is deleted with its nodes (`docs/workflows.md`).
    ///
    /// # Errors
    /// A database error.
    pub async fn delete_old_jobs(&self, options: &DeleteOldJobsOptions) -> Result<u64> {
        let mut statuses = vec![JobStatus::Succeeded];
        if options.include_failed {
            statuses.push(JobStatus::Failed);
        }
        if options.include_cancelled {
            statuses.push(JobStatus::Cancelled);
        }
        if options.include_aborted {
            statuses.push(JobStatus::Aborted);
        }
        self.store
            .delete_old_jobs(&DeleteOldJobsParams {
                nb_hours: options.nb_hours,
                queue: options.queue.clone(),
                statuses,
            })
            .await
    }

    /// One page of jobs, newest first, by keyset (no OFFSET), reading at most
    /// `params.scan_limit` rows: see [`JobPageParams`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit below 1; a database error.
    pub async fn list_jobs_page(&self, params: &JobPageParams) -> Result<JobPage> {
        positive("page size", params.limit)?;
        positive("scan limit", params.scan_limit)?;
        self.store.list_jobs_page(params).await
    }

    /// Every queue with a job or a pause, by name: waiting and running jobs counted in one
    /// pass over at most `count_cap` open jobs of all queues (exact below it, lower bounds
    /// flagged `open_capped` at it), the oldest runnable job and its age, the pause.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cap below 1; a database error.
    pub async fn queue_overview(&self, count_cap: i64) -> Result<Vec<QueueState>> {
        positive("count cap", count_cap)?;
        self.store.queue_overview(count_cap).await
    }

    /// Jobs per queue and status, counted while the jobs table has at most `sample_pages`
    /// pages (8 kB each), estimated from a sample of about that many pages beyond.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a page count below 1; a database error.
    pub async fn estimate_job_counts(&self, sample_pages: i64) -> Result<EstimatedCounts> {
        positive("sample size", sample_pages)?;
        self.store.estimate_job_counts(sample_pages).await
    }

    /// The registered workers (Postpone's and Procrastinate's), by id, with their
    /// heartbeat's age and how many jobs each runs.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_workers(&self) -> Result<Vec<WorkerRow>> {
        self.store.list_workers().await
    }

    /// A job's events (`procrastinate_events`), oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit below 1; a database error.
    pub async fn list_events(&self, job_id: i64, limit: i64) -> Result<Vec<JobEvent>> {
        positive("event limit", limit)?;
        self.store.list_events(job_id, limit).await
    }

    /// The newest event's id, where counting [`Self::events_since`] may start.
    ///
    /// # Errors
    /// A database error.
    pub async fn last_event_id(&self) -> Result<Option<i64>> {
        self.store.last_event_id().await
    }

    /// The first `limit` events after id `after_id`, counted per minute and type: call
    /// again after [`EventTally::last_id`] for the next ones.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit below 1; a database error.
    pub async fn events_since(&self, after_id: i64, limit: i64) -> Result<EventTally> {
        positive("event limit", limit)?;
        self.store.events_since(after_id, limit).await
    }

    /// The last deferred tick of each periodic schedule, by task and periodic id.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_periodic_defers(&self) -> Result<Vec<PeriodicDefer>> {
        self.store.list_periodic_defers().await
    }

    /// The locks in use: running jobs that hold a lock, by lock, at most `limit`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit below 1; a database error.
    pub async fn list_locked_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        positive("lock limit", limit)?;
        self.store.list_locked_jobs(limit).await
    }

    /// The timeout a job's defer call set (`postpone_job_timeouts`), if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn get_job_timeout(&self, job_id: i64) -> Result<Option<std::time::Duration>> {
        self.store.get_job_timeout(job_id).await
    }
}

/// Refuses a limit below 1.
fn positive(what: &str, n: i64) -> Result<()> {
    if n < 1 {
        return Err(Error::InvalidInput(format!(
            "{what} is {n}: give 1 or more"
        )));
    }
    Ok(())
}
