-- How many of jobs $1 are in status $2.
SELECT count(*) FROM procrastinate_jobs
 WHERE id = ANY($1::bigint[]) AND status::text = $2::text
