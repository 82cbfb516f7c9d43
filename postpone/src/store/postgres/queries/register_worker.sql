-- register_worker: a new row in procrastinate_workers, and its start watermark before every
-- job (nothing started yet, schema migration 0004); returns its id.
WITH registered AS (
    SELECT worker_id FROM procrastinate_register_worker_v1()
), mark AS (
    INSERT INTO postpone_worker_starts (worker_id, priority, job_id)
    SELECT worker_id, 2147483647, 0 FROM registered
)
SELECT worker_id FROM registered
