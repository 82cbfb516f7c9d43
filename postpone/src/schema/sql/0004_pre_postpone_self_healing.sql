-- Postpone's self-healing: the automatic rescue of stalled jobs (ADR 11), task timeouts
-- set per defer, and paused queues. Additive: Procrastinate's objects are unchanged, and a Python
-- worker never reads or writes these.
--
-- The rescue.
--
-- A Postpone worker claims jobs beyond its free slots (its local queue), so a worker killed
-- outright leaves `doing` jobs of two kinds: those it had started (a failed attempt: they
-- go through their retry strategy) and those still waiting in its queue (never started:
-- back to `todo`, no attempt lost). The worker's start watermark tells them apart: every job
-- it holds at or before the watermark, in start order (priority DESC, id ASC), may have
-- started; every one after it has not. The worker raises the watermark before it starts a
-- job, in the same statement as a claim or in one of its own, so the watermark is never
-- behind a start. A worker without a watermark row (a Python worker) may have started all
-- its jobs.
--
-- The table is UNLOGGED: it is written often and its content only matters while its
-- workers live. After a crash of the server (or on a promoted standby) it is empty, and
-- the jobs of the workers that died with it all count as started: the safe side.
CREATE UNLOGGED TABLE postpone_worker_starts (
    worker_id  bigint PRIMARY KEY,
    priority   integer NOT NULL,
    job_id     bigint NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);

-- Raises worker p_worker_id's watermark to (p_priority, p_job_id) unless it is already at
-- or after it in start order (later = lower priority, or the same priority and a higher id).
-- The row is made when the worker registers (register_worker); a worker without one (its
-- row lost with the server, or a Python worker) counts every job it holds as started.
CREATE FUNCTION postpone_mark_started_v1(
    p_worker_id bigint,
    p_priority integer,
    p_job_id bigint
)
    RETURNS void
    LANGUAGE sql
AS $$
    UPDATE postpone_worker_starts AS mark
       SET priority = p_priority, job_id = p_job_id, updated_at = now()
     WHERE mark.worker_id = p_worker_id
       AND (p_priority < mark.priority
            OR (p_priority = mark.priority AND p_job_id > mark.job_id));
$$;

-- Paused queues: Postpone workers claim no job of a queue listed here (running jobs
-- finish; deferring goes on). Pausing and resuming notify `postpone_queue_pauses_v1`, so
-- workers hand back the waiting jobs of a paused queue, or claim again on a resume, at
-- once. Python workers do not read this table.
CREATE TABLE postpone_queue_pauses (
    queue_name character varying(128) PRIMARY KEY,
    paused_at  timestamp with time zone NOT NULL DEFAULT now()
);

-- postpone_fetch_jobs_v1's claim (same rules, same plan settings: see migration 0002)
-- except for the jobs of paused queues,
-- and the worker's watermark raised in the same statement: to (p_priority, p_job_id) when
-- given (jobs of its local queue it is about to start), and to the p_start-th claimed job
-- in start order when p_start > 0 (the claimed jobs that go to free slots at once). One
-- statement: a claim costs no more round trips, and its rows are never copied.
CREATE FUNCTION postpone_fetch_jobs_v2(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer,
    p_start integer,
    p_priority integer,
    p_job_id bigint
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
           AND NOT EXISTS (SELECT 1 FROM postpone_queue_pauses AS pause
                            WHERE pause.queue_name = job.queue_name)
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
    ), claimed AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'doing', worker_id = p_worker_id
          FROM candidate
         WHERE job.id = candidate.id
        RETURNING job.*
    ), started AS (
        -- the first p_start claimed jobs in start order
        SELECT claimed.priority, claimed.id
          FROM claimed
         WHERE p_start > 0
         ORDER BY claimed.priority DESC, claimed.id ASC
         LIMIT greatest(p_start, 0)
    ), marks AS (
        SELECT p_priority AS priority, p_job_id AS job_id
         WHERE p_priority IS NOT NULL AND p_job_id IS NOT NULL
        UNION ALL
        SELECT started.priority, started.id FROM started
    ), latest AS (
        SELECT marks.priority, marks.job_id
          FROM marks
         ORDER BY marks.priority ASC, marks.job_id DESC
         LIMIT 1
    ), marked AS (
        UPDATE postpone_worker_starts AS mark
           SET priority = latest.priority, job_id = latest.job_id, updated_at = now()
          FROM latest
         WHERE mark.worker_id = p_worker_id
           AND (latest.priority < mark.priority
                OR (latest.priority = mark.priority AND latest.job_id > mark.job_id))
    )
    SELECT claimed.* FROM claimed;
END;
$$;

-- Why and how each stalled job was rescued, kept (and deleted) with its job: the worker
-- that stopped heartbeating (NULL when it had been pruned before), whether the job may have
-- started there, and what the rescue did with it: 'todo' (back in the queue, no attempt
-- counted), 'retried' (a failed attempt, retried by its strategy), 'failed', or 'aborted'
-- (never started, its abort requested).
CREATE TABLE postpone_rescues (
    id         bigserial PRIMARY KEY,
    job_id     bigint NOT NULL REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    worker_id  bigint,
    rescued_at timestamp with time zone NOT NULL DEFAULT now(),
    started    boolean NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('todo', 'retried', 'failed', 'aborted'))
);

CREATE INDEX postpone_rescues_job_id_idx ON postpone_rescues (job_id);

-- The timeout a defer call set for its job (a task's or a worker's default applies
-- otherwise), kept and deleted with its job. Written in the defer's own statement, only
-- for jobs that have one; read by the claim.
CREATE TABLE postpone_job_timeouts (
    job_id     bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    timeout_ms bigint NOT NULL CHECK (timeout_ms > 0)
);
