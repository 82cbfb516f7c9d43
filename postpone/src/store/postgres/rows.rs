//! Decoding rows into [`Job`]s; a row that does not decode is an error, never a panic.

use tokio_postgres::Row;

use crate::job::Job;
use crate::{DbError, Error, Result};

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: &str) -> Result<T> {
    row.try_get(column)
        .map_err(|e| Error::Database(DbError::from(e)))
}

/// A `procrastinate_jobs` row selected with `status::text AS status`.
pub(crate) fn job(row: &Row) -> Result<Job> {
    let status: String = get(row, "status")?;
    Ok(Job {
        id: get(row, "id")?,
        queue_name: get(row, "queue_name")?,
        task_name: get(row, "task_name")?,
        priority: get(row, "priority")?,
        lock: get(row, "lock")?,
        queueing_lock: get(row, "queueing_lock")?,
        args: get(row, "args")?,
        status: status.parse()?,
        scheduled_at: get(row, "scheduled_at")?,
        attempts: get(row, "attempts")?,
        abort_requested: get(row, "abort_requested")?,
        worker_id: get(row, "worker_id")?,
        timeout: None,
        trace_context: None,
    })
}

/// A claimed job (`fetch_jobs`), with the timeout its defer call set (`timeout_ms`) and
/// the trace context of the span that deferred it (`traceparent`).
pub(crate) fn claimed_job(row: &Row) -> Result<Job> {
    let timeout_ms: Option<i64> = get(row, "timeout_ms")?;
    Ok(Job {
        trace_context: get(row, "traceparent")?,
        timeout: timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(std::time::Duration::from_millis),
        ..job(row)?
    })
}
