-- defer_periodic_job: defer one tick of a periodic task, once across every worker
-- (Rust or Python). procrastinate_defer_periodic_job_v2 records (task, periodic_id,
-- timestamp) in procrastinate_periodic_defers and returns NULL when that tick is taken;
-- otherwise it inserts the job and forgets older ticks of the same schedule.
-- $8 carries the args as JSON text, as in defer_jobs; $9 the timeout the registration
-- set (milliseconds, NULL: none), kept in postpone_job_timeouts as defer_jobs does; $10
-- the job's flow-control buckets (a JSON array of {bucket, max_running, rate, period_ms};
-- NULL: none), kept in postpone_job_flow with each bucket's limits in
-- postpone_flow_limits (postpone_keep_flow_limits_v1, migrations 0008 and 0010), in the
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
    SELECT postpone_keep_flow_limits_v1($10::text::jsonb)
      FROM deferred
     WHERE id IS NOT NULL AND $10::text IS NOT NULL
)
SELECT id FROM deferred WHERE (SELECT count(*) FROM limits) >= 0
