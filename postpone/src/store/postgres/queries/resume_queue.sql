-- resume_queue: resumes queue $1 and tells the workers on postpone_queue_pauses_v1, at
-- commit (they claim again at once); true when it was paused.
WITH resumed AS (
    DELETE FROM postpone_queue_pauses
     WHERE queue_name = $1
    RETURNING queue_name
), notified AS (
    SELECT pg_notify('postpone_queue_pauses_v1', '{"type": "queue_pauses_changed"}')
      FROM resumed
)
SELECT count(*) > 0 AS changed FROM notified
