-- defer_periodic_job: defer one tick of a periodic task, once across every worker
-- (Rust or Python). procrastinate_defer_periodic_job_v2 records (task, periodic_id,
-- timestamp) in procrastinate_periodic_defers and returns NULL when that tick is taken;
-- otherwise it inserts the job and forgets older ticks of the same schedule.
-- $8 carries the args as JSON text, as in defer_jobs; $9 the timeout the registration
-- set (milliseconds, NULL: none), kept in postpone_job_timeouts as defer_jobs does; $10
-- the job's flow-control buckets (a JSON array of {bucket, max_running, rate, period_ms};
-- NULL: none), kept in postpone_job_flow with each bucket's limits in
-- postpone_flow_limits, as defer_jobs_with_extras keeps them (migration 0008), in the
-- same statement: the job is never claimable without them.
WITH deferred AS (
    SELECT procrastinate_defer_periodic_job_v2($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) AS id
), timeout AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT id, $9::int8 FROM deferred WHERE id IS NOT NULL AND $9::int8 IS NOT NULL
), flows AS (
    INSERT INTO postpone_job_flow (job_id, buckets)
    SELECT id, ARRAY(SELECT bucket ->> 'bucket' FROM jsonb_array_elements($10::text::jsonb) AS bucket)
      FROM deferred
     WHERE id IS NOT NULL AND $10::text IS NOT NULL
), limits AS (
    SELECT DISTINCT ON (bucket ->> 'bucket')
           bucket ->> 'bucket' AS bucket, (bucket ->> 'max_running')::int4 AS max_running,
           (bucket ->> 'rate')::int4 AS rate, (bucket ->> 'period_ms')::int8 AS period_ms
      FROM deferred, jsonb_array_elements($10::text::jsonb) AS bucket
     WHERE deferred.id IS NOT NULL AND $10::text IS NOT NULL
     ORDER BY bucket ->> 'bucket'
), new_limits AS (
    INSERT INTO postpone_flow_limits (bucket, max_running, rate, period_ms)
    SELECT bucket, max_running, rate, period_ms FROM limits
        ON CONFLICT (bucket) DO NOTHING
), changed_limits AS (
    UPDATE postpone_flow_limits AS flow_limit
       SET max_running = limits.max_running, rate = limits.rate, period_ms = limits.period_ms
      FROM limits
     WHERE flow_limit.bucket = limits.bucket
       AND (flow_limit.max_running, flow_limit.rate, flow_limit.period_ms)
           IS DISTINCT FROM (limits.max_running, limits.rate, limits.period_ms)
)
SELECT id FROM deferred
