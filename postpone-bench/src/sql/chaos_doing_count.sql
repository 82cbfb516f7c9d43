-- How many jobs worker $1 still holds (doing).
SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = $1::bigint
