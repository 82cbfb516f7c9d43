//! The narrow storage boundary: everything Postpone asks of its database.
//!
//! [`Store`] is implemented by [`postgres::PgStore`] (the real thing, SQL in
//! `postgres/queries/`, one named query per file, named after Procrastinate's
//! `queries.sql`) and [`memory::MemoryStore`] (the same semantics in memory, for users'
//! tests). Inputs are `...Params` ([`params`]), outputs are rows from [`crate::job`].
//! Notifications (new jobs, abort requests) come through the store too
//! ([`Store::listen`]), so a worker names neither PostgreSQL nor a connection.
//!
//! The storage layer (this module, [`crate::schema`], [`crate::job`],
//! [`crate::protocol`], [`crate::connect`], [`crate::error`]) imports nothing above it:
//! see `docs/architecture.md`.
//!
//! The trait is object safe, so an [`App`](../struct.App.html) holds an `Arc<dyn Store>`,
//! and **sealed**: only this crate implements it, so it can grow with the features that
//! need the database without breaking anyone (`docs/adr/0010-sealed-store.md`). Test your
//! tasks with [`memory::MemoryStore`].

pub mod inspect;
pub mod memory;
pub mod params;
pub mod postgres;
mod rescue;
mod subscription;
pub mod workflow;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

pub use inspect::{
    EstimatedCounts, EventCount, EventTally, JobPage, JobPageParams, OldestRunnable, PageCursor,
    PeriodicDefer, QueueState, WorkerRow,
};
pub use memory::{EventType, JobEvent};
pub use params::{
    AttemptError, AttemptResult, CountBy, DeferJobParams, DeleteOldJobsParams, FailedAttempt,
    FetchJobsParams, FinishJobParams, FlowBucket, HandedBack, JobCounts, JobFilter, JobResultRow,
    QueuePause, Rescue, RescueDecide, RescueParams, RescueReport, RetryJob, SessionSettings,
    StalledJobsParams, StartMark,
};
pub use subscription::Subscription;
pub(crate) use subscription::SubscriptionSender;
pub use workflow::{
    NodeParents, NodeStatus, OnParentFailure, ParentOutcome, WorkflowNodeParams, WorkflowNodeRow,
    WorkflowParams, WorkflowRow,
};

use crate::Result;
use crate::job::{Job, RetryDecision};
use crate::schema::{ApplyReport, ApplyScope};

mod sealed {
    /// Implemented by this crate's stores only.
    pub trait Sealed {}
    impl Sealed for super::postgres::PgStore {}
    impl Sealed for super::memory::MemoryStore {}
}

