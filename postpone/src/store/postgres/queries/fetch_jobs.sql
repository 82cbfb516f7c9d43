-- fetch_jobs: claim up to $3 jobs for worker $2 in one round trip.
-- Same choice rules as procrastinate_fetch_job_v2, which claims one: todo jobs of the
-- given queues (all when $1 is NULL), not scheduled in the future, by priority DESC then
-- id ASC, skipping rows other workers are claiming; a job with a lock is eligible only
-- if no job with that lock is doing and no todo job with that lock comes before it. So a
-- batch holds at most one job per lock, and same-lock jobs run in priority/id order.
WITH candidate AS (
    SELECT job.id
      FROM procrastinate_jobs AS job
     WHERE job.status = 'todo'
       AND ($1::varchar[] IS NULL OR job.queue_name = ANY($1))
       AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
       AND (job.lock IS NULL OR NOT EXISTS (
               SELECT 1
                 FROM procrastinate_jobs AS other
                WHERE other.lock = job.lock
                  AND (other.status = 'doing'
                       OR (other.status = 'todo'
                           AND (other.priority > job.priority
                                OR (other.priority = job.priority AND other.id < job.id))))))
     ORDER BY job.priority DESC, job.id ASC
     LIMIT $3
       FOR UPDATE OF job SKIP LOCKED
)
UPDATE procrastinate_jobs AS job
   SET status = 'doing', worker_id = $2
  FROM candidate
 WHERE job.id = candidate.id
RETURNING job.id, job.queue_name, job.task_name, job.priority, job.lock, job.queueing_lock, job.args,
          job.status::text AS status, job.scheduled_at, job.attempts, job.abort_requested, job.worker_id
