//! The PostgreSQL store: a deadpool pool of tokio-postgres connections, prepared
//! statements cached per connection, one named query per operation (see [`queries`]),
//! and one connection of its own per [`Subscription`] that LISTENs (`listen.rs`).
//!
//! Database errors are translated here into the typed errors users act on:
//! a queueing-lock collision becomes [`Error::AlreadyEnqueued`], a missing
//! `procrastinate_*` relation becomes [`Error::SchemaMissing`], a claim by a worker whose
//! row is gone becomes [`Error::WorkerNotRegistered`].

mod inspect;
mod listen;
pub mod queries;
mod results;
mod rows;
mod tx;
mod workflows;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use futures_util::TryStreamExt;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

pub use tx::Transaction;

use super::rescue;
use super::{
    AttemptError, CountBy, DeferJobParams, DeleteOldJobsParams, EstimatedCounts, EventTally,
    FailedAttempt, FetchJobsParams, FinishJobParams, FlowBucket, HandedBack, JobCounts, JobEvent,
    JobFilter, JobPage, JobPageParams, JobResultRow, PeriodicDefer, QueuePause, QueueState, Rescue,
    RescueDecide, RescueParams, RescueReport, RetryJob, SessionSettings, StalledJobsParams,
    StartMark, Store, Subscription, WorkerRow,
};
use super::{NodeParents, WorkflowParams, WorkflowRow};
use crate::connect::ConnectConfig;
use crate::job::{Job, JobStatus, RetryDecision};
use crate::schema::{ApplyReport, ApplyScope};
use crate::{DbError, Error, Result};

/// Connections of a store made by [`Store::with_session`] for one worker: the producer,
/// the completer's two statements, and the heartbeat or abort poll.
const SESSION_POOL_SIZE: usize = 4;

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    connect: ConnectConfig,
    /// In poll-only mode ([`ConnectConfig::with_poll_only`]): the parameter types of each
    /// statement, read once, for sending it unnamed. `None`: statements are prepared once
    /// per pooled connection.
    unnamed: Option<Arc<ParamTypes>>,
    /// Whether a workflow node's job may be running on the database: only then does a
    /// batch's finish statement name the node table (`queries::finish_jobs`; a batch
    /// that deletes a job always does). True at first; each pass of the workflow service
    /// sets it to what it saw; this store's `defer_workflow` and the `workflow_deferred`
    /// notifications its LISTEN connections receive set it. A node finished without it (a
    /// notification missed) keeps its job's end, which the next pass records. Shared with
    /// the stores [`Store::with_session`] makes.
    nodes_may_run: Arc<AtomicBool>,
}

/// The parameter types of statements sent unnamed, by statement text.
#[derive(Debug, Default)]
struct ParamTypes(std::sync::Mutex<HashMap<String, Arc<[Type]>>>);

impl ParamTypes {
    fn get(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(sql)
            .cloned()
    }

    fn insert(&self, sql: &str, types: Arc<[Type]>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sql.to_owned(), types);
    }
}

/// The parameter types the server gives `sql`. Read inside a transaction: behind a pooler
/// in transaction mode, the named statement this prepares and its close (sent when it is
/// dropped, before the commit) reach the same server session, and no other.
async fn describe(
    client: &mut deadpool_postgres::Object,
    sql: &str,
) -> std::result::Result<Arc<[Type]>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let types: Arc<[Type]> = tx.prepare(sql).await?.params().into();
    tx.commit().await?;
    Ok(types)
}

/// Reads a statement's rows, and how many rows it touched.
async fn collect(
    stream: tokio_postgres::RowStream,
) -> std::result::Result<(Vec<Row>, u64), tokio_postgres::Error> {
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    let touched = stream.rows_affected().unwrap_or(rows.len() as u64);
    Ok((rows, touched))
}

