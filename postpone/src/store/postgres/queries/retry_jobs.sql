-- retry_jobs: procrastinate_retry_job_v2 for many doing jobs in one statement.
-- A job whose abort was requested fails instead; the others go back to todo at their
-- retry time with attempts + 1 and the new priority, queue and lock when given.
-- Returns the ids written.
WITH input AS (
    SELECT *
      FROM unnest($1::bigint[], $2::timestamptz[], $3::int4[], $4::varchar[], $5::varchar[])
           AS t(id, retry_at, priority, queue_name, lock)
)
UPDATE procrastinate_jobs AS job
   SET status = CASE WHEN job.abort_requested THEN 'failed' ELSE 'todo' END::procrastinate_job_status,
       attempts = CASE WHEN job.abort_requested THEN job.attempts ELSE job.attempts + 1 END,
       scheduled_at = CASE WHEN job.abort_requested THEN job.scheduled_at ELSE COALESCE(input.retry_at, now()) END,
       priority = CASE WHEN job.abort_requested THEN job.priority ELSE COALESCE(input.priority, job.priority) END,
       queue_name = CASE WHEN job.abort_requested THEN job.queue_name ELSE COALESCE(input.queue_name, job.queue_name) END,
       lock = CASE WHEN job.abort_requested THEN job.lock ELSE COALESCE(input.lock, job.lock) END
  FROM input
 WHERE job.id = ANY($1::bigint[]) AND job.id = input.id AND job.status = 'doing'
RETURNING job.id
