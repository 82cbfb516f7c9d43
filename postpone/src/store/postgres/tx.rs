//! Deferring inside the caller's own transaction.
//!
//! [`Transaction`] is sealed and implemented for transactions only: a tokio-postgres
//! `Transaction`, a deadpool-postgres `Transaction`, and (feature `sqlx`) an sqlx
//! `Transaction<'_, Postgres>`. The jobs become visible, and their NOTIFY is sent,
//! only when the caller commits; a rollback leaves no trace. A bare connection is
//! refused at compile time, so a defer can never silently autocommit:
//!
//! ```compile_fail
//! # async fn f(app: postpone::App, client: tokio_postgres::Client) {
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Ping;
//! # impl postpone::Task for Ping {
//! #     async fn run(self, _: postpone::task::JobContext) -> Result<(), postpone::task::TaskError> { Ok(()) }
//! # }
//! let mut client = client;
//! app.configure(Ping).defer_in(&mut client).await;
//! # }
//! ```

use futures_util::future::BoxFuture;

use crate::Result;
use crate::store::{DeferJobParams, WorkflowParams};

mod sealed {
    pub trait Sealed {}
}

/// A database transaction Postpone can defer jobs in. Sealed: see the module docs.
pub trait Transaction: sealed::Sealed + Send {
    /// Inserts the jobs in this transaction (the `defer_jobs` query); ids in input order.
    #[doc(hidden)]
    fn defer_jobs<'a>(&'a mut self, jobs: &'a [DeferJobParams]) -> BoxFuture<'a, Result<Vec<i64>>>;
    /// Inserts a workflow in this transaction (the `defer_workflow` query); its id.
    #[doc(hidden)]
    fn defer_workflow<'a>(&'a mut self, workflow: &'a WorkflowParams)
    -> BoxFuture<'a, Result<i64>>;
}

impl sealed::Sealed for tokio_postgres::Transaction<'_> {}

impl Transaction for tokio_postgres::Transaction<'_> {
    fn defer_jobs<'a>(&'a mut self, jobs: &'a [DeferJobParams]) -> BoxFuture<'a, Result<Vec<i64>>> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Ok(Vec::new());
            }
            let columns = super::DeferColumns::new(jobs);
            super::defer_jobs_on(&*self, columns.statement(), &columns).await
        })
    }

    fn defer_workflow<'a>(
        &'a mut self,
        workflow: &'a WorkflowParams,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let columns = super::workflows::WorkflowColumns::new(workflow);
            super::workflows::defer_workflow_on(&*self, super::queries::DEFER_WORKFLOW, &columns)
                .await
        })
    }
}

impl sealed::Sealed for deadpool_postgres::Transaction<'_> {}

/// `sql` prepared on the transaction's pooled connection, once per connection (deadpool's
/// statement cache).
async fn prepared(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement> {
    tx.prepare_cached(sql)
        .await
        .map_err(|e| super::map_db_error(e.into()))
}

impl Transaction for deadpool_postgres::Transaction<'_> {
    fn defer_jobs<'a>(&'a mut self, jobs: &'a [DeferJobParams]) -> BoxFuture<'a, Result<Vec<i64>>> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Ok(Vec::new());
            }
            let columns = super::DeferColumns::new(jobs);
            let statement = prepared(self, columns.statement()).await?;
            super::defer_jobs_on(&**self, &statement, &columns).await
        })
    }

    fn defer_workflow<'a>(
        &'a mut self,
        workflow: &'a WorkflowParams,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let columns = super::workflows::WorkflowColumns::new(workflow);
            let statement = prepared(self, super::queries::DEFER_WORKFLOW).await?;
            super::workflows::defer_workflow_on(&**self, &statement, &columns).await
        })
    }
}

#[cfg(feature = "sqlx")]
impl sealed::Sealed for sqlx::Transaction<'_, sqlx::Postgres> {}

#[cfg(feature = "sqlx")]
impl Transaction for sqlx::Transaction<'_, sqlx::Postgres> {
    fn defer_jobs<'a>(&'a mut self, jobs: &'a [DeferJobParams]) -> BoxFuture<'a, Result<Vec<i64>>> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Ok(Vec::new());
            }
            let c = super::DeferColumns::new(jobs);
            let mut query = sqlx::query_scalar(c.statement())
                .bind(&c.queue_names)
                .bind(&c.task_names)
                .bind(&c.priorities)
                .bind(&c.locks)
                .bind(&c.queueing_locks)
                .bind(&c.args)
                .bind(&c.scheduled_ats);
            if let Some(extras) = &c.extras {
                query = query
                    .bind(&extras.timeouts_ms)
                    .bind(&extras.trace_contexts)
                    .bind(&extras.flows);
            }
            let ids: Vec<i64> = query
                .fetch_all(&mut **self)
                .await
                .map_err(|e| super::map_db_error(sqlx_error(e)))?;
            Ok(ids)
        })
    }

    fn defer_workflow<'a>(
        &'a mut self,
        workflow: &'a WorkflowParams,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let c = super::workflows::WorkflowColumns::new(workflow);
            let id: i64 = sqlx::query_scalar(super::queries::DEFER_WORKFLOW)
                .bind(&c.name)
                .bind(c.on_parent_failure)
                .bind(&c.names)
                .bind(&c.parents)
                .bind(&c.queue_names)
                .bind(&c.task_names)
                .bind(&c.priorities)
                .bind(&c.locks)
                .bind(&c.queueing_locks)
                .bind(&c.args)
                .bind(&c.scheduled_ats)
                .bind(&c.timeouts_ms)
                .bind(&c.flows)
                .fetch_one(&mut **self)
                .await
                .map_err(|e| super::map_db_error(sqlx_error(e)))?;
            Ok(id)
        })
    }
}

/// Keeps the server's detail line, which names the colliding queueing lock.
#[cfg(feature = "sqlx")]
fn sqlx_error(error: sqlx::Error) -> crate::DbError {
    let detail = match &error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.detail().map(str::to_owned)),
        _ => None,
    };
    crate::DbError::from(error).with_detail(detail)
}