impl PgStore {
    /// A store connecting as `connect` says, with a pool of at most `pool_size`
    /// connections (none opened yet).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a pool size of 0.
    pub fn new(connect: ConnectConfig, pool_size: usize) -> Result<Self> {
        Ok(Self {
            pool: connect.pool(pool_size)?,
            unnamed: connect.poll_only().then(Arc::default),
            connect,
            nodes_may_run: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The pool, to run your own statements next to Postpone's (deferring inside your
    /// deadpool transaction, say).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Where this store connects.
    #[must_use]
    pub fn connect_config(&self) -> &ConnectConfig {
        &self.connect
    }

    /// Whether this store's finish statements record workflow nodes now: false while the
    /// workflow service's last pass saw no node running and no workflow was deferred
    /// since (then a batch's finish names no workflow table; `queries/finish_jobs.sql`).
    /// For tests and diagnostics.
    #[must_use]
    pub fn records_workflow_nodes(&self) -> bool {
        self.nodes_may_run.load(Ordering::Relaxed)
    }

    /// A pooled connection that is not known to be closed: one the server closed while it
    /// sat in the pool (a restart, `pg_terminate_backend`) is dropped, not handed out.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        loop {
            match self.pool.get().await {
                Ok(client) if client.is_closed() => {
                    // Dropped, the pool recycles it: a closed one is discarded.
                    drop(deadpool_postgres::Object::take(client));
                }
                Ok(client) => return Ok(client),
                Err(deadpool_postgres::PoolError::Backend(e)) if e.as_db_error().is_none() => {
                    return Err(Error::Connect {
                        target: self.connect.target(),
                        source: e.into(),
                    });
                }
                Err(e) => return Err(map_db_error(e.into())),
            }
        }
    }

    /// Runs one named query: its rows, and how many rows it touched. The statement is
    /// prepared once per pooled connection, or in poll-only mode sent unnamed with the
    /// parameter types read once per store. A statement that failed because its connection
    /// was dead before the server ran it (see [`never_ran`]) runs again on another
    /// connection, a few times at most.
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(Vec<Row>, u64)> {
        let mut tries = 0;
        loop {
            let mut client = self.client().await?;
            match self.run_on(&mut client, sql, params).await {
                Err(error) if never_ran(&error) && tries < STALE_RETRIES => {
                    tries += 1;
                    tracing::debug!(%error, "the connection was dead: running the statement on another");
                    drop(deadpool_postgres::Object::take(client));
                }
                other => return other.map_err(db),
            }
        }
    }

    async fn run_on(
        &self,
        client: &mut deadpool_postgres::Object,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<(Vec<Row>, u64), tokio_postgres::Error> {
        let Some(unnamed) = &self.unnamed else {
            let statement = client.prepare_cached(sql).await?;
            return collect(client.query_raw(&statement, params.iter().copied()).await?).await;
        };
        let types = match unnamed.get(sql) {
            Some(types) => types,
            None => {
                let types = describe(client, sql).await?;
                unnamed.insert(sql, types.clone());
                types
            }
        };
        let typed = params.iter().copied().zip(types.iter().cloned());
        collect(client.query_typed_raw(sql, typed).await?).await
    }

    /// Runs one named query; its rows (see [`Self::run`]).
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(self.run(sql, params).await?.0)
    }

    /// Runs one named query whose rows are ids (or one id).
    async fn query_ids(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<i64>> {
        let rows = self.query(sql, params).await?;
        rows.iter().map(|row| row.try_get(0).map_err(db)).collect()
    }

    /// Runs one named query for its effect; how many rows it touched.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.run(sql, params).await?.1)
    }

    /// A pooled connection, with connection failures saying where we tried.
    ///
    /// # Errors
    /// [`Error::Connect`] when no connection can be made.
    pub async fn get(&self) -> Result<deadpool_postgres::Object> {
        self.client().await
    }
}

/// How many times a statement runs again after its connection turned out dead.
const STALE_RETRIES: usize = 3;

/// The statement did not take effect: its connection was closed before it was sent, or the
/// server ended the session (a restart, `pg_terminate_backend`) instead of answering it
/// (SQLSTATE 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), which
/// rolls its transaction back. Running it again on another connection runs it once, save
/// when the server died between a commit and its reply (at least once, as everywhere).
fn never_ran(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.is_closed()
        || error.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        })
}

/// Turns a driver error into the typed error a user acts on.
pub(crate) fn map_db_error(error: DbError) -> Error {
    if error.is_unique_violation()
        && error.constraint() == Some("procrastinate_jobs_queueing_lock_idx_v1")
    {
        // Detail reads: Key (queueing_lock)=(the lock) already exists.
        let queueing_lock = error
            .detail()
            .and_then(|d| d.split_once(")=("))
            .and_then(|(_, rest)| rest.rsplit_once(") already exists"))
            .map_or_else(|| "?".to_owned(), |(lock, _)| lock.to_owned());
        return Error::AlreadyEnqueued { queueing_lock };
    }
    // undefined_table / undefined_function on one of our objects: no schema.
    if matches!(error.code(), Some("42P01" | "42883" | "42704"))
        && (error.to_string().contains("procrastinate_") || error.to_string().contains("postpone_"))
    {
        return Error::SchemaMissing;
    }
    Error::Database(error)
}

fn db<E: Into<DbError>>(error: E) -> Error {
    map_db_error(error.into())
}

