-- list_workers: the registered workers (Postpone's and Procrastinate's alike), by id, with
-- their last heartbeat, its age in seconds by the server's clock, and how many jobs each
-- runs (through the partial index of running jobs by worker).
SELECT worker.id,
       worker.last_heartbeat,
       extract(epoch FROM now() - worker.last_heartbeat)::float8 AS heartbeat_age_seconds,
       (SELECT count(*) FROM procrastinate_jobs AS job
         WHERE job.worker_id = worker.id AND job.status = 'doing') AS running_jobs
  FROM procrastinate_workers AS worker
 ORDER BY worker.id
