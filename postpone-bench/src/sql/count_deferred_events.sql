-- The contract's check of a defer: one 'deferred' event per job.
SELECT count(*) FROM procrastinate_events WHERE type = 'deferred'
