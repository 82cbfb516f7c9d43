-- Postpone's flow control (ADR 18): concurrency limits and rate limits per queue, per task,
-- or per key taken from a job's args, honoured by every Postpone worker on the database.
-- Additive: Procrastinate's objects are unchanged, and a Python worker never reads these
-- (its jobs run outside the limits; docs/flow-control.md).
--
-- A limit is a bucket: a name (its scope, and the key's value when it has one) with at
-- most max_running jobs `doing` at once and at most `rate` starts (claims) in any window
-- of period_ms. The defer that makes a job of a limited task or queue writes the bucket
-- (first use) and the job's buckets in its own statement; the claim reads them.
CREATE TABLE postpone_flow_limits (
    bucket      text PRIMARY KEY,
    max_running integer CHECK (max_running > 0),
    rate        integer CHECK (rate > 0),
    period_ms   bigint CHECK (period_ms > 0),
    CHECK (max_running IS NOT NULL OR rate IS NOT NULL),
    CHECK ((rate IS NULL) = (period_ms IS NULL))
);

-- The buckets a job counts against, kept and deleted with its job. Only jobs deferred with
-- a limit have a row.
CREATE TABLE postpone_job_flow (
    job_id  bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    buckets text[] NOT NULL CHECK (cardinality(buckets) > 0)
);

-- The starts (claims) of jobs in rate-limited buckets, at the claim's transaction time (the
-- time of its 'started' event). Each claim removes the rows older than their bucket's
-- period and 10 s more (a claim's transaction may have begun that long before it took the
-- flow lock, and its window reaches back from then).
CREATE TABLE postpone_flow_starts (
    bucket     text NOT NULL,
    started_at timestamp with time zone NOT NULL
);

CREATE INDEX postpone_flow_starts_bucket_idx ON postpone_flow_starts (bucket, started_at);

-- What each bucket in use has left now: max_running minus its doing jobs, and rate minus its
-- starts in the window, whichever is smaller. A start is counted when it is later than now
-- minus the period, later than now included: two claims whose transactions began in one
-- order may take the flow lock in the other, and a window must count both. Buckets with no
-- doing job and no start in the window are left out: they have their whole limit (so the
-- cost follows the buckets in use, not every key ever seen).
CREATE FUNCTION postpone_flow_room_v1()
    RETURNS TABLE (bucket text, room bigint)
    LANGUAGE sql
    STABLE
AS $$
    WITH running AS (
        SELECT scope.bucket, count(*) AS jobs
          FROM procrastinate_jobs AS job
          JOIN postpone_job_flow AS flow ON flow.job_id = job.id
         CROSS JOIN LATERAL unnest(flow.buckets) AS scope (bucket)
         WHERE job.status = 'doing'
         GROUP BY scope.bucket
    ), started AS (
        SELECT start.bucket, count(*) AS starts
          FROM postpone_flow_starts AS start
          JOIN postpone_flow_limits AS flow_limit ON flow_limit.bucket = start.bucket
         WHERE start.started_at > now() - flow_limit.period_ms * interval '1 millisecond'
         GROUP BY start.bucket
    )
    SELECT flow_limit.bucket,
           least(flow_limit.max_running - coalesce(running.jobs, 0),
                 flow_limit.rate - coalesce(started.starts, 0)) AS room
      FROM (SELECT running.bucket FROM running
             UNION
            SELECT started.bucket FROM started) AS used
      JOIN postpone_flow_limits AS flow_limit ON flow_limit.bucket = used.bucket
      LEFT JOIN running ON running.bucket = used.bucket
      LEFT JOIN started ON started.bucket = used.bucket;
$$;

