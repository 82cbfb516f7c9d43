-- The doing jobs of worker $1: whether each has started (a recorded run) and when its
-- latest run started, and how long it takes.
SELECT job.id,
       run.job_id IS NOT NULL AS started,
       run.last_start,
       (job.args->>'ms')::bigint AS ms
  FROM procrastinate_jobs AS job
  LEFT JOIN chaos_runs AS run ON run.job_id = job.id
 WHERE job.status = 'doing' AND job.worker_id = $1::bigint
