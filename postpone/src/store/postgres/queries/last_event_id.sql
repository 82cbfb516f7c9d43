-- last_event_id: the newest event's id (the primary key's last entry), NULL when none.
SELECT max(id) AS id FROM procrastinate_events
