-- Postpone's batch fetch: claim up to p_limit jobs for a worker in one call.
--
-- The choice rules are procrastinate_fetch_job_v2's, which claims one job: todo jobs of
-- the given queues (all when NULL), not scheduled in the future, by priority DESC then id
-- ASC, skipping rows other workers are claiming; a job with a lock is eligible only if no
-- job with that lock is doing and no todo job with that lock comes before it. So a batch
-- holds at most one job per lock, and same-lock jobs run in priority/id order.
--
-- enable_sort is off inside the function: right after a bulk insert the planner's
-- statistics still describe an empty table, and it then sorts every todo row on each call
-- (38 ms for 20,000 rows, measured) instead of walking procrastinate_jobs_priority_idx_v1
-- in order (under 1 ms). jit is off for the same reason: plan costs must not trigger it.
CREATE FUNCTION postpone_fetch_jobs_v1(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET enable_sort = off
    SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH candidate AS (
        SELECT job.id
          FROM procrastinate_jobs AS job
         WHERE job.status = 'todo'
           AND (target_queue_names IS NULL OR job.queue_name = ANY(target_queue_names))
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
         LIMIT p_limit
           FOR UPDATE OF job SKIP LOCKED
    )
    UPDATE procrastinate_jobs AS job
       SET status = 'doing', worker_id = p_worker_id
      FROM candidate
     WHERE job.id = candidate.id
    RETURNING job.*;
END;
$$;
