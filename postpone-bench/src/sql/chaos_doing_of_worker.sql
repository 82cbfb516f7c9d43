-- The doing jobs of worker $1: whether each has started (a recorded run), and how long it
-- takes.
SELECT job.id,
       EXISTS (SELECT 1 FROM chaos_runs AS run WHERE run.job_id = job.id) AS started,
       (job.args->>'ms')::bigint AS ms
  FROM procrastinate_jobs AS job
 WHERE job.status = 'doing' AND job.worker_id = $1::bigint
