-- list_periodic_defers: the last deferred tick of each periodic schedule
-- (procrastinate_periodic_defers keeps the latest per task and periodic id), with its job.
SELECT task_name, periodic_id, defer_timestamp, job_id
  FROM procrastinate_periodic_defers
 ORDER BY task_name, periodic_id, defer_timestamp
