-- W4S: one job, as a single defer writes it.
SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'postpone.bench.noop', 0,
    NULL, NULL, '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1])
