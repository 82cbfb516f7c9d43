-- list_locked_jobs: the locks in use: running jobs that hold a lock, by lock, at most $1
-- (through procrastinate_jobs_lock_idx_v1, one entry per held lock).
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status::text AS status,
       scheduled_at, attempts, abort_requested, worker_id
  FROM procrastinate_jobs
 WHERE status = 'doing' AND lock IS NOT NULL
 ORDER BY lock
 LIMIT $1::bigint
