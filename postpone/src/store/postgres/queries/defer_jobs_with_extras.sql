-- defer_jobs_with_extras: defer_jobs, and what a defer call keeps beside each job, in one
-- statement (all or nothing): the timeout it set ($8, milliseconds; NULL: none) in
-- postpone_job_timeouts (schema migration 0004), and the trace context of the span that
-- deferred it ($9, a W3C traceparent; NULL: none) in postpone_job_traces (migration 0006).
-- Used only when some job of the batch has either. The ids follow the input order (one
-- INSERT in that order, ids from one sequence), which pairs each job with its extras.
WITH deferred AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
    SELECT t.queue_name, t.task_name, t.priority, t.lock, t.queueing_lock, t.args::jsonb, t.scheduled_at
      FROM unnest($1::varchar[], $2::varchar[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
           WITH ORDINALITY AS t(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n)
     ORDER BY t.n
    RETURNING id
), numbered AS (
    SELECT deferred.id, row_number() OVER (ORDER BY deferred.id) AS n FROM deferred
), extras AS (
    SELECT numbered.id, t.timeout_ms, t.traceparent
      FROM numbered
      JOIN unnest($8::int8[], $9::text[]) WITH ORDINALITY AS t(timeout_ms, traceparent, n)
        ON t.n = numbered.n
), timeouts AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT id, timeout_ms FROM extras WHERE timeout_ms IS NOT NULL
), traces AS (
    INSERT INTO postpone_job_traces (job_id, traceparent)
    SELECT id, traceparent FROM extras WHERE traceparent IS NOT NULL
)
SELECT id FROM numbered ORDER BY n
