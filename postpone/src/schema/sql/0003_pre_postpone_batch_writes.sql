-- Postpone's batch writes of outcomes: procrastinate_finish_job_v1 and
-- procrastinate_retry_job_v2 for many jobs in one call, planned so that neither the
-- table's size nor its statistics change the work per job.
--
-- As plain statements joined to their input arrays, the planner chose by statistics, and
-- on a backlog it had never analysed (a W3 drain: 20,000 jobs deferred, then drained
-- within seconds) it scanned the whole table for each batch and rescanned the input for
-- every row: 10 ms per 100 finished jobs, against 2.5 ms here, nearly all of it the
-- status trigger (measured, docs/performance.md). Here each job row is found through an
-- index by `id = ANY(ids)` (sequential and bitmap scans are off inside the functions),
-- and its own values are looked up by position in the arrays instead of by a join.
--
-- Ids must be distinct within a call (the worker writes each outcome once).

-- Each job (p_ids) still in todo or doing is deleted when its p_delete flag is set, else
-- set to its end status (p_statuses: succeeded, failed or aborted) with abort_requested
-- cleared and attempts + 1 when it was doing. Returns the ids written; a job in any other
-- status is left alone and missing from the result.
CREATE FUNCTION postpone_finish_jobs_v1(
    p_ids bigint[],
    p_statuses procrastinate_job_status[],
    p_delete boolean[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
AS $$
BEGIN
    IF true = ANY(p_delete) THEN
        RETURN QUERY
        DELETE FROM procrastinate_jobs AS job
         WHERE job.id = ANY(p_ids)
           AND p_delete[array_position(p_ids, job.id)]
           AND job.status IN ('todo', 'doing')
        RETURNING job.id;
    END IF;
    RETURN QUERY
    UPDATE procrastinate_jobs AS job
       SET status = p_statuses[array_position(p_ids, job.id)],
           abort_requested = false,
           attempts = CASE WHEN job.status = 'doing' THEN job.attempts + 1 ELSE job.attempts END
     WHERE job.id = ANY(p_ids)
       AND NOT p_delete[array_position(p_ids, job.id)]
       AND job.status IN ('todo', 'doing')
    RETURNING job.id;
END;
$$;

-- Each doing job (p_ids) goes back to todo at its retry time (now() when NULL) with
-- attempts + 1 and, where given (not NULL), its new priority, queue and lock; a job whose
-- abort was requested fails instead. Returns the ids written; a job not doing is left
-- alone and missing from the result.
CREATE FUNCTION postpone_retry_jobs_v1(
    p_ids bigint[],
    p_retry_at timestamp with time zone[],
    p_priority integer[],
    p_queue_name character varying[],
    p_lock character varying[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN job.abort_requested THEN 'failed' ELSE 'todo' END::procrastinate_job_status,
           attempts = CASE WHEN job.abort_requested THEN job.attempts ELSE job.attempts + 1 END,
           scheduled_at = CASE WHEN job.abort_requested THEN job.scheduled_at
                               ELSE COALESCE(p_retry_at[array_position(p_ids, job.id)], now()) END,
           priority = CASE WHEN job.abort_requested THEN job.priority
                           ELSE COALESCE(p_priority[array_position(p_ids, job.id)], job.priority) END,
           queue_name = CASE WHEN job.abort_requested THEN job.queue_name
                             ELSE COALESCE(p_queue_name[array_position(p_ids, job.id)], job.queue_name) END,
           lock = CASE WHEN job.abort_requested THEN job.lock
                       ELSE COALESCE(p_lock[array_position(p_ids, job.id)], job.lock) END
     WHERE job.id = ANY(p_ids)
       AND job.status = 'doing'
    RETURNING job.id;
END;
$$;