/// The columns of `defer_jobs`, one array each, and the statement that takes them.
pub(crate) struct DeferColumns {
    pub(crate) queue_names: Vec<String>,
    pub(crate) task_names: Vec<String>,
    pub(crate) priorities: Vec<i32>,
    pub(crate) locks: Vec<Option<String>>,
    pub(crate) queueing_locks: Vec<Option<String>>,
    pub(crate) args: Vec<String>,
    pub(crate) scheduled_ats: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// Each job's own timeout in milliseconds and trace context, when one of them has
    /// either.
    pub(crate) extras: Option<DeferExtras>,
}

/// The `defer_jobs_with_extras` columns: `$8`, `$9` and `$10`.
pub(crate) struct DeferExtras {
    pub(crate) timeouts_ms: Vec<Option<i64>>,
    pub(crate) trace_contexts: Vec<Option<String>>,
    /// Each job's flow-control buckets, a JSON array (`None`: none).
    pub(crate) flows: Vec<Option<String>>,
}

/// A job's flow-control buckets as `defer_jobs_with_extras` and `defer_periodic_job` read
/// them: a JSON array of
/// `{bucket, max_running, rate, period_ms}`; `None` for a job without any.
fn flow_json(buckets: &[FlowBucket]) -> Option<String> {
    if buckets.is_empty() {
        return None;
    }
    let array: Vec<serde_json::Value> = buckets
        .iter()
        .map(|bucket| {
            serde_json::json!({
                "bucket": bucket.name,
                "max_running": bucket.max_running,
                "rate": bucket.rate.map(|(rate, _)| rate),
                "period_ms": bucket.period_ms(),
            })
        })
        .collect();
    Some(serde_json::Value::Array(array).to_string())
}

/// A timeout as stored in `postpone_job_timeouts.timeout_ms` (at least 1).
fn timeout_ms(timeout: std::time::Duration) -> i64 {
    i64::try_from(timeout.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

impl DeferColumns {
    pub(crate) fn new(jobs: &[DeferJobParams]) -> Self {
        let extras = jobs
            .iter()
            .any(|j| j.timeout.is_some() || j.trace_context.is_some() || !j.flow.is_empty())
            .then(|| DeferExtras {
                timeouts_ms: jobs.iter().map(|j| j.timeout.map(timeout_ms)).collect(),
                trace_contexts: jobs.iter().map(|j| j.trace_context.clone()).collect(),
                flows: jobs.iter().map(|j| flow_json(&j.flow)).collect(),
            });
        Self {
            queue_names: jobs.iter().map(|j| j.queue_name.clone()).collect(),
            task_names: jobs.iter().map(|j| j.task_name.clone()).collect(),
            priorities: jobs.iter().map(|j| j.priority).collect(),
            locks: jobs.iter().map(|j| j.lock.clone()).collect(),
            queueing_locks: jobs.iter().map(|j| j.queueing_lock.clone()).collect(),
            args: jobs.iter().map(|j| j.args.to_string()).collect(),
            scheduled_ats: jobs.iter().map(|j| j.scheduled_at).collect(),
            extras,
        }
    }

    /// The statement for these jobs ([`queries::defer_jobs`]).
    pub(crate) fn statement(&self) -> &'static str {
        queries::defer_jobs(self.queue_names.len(), self.extras.is_some())
    }

    /// The statement's parameters, `$1` to `$7` (and `$8` to `$10`, the extras, when given).
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.queue_names,
            &self.task_names,
            &self.priorities,
            &self.locks,
            &self.queueing_locks,
            &self.args,
            &self.scheduled_ats,
        ];
        if let Some(extras) = &self.extras {
            params.push(&extras.timeouts_ms);
            params.push(&extras.trace_contexts);
            params.push(&extras.flows);
        }
        params
    }
}

/// Runs `defer_jobs` (its statement, or that statement prepared) on any tokio-postgres
/// client or transaction.
pub(crate) async fn defer_jobs_on<C, S>(
    client: &C,
    statement: &S,
    columns: &DeferColumns,
) -> Result<Vec<i64>>
where
    C: tokio_postgres::GenericClient + Sync,
    S: tokio_postgres::ToStatement + Send + Sync + ?Sized,
{
    let rows = client
        .query(statement, &columns.params())
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| row.try_get::<_, i64>(0).map_err(db))
        .collect()
}

/// The errors of attempts, one array per column of `postpone_job_errors`: the last
/// parameters of `finish_jobs` and `retry_jobs`.
#[derive(Default)]
struct ErrorColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    worker_ids: Vec<Option<i64>>,
    kinds: Vec<&'a str>,
    messages: Vec<&'a str>,
}

impl<'a> ErrorColumns<'a> {
    fn push(&mut self, job_id: i64, error: &'a AttemptError) {
        self.job_ids.push(job_id);
        self.attempts.push(error.attempt);
        self.worker_ids.push(error.worker_id);
        self.kinds.push(&error.kind);
        self.messages.push(&error.message);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.job_ids,
            &self.attempts,
            &self.worker_ids,
            &self.kinds,
            &self.messages,
        ]
    }
}

