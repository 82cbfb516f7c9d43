-- list_events: a job's events (procrastinate_events), oldest first, at most $2.
SELECT id, job_id, type::text AS type, at
  FROM procrastinate_events
 WHERE job_id = $1
 ORDER BY id
 LIMIT $2::bigint
