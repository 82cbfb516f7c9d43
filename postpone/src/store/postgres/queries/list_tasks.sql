-- list_tasks: jobs per task and per status, for the filters given (NULL matches all).
WITH per_status AS (
    SELECT task_name AS name, status::text AS status, count(*) AS n
      FROM procrastinate_jobs
     WHERE ($1::varchar IS NULL OR queue_name = $1)
       AND ($2::varchar IS NULL OR task_name = $2)
       AND ($3::text IS NULL OR status = $3::procrastinate_job_status)
       AND ($4::text IS NULL OR lock = $4)
     GROUP BY 1, 2
)
SELECT name, sum(n)::bigint AS jobs_count, jsonb_object_agg(status, n) AS stats
  FROM per_status
 GROUP BY name
 ORDER BY name
