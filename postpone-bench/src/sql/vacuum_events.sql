-- After a prefill (VACUUM runs alone, outside a transaction).
VACUUM ANALYZE procrastinate_events