-- postpone_fetch_jobs_v2's claim (procrastinate_fetch_job_v2's rules for a batch, paused
-- queues skipped, the worker's watermark raised in the same call) where no job starts
-- beyond its buckets' limits. Claims are serialised by one transaction-level advisory lock
-- (key 'ppflow'): each statement after it sees the doing jobs and starts of every claim
-- committed before, so two workers never both take a bucket's last slot. Releases need no
-- write: a bucket's running jobs are counted from the jobs `doing` now, so a finish, a retry,
-- an abort, a hand-back or a rescue frees the slot with the status it writes.
--
-- Candidates in fetch order, leaving out jobs of buckets with no room; of those, a job is
-- taken when, in each of its buckets, it comes within the room left (by priority DESC, id
-- ASC). Jobs refused for that are tried again in a later round with their buckets full
-- (at most 8 rounds), so a blocked key never hides the jobs of other keys. The 'started'
-- events are written set-wise, as postpone_fetch_jobs_v2 writes them.
CREATE FUNCTION postpone_fetch_jobs_flow_v1(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer,
    p_start integer,
    p_priority integer,
    p_job_id bigint
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET jit = off
AS $$
DECLARE
    claimed procrastinate_jobs[] := '{}';
    batch procrastinate_jobs[];
    refused integer;
    blocked text[];
    round integer := 0;
    started procrastinate_jobs;
    mark_priority integer := p_priority;
    mark_job_id bigint := p_job_id;
BEGIN
    PERFORM pg_advisory_xact_lock(123628057030519);  -- 'ppflow'
    PERFORM set_config('postpone.bulk_events', 'on', true);
    DELETE FROM postpone_flow_starts AS start
     USING postpone_flow_limits AS flow_limit
     WHERE start.bucket = flow_limit.bucket
       AND start.started_at < now() - (flow_limit.period_ms + 10000) * interval '1 millisecond';
    LOOP
        round := round + 1;
        EXIT WHEN round > 8 OR cardinality(claimed) >= p_limit;
        SELECT coalesce(array_agg(room.bucket), '{}') INTO blocked
          FROM postpone_flow_room_v1() AS room
         WHERE room.room <= 0;
        WITH candidate AS (
            SELECT job.id, job.priority, flow.buckets
              FROM procrastinate_jobs AS job
              LEFT JOIN postpone_job_flow AS flow ON flow.job_id = job.id
             WHERE job.status = 'todo'
               AND (target_queue_names IS NULL OR job.queue_name = ANY(target_queue_names))
               AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
               AND NOT EXISTS (SELECT 1 FROM postpone_queue_pauses AS pause
                                WHERE pause.queue_name = job.queue_name)
               AND (flow.buckets IS NULL OR NOT flow.buckets && blocked)
               AND (job.lock IS NULL OR NOT EXISTS (
                       SELECT 1
                         FROM procrastinate_jobs AS other
                        WHERE other.lock = job.lock
                          AND (other.status = 'doing'
                               OR (other.status = 'todo'
                                   AND (other.priority > job.priority
                                        OR (other.priority = job.priority AND other.id < job.id))))))
             ORDER BY job.priority DESC, job.id ASC
             LIMIT p_limit - cardinality(claimed)
               FOR UPDATE OF job SKIP LOCKED
        ),
        ranked AS (
            SELECT candidate.id, scope.bucket,
                   row_number() OVER (PARTITION BY scope.bucket
                                          ORDER BY candidate.priority DESC, candidate.id) AS place
              FROM candidate
             CROSS JOIN LATERAL unnest(candidate.buckets) AS scope (bucket)
        ),
        over_limit AS (
            SELECT DISTINCT ranked.id
              FROM ranked
              JOIN postpone_flow_limits AS flow_limit ON flow_limit.bucket = ranked.bucket
              LEFT JOIN postpone_flow_room_v1() AS room ON room.bucket = ranked.bucket
             WHERE ranked.place > coalesce(room.room,
                                           least(flow_limit.max_running, flow_limit.rate))
        ),
        updated AS (
            UPDATE procrastinate_jobs AS job
               SET status = 'doing', worker_id = p_worker_id
              FROM candidate
             WHERE job.id = candidate.id
               AND candidate.id NOT IN (SELECT over_limit.id FROM over_limit)
            RETURNING job
        )
        SELECT coalesce(array_agg(updated.job), '{}'), (SELECT count(*) FROM over_limit)
          INTO batch, refused
          FROM updated;
        -- The starts of rate-limited buckets, for the next claims' windows.
        INSERT INTO postpone_flow_starts (bucket, started_at)
        SELECT scope.bucket, now()
          FROM unnest(batch) AS job
          JOIN postpone_job_flow AS flow ON flow.job_id = job.id
         CROSS JOIN LATERAL unnest(flow.buckets) AS scope (bucket)
          JOIN postpone_flow_limits AS flow_limit ON flow_limit.bucket = scope.bucket
         WHERE flow_limit.rate IS NOT NULL;
        claimed := claimed || batch;
        EXIT WHEN refused = 0;
    END LOOP;
    PERFORM set_config('postpone.bulk_events', 'off', true);

    -- The 'started' events, set-wise as postpone_fetch_jobs_v2 writes them (on a database
    -- whose triggers Postpone set up; elsewhere the status trigger wrote them, row by row).
    IF current_setting('postpone.skipped_status_update', true) = 'on' THEN
        PERFORM set_config('postpone.skipped_status_update', 'off', true);
        INSERT INTO procrastinate_events (job_id, type)
        SELECT job.id, 'started' FROM unnest(claimed) AS job ORDER BY job.id;
    END IF;

    SELECT coalesce(array_agg(job ORDER BY job.priority DESC, job.id), '{}') INTO claimed
      FROM unnest(claimed) AS job;

    -- The later in start order of the mark asked and the p_start-th claimed job, as
    -- postpone_fetch_jobs_v2.
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

-- When a rate-limited bucket next has room: for each bucket, the time its rate-th newest
-- start leaves the window (a start and a period later); the earliest of them that is in the
-- future, or that passed less than 50 ms ago (then: now). NULL when there is none. A worker
-- whose claim came back short sleeps until then, not a polling interval. The grace covers
-- a start leaving the window between that claim and this call: the claim found the bucket
-- full, and it has room now. Buckets that had room earlier than that are not due (an idle
-- bucket never makes a worker claim over and over).
CREATE FUNCTION postpone_flow_next_start_v1()
    RETURNS timestamp with time zone
    LANGUAGE sql
    STABLE
AS $$
    SELECT min(greatest(due.at, now()))
      FROM (
          SELECT start.started_at + flow_limit.period_ms * interval '1 millisecond' AS at,
                 row_number() OVER (PARTITION BY start.bucket ORDER BY start.started_at DESC) AS newer,
                 flow_limit.rate
            FROM postpone_flow_starts AS start
            JOIN postpone_flow_limits AS flow_limit ON flow_limit.bucket = start.bucket
      ) AS due
     WHERE due.newer = due.rate
       AND due.at > now() - interval '50 milliseconds';
$$;
