-- select_jobs_to_rescue: the doing jobs of workers silent for more than $1 seconds, or
-- pruned (worker_id NULL), locked for the rescue pass (others skip them), each with whether
-- it may have started there: at or before its worker's start watermark in start order, or
-- its worker has no watermark (a Python worker, or one pruned before).
SELECT job.id, job.queue_name, job.task_name, job.priority, job.lock, job.queueing_lock,
       job.args, job.status::text AS status, job.scheduled_at, job.attempts,
       job.abort_requested, job.worker_id,
       (mark.worker_id IS NULL
        OR job.priority > mark.priority
        OR (job.priority = mark.priority AND job.id <= mark.job_id)) AS started
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
  LEFT JOIN postpone_worker_starts AS mark ON mark.worker_id = job.worker_id
 WHERE job.status = 'doing'
   AND (job.worker_id IS NULL
        OR worker.id IS NULL
        OR worker.last_heartbeat < now() - make_interval(secs => $1::float8))
 ORDER BY job.id
   FOR UPDATE OF job SKIP LOCKED
