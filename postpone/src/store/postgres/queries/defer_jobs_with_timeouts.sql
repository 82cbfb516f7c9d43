-- defer_jobs_with_timeouts: defer_jobs, and the timeout ($8, milliseconds; NULL: none) a
-- defer call set for each job, in postpone_job_timeouts (schema migration 0004), in one
-- statement: all or nothing. Used only when some job of the batch has a timeout. The ids
-- follow the input order (one INSERT in that order, ids from one sequence), which pairs
-- each job with its timeout.
WITH deferred AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
    SELECT t.queue_name, t.task_name, t.priority, t.lock, t.queueing_lock, t.args::jsonb, t.scheduled_at
      FROM unnest($1::varchar[], $2::varchar[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
           WITH ORDINALITY AS t(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n)
     ORDER BY t.n
    RETURNING id
), numbered AS (
    SELECT deferred.id, row_number() OVER (ORDER BY deferred.id) AS n FROM deferred
), timeouts AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT numbered.id, t.timeout_ms
      FROM numbered
      JOIN unnest($8::int8[]) WITH ORDINALITY AS t(timeout_ms, n) ON t.n = numbered.n
     WHERE t.timeout_ms IS NOT NULL
)
SELECT id FROM numbered ORDER BY n
