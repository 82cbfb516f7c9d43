-- unregister_worker: delete the worker's row (its jobs' worker_id becomes NULL).
SELECT procrastinate_unregister_worker_v1($1)
