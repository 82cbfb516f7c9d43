-- A run of job $1 starts, in process $2 for worker $3.
INSERT INTO chaos_runs (job_id, runs, last_start, last_pid, last_worker)
VALUES ($1::bigint, 1, clock_timestamp(), $2::integer, $3::bigint)
ON CONFLICT (job_id) DO UPDATE
   SET runs = chaos_runs.runs + 1, last_start = EXCLUDED.last_start,
       last_pid = EXCLUDED.last_pid, last_worker = EXCLUDED.last_worker