/// The columns of `finish_jobs`, one array each, then the errors, then the results.
struct FinishColumns<'a> {
    ids: Vec<i64>,
    statuses: Vec<&'static str>,
    deletes: Vec<bool>,
    errors: ErrorColumns<'a>,
    results: results::ResultColumns<'a>,
}

impl<'a> FinishColumns<'a> {
    fn new(jobs: &'a [FinishJobParams]) -> Self {
        let mut errors = ErrorColumns::default();
        // A deleted job keeps nothing, its errors neither.
        for job in jobs.iter().filter(|j| !j.delete_job) {
            if let Some(error) = &job.error {
                errors.push(job.id, error);
            }
        }
        Self {
            ids: jobs.iter().map(|j| j.id).collect(),
            statuses: jobs.iter().map(|j| j.status.as_str()).collect(),
            deletes: jobs.iter().map(|j| j.delete_job).collect(),
            errors,
            results: results::ResultColumns::new(jobs),
        }
    }

    /// The statement: with the result arrays only when a job has a result to keep, with
    /// the workflow nodes when one may be running or a job is deleted (a deleted node's
    /// outcome is recorded now or never).
    fn statement(&self, nodes_may_run: bool) -> &'static str {
        let with_nodes = nodes_may_run || self.deletes.contains(&true);
        queries::finish_jobs(!self.results.is_empty(), with_nodes)
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.ids, &self.statuses, &self.deletes];
        params.extend(self.errors.params());
        if !self.results.is_empty() {
            params.extend(self.results.params());
        }
        params
    }
}

/// The columns of `retry_jobs`, one array each, then the errors.
struct RetryColumns<'a> {
    ids: Vec<i64>,
    retry_ats: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    priorities: Vec<Option<i32>>,
    queues: Vec<Option<&'a str>>,
    locks: Vec<Option<&'a str>>,
    errors: ErrorColumns<'a>,
}

impl<'a> RetryColumns<'a> {
    fn new(jobs: &'a [RetryJob]) -> Self {
        let mut errors = ErrorColumns::default();
        for job in jobs {
            if let Some(error) = &job.error {
                errors.push(job.id, error);
            }
        }
        Self {
            ids: jobs.iter().map(|j| j.id).collect(),
            retry_ats: jobs.iter().map(|j| j.decision.retry_at).collect(),
            priorities: jobs.iter().map(|j| j.decision.priority).collect(),
            queues: jobs.iter().map(|j| j.decision.queue.as_deref()).collect(),
            locks: jobs.iter().map(|j| j.decision.lock.as_deref()).collect(),
            errors,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.ids,
            &self.retry_ats,
            &self.priorities,
            &self.queues,
            &self.locks,
        ];
        params.extend(self.errors.params());
        params
    }
}

/// Runs a query whose rows are ids on any client or transaction.
async fn ids_on(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<i64>> {
    let rows = client.query(sql, params).await.map_err(db)?;
    rows.iter().map(|row| row.try_get(0).map_err(db)).collect()
}

/// `finish_jobs` inside a transaction (the rescue's: rare, so it always records workflow
/// nodes).
async fn finish_jobs_on(
    client: &impl tokio_postgres::GenericClient,
    jobs: &[FinishJobParams],
) -> Result<Vec<i64>> {
    let columns = FinishColumns::new(jobs);
    ids_on(client, columns.statement(true), &columns.params()).await
}

/// `retry_jobs` inside a transaction.
async fn retry_jobs_on(
    client: &impl tokio_postgres::GenericClient,
    jobs: &[RetryJob],
) -> Result<Vec<i64>> {
    ids_on(
        client,
        queries::RETRY_JOBS,
        &RetryColumns::new(jobs).params(),
    )
    .await
}

/// `$1` to `$5` of `retry_job` and `retry_failed_job`: the job, then the decision.
fn retry_args<'a>(id: &'a i64, retry: &'a RetryDecision) -> [&'a (dyn ToSql + Sync); 5] {
    [
        id,
        &retry.retry_at,
        &retry.priority,
        &retry.queue,
        &retry.lock,
    ]
}

fn status_text(status: Option<JobStatus>) -> Option<&'static str> {
    status.map(JobStatus::as_str)
}

#[async_trait]
impl Store for PgStore {
    async fn defer_jobs(&self, jobs: &[DeferJobParams]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let columns = DeferColumns::new(jobs);
        self.query_ids(columns.statement(), &columns.params()).await
    }

