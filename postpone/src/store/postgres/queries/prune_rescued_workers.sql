-- prune_rescued_workers: the rescue's last step: remove the workers silent for more than
-- $1 seconds (procrastinate_prune_stalled_workers_v1) and their start watermarks, and the
-- watermarks of workers pruned by anyone else before; returns the removed workers' ids.
WITH pruned AS (
    SELECT worker_id FROM procrastinate_prune_stalled_workers_v1($1::float8)
), marks AS (
    DELETE FROM postpone_worker_starts AS mark
     WHERE mark.worker_id IN (SELECT worker_id FROM pruned)
        OR NOT EXISTS (SELECT 1 FROM procrastinate_workers AS worker WHERE worker.id = mark.worker_id)
)
SELECT worker_id FROM pruned
