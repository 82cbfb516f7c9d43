-- defer_periodic_job: defer one tick of a periodic task, once across every worker
-- (Rust or Python). procrastinate_defer_periodic_job_v2 records (task, periodic_id,
-- timestamp) in procrastinate_periodic_defers and returns NULL when that tick is taken;
-- otherwise it inserts the job and forgets older ticks of the same schedule.
-- $8 carries the args as JSON text, as in defer_jobs; $9 the timeout the registration
-- set (milliseconds, NULL: none), kept in postpone_job_timeouts as defer_jobs does.
WITH deferred AS (
    SELECT procrastinate_defer_periodic_job_v2($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) AS id
), timeout AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT id, $9::int8 FROM deferred WHERE id IS NOT NULL AND $9::int8 IS NOT NULL
)
SELECT id FROM deferred