/// Everything Postpone asks of its database. Sealed: see the module docs.
#[async_trait]
pub trait Store: sealed::Sealed + Any + Send + Sync + fmt::Debug {
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
    async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<params::JobCounts>>;
    /// `procrastinate_cancel_job_v1`: the id when something was done.
    async fn cancel_job(&self, id: i64, abort: bool, delete: bool) -> Result<Option<i64>>;
    /// `procrastinate_retry_job_v2`.
    async fn retry_job(&self, id: i64, retry: &RetryDecision) -> Result<()>;
    /// `procrastinate_retry_job_v2` for a job that is `failed` when it runs (its row locked
    /// first); false, with nothing changed, when it is not (any longer).
    async fn retry_failed_job(&self, id: i64, retry: &RetryDecision) -> Result<bool>;
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
    /// Claims up to `params.limit` jobs for a worker, by `procrastinate_fetch_job_v2`'s
    /// rules, and raises the worker's start watermark as `params` says, in one statement.
    ///
    /// # Errors
    /// [`crate::Error::WorkerNotRegistered`] when the worker's row is gone (pruned).
    async fn fetch_jobs(&self, params: &FetchJobsParams<'_>) -> Result<Vec<Job>>;
    /// Raises a worker's start watermark to `mark` (never lowers it): the jobs it holds at
    /// or before `mark` in start order may start.
    async fn mark_started(&self, worker_id: i64, mark: StartMark) -> Result<()>;
    /// Finishes jobs, and records the errors of their attempts that did not succeed and
    /// the results of those that succeeded, in one statement; the ids written (jobs no
    /// longer todo/doing are left out). The jobs among them that someone waits for
    /// ([`Self::wait_for_job`]) are announced. Jobs that are workflow nodes get their
    /// node's end recorded in the same statement, and their workflows are then advanced
    /// (a second statement, only then).
    async fn finish_jobs(&self, jobs: &[FinishJobParams]) -> Result<Vec<i64>>;
    /// Sends doing jobs back to todo (or to failed when abort was requested), and records
    /// their attempts' errors, in one statement; ids written.
    async fn retry_jobs(&self, jobs: &[RetryJob]) -> Result<Vec<i64>>;
    /// Sends jobs a worker claimed but did not start back to `todo` as if never fetched
    /// (no worker, attempts unchanged); see [`HandedBack`] for the ones it leaves.
    async fn hand_back_jobs(&self, worker_id: i64, ids: &[i64]) -> Result<HandedBack>;
    /// Which of these jobs have an abort request.
    async fn list_jobs_to_abort(&self, ids: &[i64]) -> Result<Vec<i64>>;

    /// Whether any flow-control limit is stored (`postpone_flow_limits`): a worker whose
    /// app has none claims with the flow rules once this is true.
    async fn flow_in_use(&self) -> Result<bool>;
    /// How long until a rate-limited bucket that is full now has room again (`None`: none
    /// is full), so a worker whose claim came back short sleeps that long, not a polling
    /// interval.
    async fn flow_next_start(&self) -> Result<Option<std::time::Duration>>;
    /// Tells the workers of these jobs' queues that the flow-limited ones among them left
    /// `doing` (their outcomes are written), so jobs waiting for their slots are claimed
    /// now: a `job_inserted` notification per queue, as a defer sends. A worker in flow
    /// mode calls it after writing outcomes.
    async fn notify_flow_released(&self, job_ids: &[i64]) -> Result<()>;

    /// One rescue pass, when no other is running (`None` otherwise): the `doing` jobs of
    /// workers silent for longer than `params` says, or pruned, go back to `todo` when they
    /// never started there, and through `decide` (retried, or `failed` when it says `None`)
    /// when they may have; each is recorded in `postpone_rescues`; then the dead workers'
    /// rows are removed. All in one transaction.
    async fn rescue_stalled_jobs(
        &self,
        params: &RescueParams,
        decide: &RescueDecide<'_>,
    ) -> Result<Option<RescueReport>>;
    /// The rescues of these jobs, oldest first.
    async fn list_rescues(&self, job_ids: &[i64]) -> Result<Vec<Rescue>>;
    /// The recorded errors of these jobs' attempts, by job, oldest first.
    async fn list_job_errors(&self, job_ids: &[i64]) -> Result<Vec<FailedAttempt>>;

    /// The stored result of a job (`postpone_job_results`): none when it has not
    /// succeeded, returned nothing, was run by a Python worker, or is gone.
    async fn get_job_result(&self, job_id: i64) -> Result<Option<JobResultRow>>;
    /// Starts receiving [`Notification::JobFinished`](crate::protocol::Notification::JobFinished)
    /// for the jobs someone waits for ([`Self::wait_for_job`]) when their end is written.
    /// `None` when this store gives no notifications (poll-only mode): waiters poll. One
    /// link serves every waiting handle of an app.
    ///
    /// # Errors
    /// As [`Self::listen`].
    async fn listen_job_finished(&self) -> Result<Option<Subscription>>;
    /// Records that someone waits for job `job_id`'s end (`postpone_job_waiters`), until
    /// [`Self::finish_jobs`] writes it and announces it. Listen first, then record, then
    /// read the job: an end written after this call returns is announced. Nothing for a
    /// job that is gone; the memory store announces every end and records nothing.
    async fn wait_for_job(&self, job_id: i64) -> Result<()>;

    /// Inserts a workflow in one statement, all or nothing (`defer_workflow.sql`): its
    /// nodes, and its roots as jobs; the other nodes wait for their parents (see
    /// [`workflow`]). Its id.
    ///
    /// # Errors
    /// [`crate::Error::AlreadyEnqueued`] when a root's queueing lock is taken.
    async fn defer_workflow(&self, workflow: &WorkflowParams) -> Result<i64>;
    /// One workflow with its nodes, by name.
    async fn get_workflow(&self, id: i64) -> Result<Option<WorkflowRow>>;
    /// The newest workflows, at most `limit`, newest first, their nodes counted (not
    /// listed).
    async fn list_workflows(&self, limit: i64) -> Result<Vec<WorkflowRow>>;
    /// When `job_id` is a workflow node's job: its node and its parents' outcomes.
    async fn list_parent_outcomes(&self, job_id: i64) -> Result<Option<NodeParents>>;
    /// The workflow service's pass: records the end of each released node whose job
    /// ended without [`Self::finish_jobs`] recording it (a Python worker's, a cancel, the
    /// rescue's failure) or is gone, then advances the workflows concerned; how many
    /// workflows it advanced.
    async fn sync_workflows(&self) -> Result<u64>;

    /// Pauses a queue: no worker of this store claims its jobs until it is resumed; the
    /// workers are told. False when it was paused already.
    async fn pause_queue(&self, queue: &str) -> Result<bool>;
    /// Resumes a paused queue; the workers are told. False when it was not paused.
    async fn resume_queue(&self, queue: &str) -> Result<bool>;
    /// The paused queues, by name.
    async fn list_queue_pauses(&self) -> Result<Vec<QueuePause>>;

    /// Starts receiving notifications of new jobs on these queues (`None`: all), of
    /// abort requests (Procrastinate's LISTEN on `procrastinate_queue_v1#<queue>` or
    /// `procrastinate_any_queue_v1`), and of paused or resumed queues (any queue).
    /// `None` when this store gives no notifications (a PostgreSQL store in poll-only
    /// mode): its workers poll.
    ///
    /// # Errors
    /// The link cannot be made, or [`Error::ListenNotDelivered`](crate::Error::ListenNotDelivered)
    /// when notifications do not reach it (a pooler in transaction mode).
    async fn listen(&self, queues: Option<&[String]>) -> Result<Option<Subscription>>;
    /// The same store, its connections opened with these session settings (a worker's
    /// claims and outcomes with `synchronous_commit = off`, say). Stores without sessions
    /// return themselves.
    ///
    /// # Errors
    /// A setting the store cannot honour.
    fn with_session(&self, settings: &SessionSettings) -> Result<Arc<dyn Store>>;

    /// One page of jobs by keyset (see [`JobPageParams`]): newest first, never more than
    /// `scan_limit` rows read.
    async fn list_jobs_page(&self, params: &JobPageParams) -> Result<JobPage>;
    /// Every queue that has a job or is paused, by name: its todo and doing jobs, counted
    /// in one pass over at most `count_cap` open jobs of all queues (lower bounds when the
    /// pass reaches the cap; which jobs it counted then is unspecified), its oldest runnable
    /// job, its pause.
    async fn queue_overview(&self, count_cap: i64) -> Result<Vec<QueueState>>;
    /// Jobs per queue and status: counted when the jobs table has at most `sample_pages`
    /// pages, else estimated from a sample of about that many pages (the memory store
    /// always counts).
    async fn estimate_job_counts(&self, sample_pages: i64) -> Result<EstimatedCounts>;
    /// The registered workers, by id, with their heartbeat's age and running jobs.
    async fn list_workers(&self) -> Result<Vec<WorkerRow>>;
    /// A job's events, oldest first, at most `limit`.
    async fn list_events(&self, job_id: i64, limit: i64) -> Result<Vec<JobEvent>>;
    /// The newest event's id.
    async fn last_event_id(&self) -> Result<Option<i64>>;
    /// The first `limit` events after id `after_id`, counted per minute and type.
    async fn events_since(&self, after_id: i64, limit: i64) -> Result<EventTally>;
    /// The last deferred tick of each periodic schedule, by task and periodic id.
    async fn list_periodic_defers(&self) -> Result<Vec<PeriodicDefer>>;
    /// Running jobs that hold a lock, by lock, at most `limit`.
    async fn list_locked_jobs(&self, limit: i64) -> Result<Vec<Job>>;
    /// The timeout a job's defer call set, if any.
    async fn get_job_timeout(&self, job_id: i64) -> Result<Option<std::time::Duration>>;

    /// Applies this build's pending schema migrations in `scope` (`postpone schema
    /// apply`); the memory store's tables are always current.
    async fn apply_schema(&self, scope: ApplyScope) -> Result<ApplyReport>;
    /// Checks the schema is installed and current for this build; its version.
    async fn check_schema(&self) -> Result<String>;
}
