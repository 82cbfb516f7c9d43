-- list_jobs_page: one page of the jobs matching every filter given (NULL matches all),
-- newest first: ids below $9 (NULL: from the newest), among the $11 jobs nearest below it
-- (the scan window: a page never reads more rows than that, however rare the matches;
-- an id filter, $1, is not bounded by it). One row per job, each with the window's lowest
-- id (edge) and size (scanned); a single row with NULL job columns when none matches.
-- The search ($8) is a substring of the args' JSON text. Keyset pagination: no OFFSET.
WITH scan AS (
    SELECT min(id) AS edge, count(*) AS scanned
      FROM (SELECT id
              FROM procrastinate_jobs
             WHERE ($9::bigint IS NULL OR id < $9)
             ORDER BY id DESC
             LIMIT $11::bigint) AS window_ids
)
SELECT scan.edge, scan.scanned, job.id, job.queue_name, job.task_name, job.priority, job.lock,
       job.queueing_lock, job.args, job.status, job.scheduled_at, job.attempts,
       job.abort_requested, job.worker_id
  FROM scan
  LEFT JOIN LATERAL (
      SELECT id, queue_name, task_name, priority, lock, queueing_lock, args,
             status::text AS status, scheduled_at, attempts, abort_requested, worker_id
        FROM procrastinate_jobs
       WHERE ($9::bigint IS NULL OR id < $9)
         AND ($1::bigint IS NOT NULL OR id >= scan.edge)
         AND ($1::bigint IS NULL OR id = $1)
         AND ($2::varchar IS NULL OR queue_name = $2)
         AND ($3::varchar IS NULL OR task_name = $3)
         AND ($4::text IS NULL OR status = $4::procrastinate_job_status)
         AND ($5::text IS NULL OR lock = $5)
         AND ($6::text IS NULL OR queueing_lock = $6)
         AND ($7::bigint IS NULL OR worker_id = $7)
         AND ($8::text IS NULL OR strpos(args::text, $8) > 0)
       ORDER BY id DESC
       LIMIT $10::bigint
  ) AS job ON true
