-- pause_queue: pauses queue $1 (Postpone workers claim none of its jobs until it is
-- resumed) and tells the workers on postpone_queue_pauses_v1, at commit; true when it was
-- not paused before.
WITH paused AS (
    INSERT INTO postpone_queue_pauses (queue_name)
    VALUES ($1)
    ON CONFLICT (queue_name) DO NOTHING
    RETURNING queue_name
), notified AS (
    SELECT pg_notify('postpone_queue_pauses_v1', '{"type": "queue_pauses_changed"}')
      FROM paused
)
SELECT count(*) > 0 AS changed FROM notified
