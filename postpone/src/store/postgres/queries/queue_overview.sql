-- queue_overview: every queue that has a job (found by skipping through the queue_name
-- index, one probe per queue, never reading the whole table) or is paused, by name, with
-- its todo and doing jobs counted in one pass over at most $1 open (todo or doing) jobs of
-- all queues (the partial index of open jobs; open_capped: the pass stopped at $1, so the
-- counts are lower bounds), its oldest
-- runnable job (todo and due now, the lowest id), when that job became runnable (the
-- later of its deferred event and its schedule) and for how many seconds, by the
-- server's clock, and since when the queue is paused.
WITH RECURSIVE queues(name) AS (
    (SELECT queue_name FROM procrastinate_jobs ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT job.queue_name
              FROM procrastinate_jobs AS job
             WHERE job.queue_name > queues.name
             ORDER BY job.queue_name
             LIMIT 1)
      FROM queues
     WHERE queues.name IS NOT NULL
), open_jobs AS (
    SELECT job.queue_name, job.status
      FROM procrastinate_jobs AS job
     WHERE job.status IN ('todo', 'doing')
     LIMIT $1::bigint
), open_counts AS (
    SELECT queue_name,
           count(*) FILTER (WHERE status = 'todo') AS todo,
           count(*) FILTER (WHERE status = 'doing') AS doing
      FROM open_jobs
     GROUP BY queue_name
), names AS (
    SELECT name FROM queues WHERE name IS NOT NULL
    UNION
    SELECT queue_name FROM postpone_queue_pauses
)
SELECT names.name,
       coalesce(open_counts.todo, 0) AS todo,
       coalesce(open_counts.doing, 0) AS doing,
       (SELECT count(*) FROM open_jobs) >= $1::bigint AS open_capped,
       oldest.id AS oldest_id,
       oldest.runnable_since,
       extract(epoch FROM now() - oldest.runnable_since)::float8 AS oldest_age_seconds,
       pause.paused_at
  FROM names
  LEFT JOIN open_counts ON open_counts.queue_name = names.name
  LEFT JOIN postpone_queue_pauses AS pause ON pause.queue_name = names.name
  LEFT JOIN LATERAL (
      SELECT job.id,
             greatest(job.scheduled_at,
                      (SELECT min(event.at) FROM procrastinate_events AS event
                        WHERE event.job_id = job.id AND event.type = 'deferred'))
                 AS runnable_since
        FROM procrastinate_jobs AS job
       WHERE job.queue_name = names.name
         AND job.status = 'todo'
         AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
       ORDER BY job.id
       LIMIT 1
  ) AS oldest ON true
 ORDER BY names.name
