-- W3L: $1 succeeded jobs already in the table (no trigger fires: they are not todo).
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status, attempts)
SELECT 'default', 'postpone.bench.noop', 0, jsonb_build_object('i', g), 'succeeded', 1
  FROM generate_series(1, $1::bigint) AS g
