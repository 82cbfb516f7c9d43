-- retry_jobs: procrastinate_retry_job_v2 for many doing jobs in one call, through
-- postpone_retry_jobs_v1 (schema migration 0003). A job whose abort was requested fails
-- instead; the others go back to todo at their retry time with attempts + 1 and the new
-- priority, queue and lock when given. In the same statement, the errors of the attempts
-- ($6 job ids, $7 attempt numbers, $8 workers, $9 kinds, $10 messages) go to
-- postpone_job_errors, for the jobs written. Returns the ids written.
WITH retried AS (
    SELECT id
      FROM postpone_retry_jobs_v1($1::bigint[], $2::timestamptz[], $3::int4[], $4::varchar[], $5::varchar[]) AS id
), errors AS (
    INSERT INTO postpone_job_errors (job_id, attempt, worker_id, kind, message)
    SELECT error.job_id, error.attempt, error.worker_id, error.kind, error.message
      FROM unnest($6::bigint[], $7::int4[], $8::bigint[], $9::text[], $10::text[])
           AS error (job_id, attempt, worker_id, kind, message)
     WHERE error.job_id IN (SELECT id FROM retried)
)
SELECT id FROM retried
