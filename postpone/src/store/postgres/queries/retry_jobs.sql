-- retry_jobs: procrastinate_retry_job_v2 for many doing jobs in one call, through
-- postpone_retry_jobs_v1 (schema migration 0003). A job whose abort was requested fails
-- instead; the others go back to todo at their retry time with attempts + 1 and the new
-- priority, queue and lock when given. Returns the ids written.
SELECT id
  FROM postpone_retry_jobs_v1($1::bigint[], $2::timestamptz[], $3::int4[], $4::varchar[], $5::varchar[]) AS id
