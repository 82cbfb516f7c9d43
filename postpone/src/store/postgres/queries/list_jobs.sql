-- list_jobs: jobs matching every filter given (NULL matches all), oldest first.
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status::text AS status,
       scheduled_at, attempts, abort_requested, worker_id
  FROM procrastinate_jobs
 WHERE ($1::bigint IS NULL OR id = $1)
   AND ($2::varchar IS NULL OR queue_name = $2)
   AND ($3::varchar IS NULL OR task_name = $3)
   AND ($4::text IS NULL OR status = $4::procrastinate_job_status)
   AND ($5::text IS NULL OR lock = $5)
   AND ($6::text IS NULL OR queueing_lock = $6)
   AND ($7::bigint IS NULL OR worker_id = $7)
 ORDER BY id
 LIMIT $8::bigint
