-- unregister_worker: delete the worker's row (its jobs' worker_id becomes NULL) and its
-- start watermark.
WITH mark AS (
    DELETE FROM postpone_worker_starts WHERE worker_id = $1::bigint
)
SELECT procrastinate_unregister_worker_v1($1::bigint)
