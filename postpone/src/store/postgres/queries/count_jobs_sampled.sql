-- count_jobs_sampled: jobs per queue and status in a sample of about $1 percent of the
-- table's pages (TABLESAMPLE SYSTEM: whole pages, read at random); the caller scales the
-- counts by 100 / $1. An estimate, shown as one.
SELECT queue_name AS name, status::text AS status, count(*) AS n
  FROM procrastinate_jobs TABLESAMPLE SYSTEM ($1::float4)
 GROUP BY 1, 2
 ORDER BY 1, 2
