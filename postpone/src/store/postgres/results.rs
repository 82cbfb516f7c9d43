//! Job results on PostgreSQL (`postpone_job_results`, `postpone_job_waiters`, schema
//! migration 0007): the result arrays of `finish_jobs`, the read, and the wait's
//! registration (docs/adr/0017-job-results.md).

use tokio_postgres::types::ToSql;

use super::{PgStore, db, listen, queries};
use crate::Result;
use crate::protocol::JOB_FINISHED_CHANNEL;
use crate::store::{AttemptResult, FinishJobParams, JobResultRow, Subscription};

/// The results of successful attempts, one array per column of `postpone_job_results`:
/// the last parameters of `finish_jobs.sql`'s results section (`$9` to `$12`), sent only
/// when a job has a result to keep.
#[derive(Default)]
pub(super) struct ResultColumns<'a> {
    job_ids: Vec<i64>,
    attempts: Vec<i32>,
    worker_ids: Vec<Option<i64>>,
    json: Vec<&'a str>,
}

impl<'a> ResultColumns<'a> {
    /// The results of `jobs`: only a `succeeded` outcome has a result. A job the delete
    /// policy removes sends its result too, for its workflow node's copy only
    /// (the finish statement keeps no result row for it).
    pub(super) fn new(jobs: &'a [FinishJobParams]) -> Self {
        let mut columns = Self::default();
        for job in jobs {
            if let (Some(result), crate::job::JobStatus::Succeeded) = (&job.result, job.status) {
                columns.push(job.id, result);
            }
        }
        columns
    }

    /// Whether no job has a result to keep.
    pub(super) fn is_empty(&self) -> bool {
        self.job_ids.is_empty()
    }

    fn push(&mut self, job_id: i64, result: &'a AttemptResult) {
        self.job_ids.push(job_id);
        self.attempts.push(result.attempt);
        self.worker_ids.push(result.worker_id);
        self.json.push(&result.json);
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.job_ids, &self.attempts, &self.worker_ids, &self.json]
    }
}

impl PgStore {
    /// `get_job_result`.
    pub(super) async fn results_get_job_result(&self, job_id: i64) -> Result<Option<JobResultRow>> {
        let rows = self.query(queries::GET_JOB_RESULT, &[&job_id]).await?;
        rows.first()
            .map(|row| {
                Ok(JobResultRow {
                    job_id: row.try_get("job_id").map_err(db)?,
                    attempt: row.try_get("attempt").map_err(db)?,
                    worker_id: row.try_get("worker_id").map_err(db)?,
                    json: row.try_get("result").map_err(db)?,
                    finished_at: row.try_get("finished_at").map_err(db)?,
                })
            })
            .transpose()
    }

    /// LISTEN on [`JOB_FINISHED_CHANNEL`] (none in poll-only mode).
    pub(super) async fn results_listen_job_finished(&self) -> Result<Option<Subscription>> {
        if self.connect.poll_only() {
            return Ok(None);
        }
        listen::listen_on(self, &[JOB_FINISHED_CHANNEL.to_owned()])
            .await
            .map(Some)
    }
}
