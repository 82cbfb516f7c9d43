-- W3L: the deferred/started/succeeded events of the prefilled jobs, an hour old.
INSERT INTO procrastinate_events (job_id, type, at)
SELECT j.id, e.type::procrastinate_job_event_type, now() - interval '1 hour' + e.after
  FROM procrastinate_jobs AS j
 CROSS JOIN (VALUES ('deferred', interval '0'), ('started', interval '1 ms'),
                    ('succeeded', interval '2 ms')) AS e(type, after)
 WHERE j.status = 'succeeded'
