-- How many of jobs $1 worker $2 still holds (doing).
SELECT count(*) FROM procrastinate_jobs
 WHERE id = ANY($1::bigint[]) AND status = 'doing' AND worker_id = $2::bigint