    async fn defer_periodic_job(
        &self,
        job: &DeferJobParams,
        periodic_id: &str,
        defer_timestamp: i64,
    ) -> Result<Option<i64>> {
        let args = job.args.to_string();
        let timeout_ms = job.timeout.map(timeout_ms);
        let flow = flow_json(&job.flow);
        let rows = self
            .query(
                queries::DEFER_PERIODIC_JOB,
                &[
                    &job.queue_name,
                    &job.lock,
                    &job.queueing_lock,
                    &job.task_name,
                    &job.priority,
                    &periodic_id,
                    &defer_timestamp,
                    &args,
                    &timeout_ms,
                    &flow,
                ],
            )
            .await?;
        match rows.first() {
            Some(row) => row.try_get(0).map_err(db),
            None => Ok(None),
        }
    }

    async fn get_job(&self, id: i64) -> Result<Option<Job>> {
        let filter = JobFilter {
            id: Some(id),
            ..JobFilter::default()
        };
        Ok(self.list_jobs(&filter).await?.into_iter().next())
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let rows = self
            .query(
                queries::LIST_JOBS,
                &[
                    &filter.id,
                    &filter.queue_name,
                    &filter.task_name,
                    &status_text(filter.status),
                    &filter.lock,
                    &filter.queueing_lock,
                    &filter.worker_id,
                    &filter.limit,
                ],
            )
            .await?;
        rows.iter().map(rows::job).collect()
    }

