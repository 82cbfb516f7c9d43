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

-- postpone_fetch_jobs_v1's claim as migration 0003 left it (procrastinate_fetch_job_v2's
-- rules for a batch, the same plan settings, the 'started' events written set-wise) except
-- for the jobs of paused queues, and the worker's watermark raised in the same call: to
-- (p_priority, p_job_id) when given (jobs of its local queue it is about to start), and to
-- the p_start-th claimed job in start order when p_start > 0 (the claimed jobs that go to
-- free slots at once). One call: a claim costs no more round trips. The jobs come back in
-- start order (priority DESC, id ASC).
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
DECLARE
    claimed procrastinate_jobs[];
    started procrastinate_jobs;
    mark_priority integer := p_priority;
    mark_job_id bigint := p_job_id;
BEGIN
    PERFORM set_config('postpone.bulk_events', 'on', true);
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
    ),
    updated AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'doing', worker_id = p_worker_id
          FROM candidate
         WHERE job.id = candidate.id
        RETURNING job
    )
    SELECT array_agg(updated.job ORDER BY (updated.job).priority DESC, (updated.job).id)
      INTO claimed
      FROM updated;
    PERFORM set_config('postpone.bulk_events', 'off', true);

    IF current_setting('postpone.skipped_status_update', true) = 'on' THEN
        PERFORM set_config('postpone.skipped_status_update', 'off', true);
        INSERT INTO procrastinate_events (job_id, type)
        SELECT job.id, 'started' FROM unnest(claimed) AS job ORDER BY job.id;
    END IF;

    -- The later in start order of the mark asked and the p_start-th claimed job.
    IF p_start > 0 AND cardinality(claimed) > 0 THEN
        started := claimed[least(p_start, cardinality(claimed))];
        IF mark_priority IS NULL OR mark_job_id IS NULL
           OR started.priority < mark_priority
           OR (started.priority = mark_priority AND started.id > mark_job_id) THEN
            mark_priority := started.priority;
            mark_job_id := started.id;
        END IF;
    END IF;
    IF mark_priority IS NOT NULL AND mark_job_id IS NOT NULL THEN
        UPDATE postpone_worker_starts AS mark
           SET priority = mark_priority, job_id = mark_job_id, updated_at = now()
         WHERE mark.worker_id = p_worker_id
           AND (mark_priority < mark.priority
                OR (mark_priority = mark.priority AND mark_job_id > mark.job_id));
    END IF;

    RETURN QUERY SELECT * FROM unnest(claimed);
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
