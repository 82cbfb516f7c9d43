-- defer_jobs_with_extras: defer_jobs, and what a defer call keeps beside each job, in one
-- statement (all or nothing): the timeout it set ($8, milliseconds; NULL: none) in
-- postpone_job_timeouts (schema migration 0004), and the trace context of the span that
-- deferred it ($9, a W3C traceparent; NULL: none) in postpone_job_traces (migration 0006),
-- and its flow-control buckets ($10, a JSON array of {bucket, max_running, rate,
-- period_ms}; NULL: none) in postpone_job_flow, each bucket's limits in
-- postpone_flow_limits (migration 0008: made on first use, updated when they changed).
-- Used only when some job of the batch has any of them. The ids follow the input order (one
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
    SELECT numbered.id, t.timeout_ms, t.traceparent, t.flow::jsonb AS flow
      FROM numbered
      JOIN unnest($8::int8[], $9::text[], $10::text[]) WITH ORDINALITY AS t(timeout_ms, traceparent, flow, n)
        ON t.n = numbered.n
), timeouts AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT id, timeout_ms FROM extras WHERE timeout_ms IS NOT NULL
), traces AS (
    INSERT INTO postpone_job_traces (job_id, traceparent)
    SELECT id, traceparent FROM extras WHERE traceparent IS NOT NULL
), flows AS (
    INSERT INTO postpone_job_flow (job_id, buckets)
    SELECT extras.id, ARRAY(SELECT bucket ->> 'bucket' FROM jsonb_array_elements(extras.flow) AS bucket)
      FROM extras
     WHERE extras.flow IS NOT NULL
), limits AS (
    SELECT DISTINCT ON (bucket ->> 'bucket')
           bucket ->> 'bucket' AS bucket, (bucket ->> 'max_running')::int4 AS max_running,
           (bucket ->> 'rate')::int4 AS rate, (bucket ->> 'period_ms')::int8 AS period_ms
      FROM extras, jsonb_array_elements(extras.flow) AS bucket
     WHERE extras.flow IS NOT NULL
     ORDER BY bucket ->> 'bucket'
), new_limits AS (
    -- A bucket in use is not locked unless its limits changed (no contention between
    -- defers of one key).
    INSERT INTO postpone_flow_limits (bucket, max_running, rate, period_ms)
    SELECT bucket, max_running, rate, period_ms FROM limits
        ON CONFLICT (bucket) DO NOTHING
    RETURNING bucket
), changed_limits AS (
    UPDATE postpone_flow_limits AS flow_limit
       SET max_running = limits.max_running, rate = limits.rate, period_ms = limits.period_ms
      FROM limits
     WHERE flow_limit.bucket = limits.bucket
       AND (flow_limit.max_running, flow_limit.rate, flow_limit.period_ms)
           IS DISTINCT FROM (limits.max_running, limits.rate, limits.period_ms)
)
SELECT id FROM numbered ORDER BY n
