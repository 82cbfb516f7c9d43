-- select_stalled_jobs_by_heartbeat: doing jobs whose worker stopped heartbeating for
-- longer than $1 seconds, or whose worker was pruned (worker_id NULL).
SELECT job.id, job.queue_name, job.task_name, job.priority, job.lock, job.queueing_lock, job.args,
       job.status::text AS status, job.scheduled_at, job.attempts, job.abort_requested, job.worker_id
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
 WHERE job.status = 'doing'
   AND ($2::varchar IS NULL OR job.queue_name = $2)
   AND ($3::varchar IS NULL OR job.task_name = $3)
   AND (job.worker_id IS NULL
        OR worker.id IS NULL
        OR worker.last_heartbeat < now() - make_interval(secs => $1::float8))
 ORDER BY job.id
