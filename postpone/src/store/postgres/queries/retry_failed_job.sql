-- retry_failed_job: retry_job for a job that is failed when this statement runs, never a
-- doing one: the row is locked first, so a retry racing another person's retry (and a
-- worker's claim of the job) finds it todo or doing and does nothing. The id when retried.
WITH target AS (
    SELECT id FROM procrastinate_jobs WHERE id = $1 AND status = 'failed' FOR UPDATE
)
SELECT target.id, procrastinate_retry_job_v2(target.id, COALESCE($2::timestamptz, now()), $3, $4, $5)
  FROM target
