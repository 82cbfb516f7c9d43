-- prune_stalled_workers: delete workers silent for more than $1 seconds; returns their ids.
SELECT worker_id FROM procrastinate_prune_stalled_workers_v1($1::float8)
