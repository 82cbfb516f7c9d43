-- fetch_jobs: claim up to $3 jobs for worker $2 in one round trip, through
-- postpone_fetch_jobs_v1 (schema migration 0002: procrastinate_fetch_job_v2's rules, for
-- a batch).
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status::text AS status,
       scheduled_at, attempts, abort_requested, worker_id
  FROM postpone_fetch_jobs_v1($1::varchar[], $2::bigint, $3::int4)
