-- Each drained job's 'started' and 'succeeded' events, written by the triggers.
SELECT count(*) FROM procrastinate_events WHERE type IN ('started', 'succeeded')