    async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        let query = match by {
            CountBy::Queue => queries::LIST_QUEUES,
            CountBy::Task => queries::LIST_TASKS,
            CountBy::Lock => queries::LIST_LOCKS,
        };
        let rows = self
            .query(
                query,
                &[
                    &filter.queue_name,
                    &filter.task_name,
                    &status_text(filter.status),
                    &filter.lock,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let stats: serde_json::Value = row.try_get("stats").map_err(db)?;
                let mut per_status = BTreeMap::new();
                if let serde_json::Value::Object(map) = stats {
                    for (status, n) in map {
                        per_status.insert(status.parse()?, n.as_i64().unwrap_or(0));
                    }
                }
                Ok(JobCounts {
                    name: row.try_get("name").map_err(db)?,
                    jobs_count: row.try_get("jobs_count").map_err(db)?,
                    stats: per_status,
                })
            })
            .collect()
    }

    async fn cancel_job(&self, id: i64, abort: bool, delete: bool) -> Result<Option<i64>> {
        let rows = self
            .query(queries::CANCEL_JOB, &[&id, &abort, &delete])
            .await?;
        match rows.first() {
            Some(row) => row.try_get("id").map_err(db),
            None => Ok(None),
        }
    }

    async fn retry_job(&self, id: i64, params: &RetryDecision) -> Result<()> {
        self.execute(queries::RETRY_JOB, &retry_args(&id, params))
            .await?;
        Ok(())
    }

    async fn retry_failed_job(&self, id: i64, params: &RetryDecision) -> Result<bool> {
        let rows = self
            .query(queries::RETRY_FAILED_JOB, &retry_args(&id, params))
            .await?;
        Ok(!rows.is_empty())
    }

    async fn list_stalled_jobs(&self, params: &StalledJobsParams) -> Result<Vec<Job>> {
        let rows = self
            .query(
                queries::SELECT_STALLED_JOBS_BY_HEARTBEAT,
                &[
                    &params.seconds_since_heartbeat,
                    &params.queue,
                    &params.task_name,
                ],
            )
            .await?;
        rows.iter().map(rows::job).collect()
    }

    async fn delete_old_jobs(&self, params: &DeleteOldJobsParams) -> Result<u64> {
        let statuses: Vec<&str> = params.statuses.iter().map(|s| s.as_str()).collect();
        let hours = i32::try_from(params.nb_hours).unwrap_or(i32::MAX);
        self.execute(
            queries::DELETE_OLD_JOBS,
            &[&statuses, &params.queue, &hours],
        )
        .await
    }

    async fn register_worker(&self) -> Result<i64> {
        let ids = self.query_ids(queries::REGISTER_WORKER, &[]).await?;
        ids.first().copied().ok_or_else(|| {
            Error::InvalidInput("procrastinate_register_worker_v1 returned no id".to_owned())
        })
    }

    async fn unregister_worker(&self, worker_id: i64) -> Result<()> {
        self.execute(queries::UNREGISTER_WORKER, &[&worker_id])
            .await?;
        Ok(())
    }

    async fn update_heartbeat(&self, worker_id: i64) -> Result<()> {
        self.execute(queries::UPDATE_HEARTBEAT, &[&worker_id])
            .await?;
        Ok(())
    }

    async fn prune_stalled_workers(&self, seconds_since_heartbeat: f64) -> Result<Vec<i64>> {
        self.query_ids(queries::PRUNE_STALLED_WORKERS, &[&seconds_since_heartbeat])
            .await
    }

    async fn fetch_jobs(&self, params: &FetchJobsParams<'_>) -> Result<Vec<Job>> {
        let limit = i32::try_from(params.limit).unwrap_or(i32::MAX);
        let start = i32::try_from(params.start).unwrap_or(i32::MAX);
        let mark_priority = params.mark.map(|m| m.priority);
        let mark_job = params.mark.map(|m| m.job_id);
        let worker_id = params.worker_id;
        // Today's claim unless flow control is in use (ADR 18).
        let statement = if params.flow {
            queries::FETCH_JOBS_FLOW
        } else {
            queries::FETCH_JOBS
        };
        let rows = match self
            .query(
                statement,
                &[
                    &params.queues,
                    &worker_id,
                    &limit,
                    &start,
                    &mark_priority,
                    &mark_job,
                ],
            )
            .await
        {
            Err(Error::Database(error))
                if error.code() == Some("23503")
                    && error.constraint() == Some("procrastinate_jobs_worker_id_fkey") =>
            {
                return Err(Error::WorkerNotRegistered { worker_id });
            }
            other => other?,
        };
        let mut jobs = rows
            .iter()
            .map(rows::claimed_job)
            .collect::<Result<Vec<_>>>()?;
        // UPDATE ... RETURNING has no order: restore the fetch order.
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    async fn mark_started(&self, worker_id: i64, mark: StartMark) -> Result<()> {
        self.execute(
            queries::MARK_STARTED,
            &[&worker_id, &mark.priority, &mark.job_id],
        )
        .await?;
        Ok(())
    }

    async fn finish_jobs(&self, jobs: &[FinishJobParams]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let columns = FinishColumns::new(jobs);
        let statement = columns.statement(self.nodes_may_run.load(Ordering::Relaxed));
        let rows = self.query(statement, &columns.params()).await?;
        let ids = rows
            .iter()
            .map(|row| row.try_get(0).map_err(db))
            .collect::<Result<Vec<i64>>>()?;
        // The workflows that had a node end (the same on every row): advanced now, so
        // their next nodes need no service pass.
        let (workflows, ended): (Option<Vec<i64>>, Option<Vec<String>>) = match rows.first() {
            Some(row) => (row.try_get(1).map_err(db)?, row.try_get(2).map_err(db)?),
            None => (None, None),
        };
        if let Some(workflows) = workflows {
            // The outcomes are written: a failed advance is the workflow service's to
            // redo (sync_workflows finds the nodes it left waiting), not the batch's.
            let ended = ended.unwrap_or_default();
            if let Err(error) = self.workflows_advance(&workflows, &ended).await {
                tracing::warn!(%error, ?workflows, "advancing workflows failed: the workflow service will");
            }
        }
        Ok(ids)
    }

    async fn retry_jobs(&self, jobs: &[RetryJob]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let columns = RetryColumns::new(jobs);
        self.query_ids(queries::RETRY_JOBS, &columns.params()).await
    }

    async fn flow_in_use(&self) -> Result<bool> {
        let rows = self.query(queries::FLOW_IN_USE, &[]).await?;
        match rows.first() {
            Some(row) => row.try_get("in_use").map_err(db),
            None => Ok(false),
        }
    }

    async fn flow_next_start(&self) -> Result<Option<std::time::Duration>> {
        let rows = self.query(queries::FLOW_NEXT_START, &[]).await?;
        let wait_ms: Option<i64> = match rows.first() {
            Some(row) => row.try_get("wait_ms").map_err(db)?,
            None => None,
        };
        Ok(wait_ms.map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    async fn notify_flow_released(&self, job_ids: &[i64]) -> Result<()> {
        if job_ids.is_empty() {
            return Ok(());
        }
        self.query(queries::NOTIFY_FLOW_RELEASED, &[&job_ids])
            .await?;
        Ok(())
    }

    async fn hand_back_jobs(&self, worker_id: i64, ids: &[i64]) -> Result<HandedBack> {
        let mut handed = HandedBack::default();
        if ids.is_empty() {
            return Ok(handed);
        }
        let rows = self
            .query(queries::HAND_BACK_JOBS, &[&worker_id, &ids])
            .await?;
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(db)?;
            let outcome: &str = row.try_get("outcome").map_err(db)?;
            match outcome {
                "todo" => handed.todo.push(id),
                "abort_requested" => handed.abort_requested.push(id),
                _ => handed.queueing_lock_taken.push(id),
            }
        }
        Ok(handed)
    }

    async fn list_jobs_to_abort(&self, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query_ids(queries::LIST_JOBS_TO_ABORT, &[&ids]).await
    }

    async fn rescue_stalled_jobs(
        &self,
        params: &RescueParams,
        decide: &RescueDecide<'_>,
    ) -> Result<Option<RescueReport>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let locked: bool = tx
            .query_one(queries::RESCUE_LOCK, &[&queries::RESCUE_LOCK_KEY])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db)?;
        if !locked {
            return Ok(None); // another worker's pass runs; the transaction rolls back
        }
        let rows = tx
            .query(
                queries::SELECT_JOBS_TO_RESCUE,
                &[&params.seconds_since_heartbeat],
            )
            .await
            .map_err(db)?;
        let mut stalled = Vec::with_capacity(rows.len());
        for row in &rows {
            let started: bool = row.try_get("started").map_err(db)?;
            stalled.push((rows::job(row)?, started));
        }
        let plan = rescue::plan(&stalled, params, decide);
        let mut report = RescueReport::default();
        if !plan.hand_back.is_empty() {
            let rows = tx
                .query(queries::HAND_BACK_JOBS, &[&None::<i64>, &plan.hand_back])
                .await
                .map_err(db)?;
            for row in &rows {
                let id: i64 = row.try_get("id").map_err(db)?;
                match row.try_get::<_, &str>("outcome").map_err(db)? {
                    "todo" => report.handed_back.push(id),
                    "abort_requested" => report.aborted.push(id),
                    _ => report.kept.push(id),
                }
            }
        }
        let aborted: Vec<FinishJobParams> = report
            .aborted
            .iter()
            .map(|&id| FinishJobParams {
                id,
                status: JobStatus::Aborted,
                delete_job: false,
                error: None,
                result: None,
            })
            .chain(plan.fail.iter().map(|(id, error)| FinishJobParams {
                id: *id,
                status: JobStatus::Failed,
                delete_job: false,
                error: Some(error.clone()),
                result: None,
            }))
            .collect();
        if !aborted.is_empty() {
            let written = finish_jobs_on(&*tx, &aborted).await?;
            report.failed.extend(
                plan.fail
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| written.contains(id)),
            );
        }
        if !plan.retry.is_empty() {
            report
                .retried
                .extend(retry_jobs_on(&*tx, &plan.retry).await?);
        }
        let records = rescue::records(&stalled, &report);
        tx.execute(
            queries::RECORD_RESCUES,
            &[
                &records.job_ids,
                &records.worker_ids,
                &records.started,
                &records.outcomes,
            ],
        )
        .await
        .map_err(db)?;
        let pruned = tx
            .query(
                queries::PRUNE_RESCUED_WORKERS,
                &[&params.seconds_since_heartbeat],
            )
            .await
            .map_err(db)?;
        report.pruned_workers = pruned
            .iter()
            .map(|row| row.try_get(0).map_err(db))
            .collect::<Result<_>>()?;
        tx.commit().await.map_err(db)?;
        report.jobs = stalled.into_iter().map(|(job, _)| job).collect();
        Ok(Some(report))
    }

    async fn list_rescues(&self, job_ids: &[i64]) -> Result<Vec<Rescue>> {
        let rows = self.query(queries::LIST_RESCUES, &[&job_ids]).await?;
        rows.iter()
            .map(|row| {
                Ok(Rescue {
                    job_id: row.try_get("job_id").map_err(db)?,
                    worker_id: row.try_get("worker_id").map_err(db)?,
                    rescued_at: row.try_get("rescued_at").map_err(db)?,
                    started: row.try_get("started").map_err(db)?,
                    outcome: row.try_get("outcome").map_err(db)?,
                })
            })
            .collect()
    }

    async fn list_job_errors(&self, job_ids: &[i64]) -> Result<Vec<FailedAttempt>> {
        let rows = self.query(queries::LIST_JOB_ERRORS, &[&job_ids]).await?;
        rows.iter()
            .map(|row| {
                Ok(FailedAttempt {
                    job_id: row.try_get("job_id").map_err(db)?,
                    attempt: row.try_get("attempt").map_err(db)?,
                    worker_id: row.try_get("worker_id").map_err(db)?,
                    kind: row.try_get("kind").map_err(db)?,
                    message: row.try_get("message").map_err(db)?,
                    failed_at: row.try_get("failed_at").map_err(db)?,
                })
            })
            .collect()
    }

    async fn defer_workflow(&self, workflow: &WorkflowParams) -> Result<i64> {
        self.workflows_defer(workflow).await
    }

    async fn get_workflow(&self, id: i64) -> Result<Option<WorkflowRow>> {
        self.workflows_get(id).await
    }

    async fn list_workflows(&self, limit: i64) -> Result<Vec<WorkflowRow>> {
        self.workflows_list(limit).await
    }

    async fn list_parent_outcomes(&self, job_id: i64) -> Result<Option<NodeParents>> {
        self.workflows_parent_outcomes(job_id).await
    }

    async fn sync_workflows(&self) -> Result<u64> {
        self.workflows_sync().await
    }

    async fn pause_queue(&self, queue: &str) -> Result<bool> {
        let rows = self.query(queries::PAUSE_QUEUE, &[&queue]).await?;
        rows.first()
            .map_or(Ok(false), |row| row.try_get("changed").map_err(db))
    }

    async fn resume_queue(&self, queue: &str) -> Result<bool> {
        let rows = self.query(queries::RESUME_QUEUE, &[&queue]).await?;
        rows.first()
            .map_or(Ok(false), |row| row.try_get("changed").map_err(db))
    }

    async fn list_queue_pauses(&self) -> Result<Vec<QueuePause>> {
        let rows = self.query(queries::LIST_QUEUE_PAUSES, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(QueuePause {
                    queue_name: row.try_get("queue_name").map_err(db)?,
                    paused_at: row.try_get("paused_at").map_err(db)?,
                })
            })
            .collect()
    }

    async fn list_jobs_page(&self, params: &JobPageParams) -> Result<JobPage> {
        self.inspect_list_jobs_page(params).await
    }

    async fn queue_overview(&self, count_cap: i64) -> Result<Vec<QueueState>> {
        self.inspect_queue_overview(count_cap).await
    }

    async fn estimate_job_counts(&self, sample_pages: i64) -> Result<EstimatedCounts> {
        self.inspect_estimate_job_counts(sample_pages).await
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRow>> {
        self.inspect_list_workers().await
    }

    async fn list_events(&self, job_id: i64, limit: i64) -> Result<Vec<JobEvent>> {
        self.inspect_list_events(job_id, limit).await
    }

    async fn last_event_id(&self) -> Result<Option<i64>> {
        self.inspect_last_event_id().await
    }

    async fn events_since(&self, after_id: i64, limit: i64) -> Result<EventTally> {
        self.inspect_events_since(after_id, limit).await
    }

    async fn list_periodic_defers(&self) -> Result<Vec<PeriodicDefer>> {
        self.inspect_list_periodic_defers().await
    }

    async fn list_locked_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        self.inspect_list_locked_jobs(limit).await
    }

    async fn get_job_timeout(&self, job_id: i64) -> Result<Option<std::time::Duration>> {
        self.inspect_get_job_timeout(job_id).await
    }

    async fn get_job_result(&self, job_id: i64) -> Result<Option<JobResultRow>> {
        self.results_get_job_result(job_id).await
    }

    async fn listen_job_finished(&self) -> Result<Option<Subscription>> {
        self.results_listen_job_finished().await
    }

    async fn wait_for_job(&self, job_id: i64) -> Result<()> {
        self.execute(queries::WAIT_FOR_JOB, &[&job_id]).await?;
        Ok(())
    }

    async fn listen(&self, queues: Option<&[String]>) -> Result<Option<Subscription>> {
        if self.connect.poll_only() {
            return Ok(None);
        }
        listen::listen(self, queues).await.map(Some)
    }

    fn with_session(&self, settings: &SessionSettings) -> Result<Arc<dyn Store>> {
        if *settings == SessionSettings::default() {
            return Ok(Arc::new(self.clone()));
        }
        if self.connect.poll_only() {
            return Err(Error::InvalidInput(
                "asynchronous commit is a session setting, which a pooler in transaction mode does not keep: drop asynchronous commit (--asynchronous-commit) or poll-only mode (--poll-only)".to_owned(),
            ));
        }
        let mut connect = self.connect.clone();
        if settings.asynchronous_commit {
            connect = connect.with_session_setting("synchronous_commit", "off");
        }
        if settings.jit_off {
            connect = connect.with_session_setting("jit", "off");
        }
        Ok(Arc::new(Self {
            nodes_may_run: self.nodes_may_run.clone(),
            ..Self::new(connect, SESSION_POOL_SIZE)?
        }))
    }

    async fn apply_schema(&self, scope: ApplyScope) -> Result<ApplyReport> {
        // A connection of its own: pooled ones keep statements prepared before.
        let mut client = self.connect.connect().await?;
        crate::schema::apply(&mut client, scope).await
    }

    async fn check_schema(&self) -> Result<String> {
        let client = self.client().await?;
        // In one transaction, so that its statements reach one server session behind a
        // pooler too.
        client.batch_execute("BEGIN").await.map_err(db)?;
        let ready = crate::schema::ensure_ready(&client).await;
        let rolled_back = client.batch_execute("ROLLBACK").await;
        let version = ready?;
        rolled_back.map_err(db)?;
        Ok(version)
    }
}
