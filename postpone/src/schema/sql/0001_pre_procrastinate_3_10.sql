-- Postpone migration 0001, pre half: the Procrastinate 3.10 database contract.
--
-- Every object below is part of what a Procrastinate 3.10 client reads, writes or calls.
-- Names, column types, defaults, constraints, index predicates, enum labels (in order),
-- function signatures and trigger conditions match what `procrastinate schema --apply`
-- creates, so that a Python worker and a Rust worker can share one queue. The plpgsql
-- bodies are our own and behave like Procrastinate's.
--
-- Objects are unqualified: they land in the first schema of the connection's search_path.
-- A database that Procrastinate already set up is adopted by the migrator instead (this
-- file is then not run).

---------------------------------------------------------------------------------------
-- Types
---------------------------------------------------------------------------------------

-- Where a job is in its life. The label order is part of the contract.
CREATE TYPE procrastinate_job_status AS ENUM (
    'todo',       -- waiting to be fetched
    'doing',      -- fetched by a worker, running
    'succeeded',  -- ran to completion
    'failed',     -- ran and raised (retries exhausted)
    'cancelled',  -- cancelled before it started
    'aborting',   -- kept for old clients; nothing sets it any more
    'aborted'     -- stopped while running, after an abort request
);

-- What the event triggers record. The label order is part of the contract.
CREATE TYPE procrastinate_job_event_type AS ENUM (
    'deferred',            -- inserted as todo
    'started',             -- todo -> doing
    'deferred_for_retry',  -- doing -> todo
    'failed',              -- doing -> failed
    'succeeded',           -- doing -> succeeded
    'cancelled',           -- todo -> cancelled (or finished without running)
    'abort_requested',     -- abort_requested flag raised
    'aborted',             -- doing -> aborted
    'scheduled',           -- todo with a scheduled_at
    'retried'              -- failed -> todo (manual retry)
);

-- One job handed to procrastinate_defer_jobs_v1.
CREATE TYPE procrastinate_job_to_defer_v1 AS (
    queue_name    character varying,
    task_name     character varying,
    priority      integer,
    lock          text,
    queueing_lock text,
    args          jsonb,
    scheduled_at  timestamp with time zone
);

---------------------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------------------

CREATE TABLE procrastinate_workers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    last_heartbeat timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE procrastinate_jobs (
    id              bigserial PRIMARY KEY,
    queue_name      character varying(128) NOT NULL,
    task_name       character varying(128) NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    lock            text,
    queueing_lock   text,
    args            jsonb NOT NULL DEFAULT '{}',
    status          procrastinate_job_status NOT NULL DEFAULT 'todo',
    scheduled_at    timestamp with time zone,
    attempts        integer NOT NULL DEFAULT 0,
    abort_requested boolean NOT NULL DEFAULT false,
    worker_id       bigint REFERENCES procrastinate_workers (id) ON DELETE SET NULL,
    -- a job that has not started cannot be waiting for an abort
    CONSTRAINT check_not_todo_abort_requested
        CHECK (NOT (status = 'todo' AND abort_requested = true))
);

-- One row per periodic tick that was deferred, so that several workers defer it once.
CREATE TABLE procrastinate_periodic_defers (
    id              bigserial PRIMARY KEY,
    task_name       character varying(128) NOT NULL,
    defer_timestamp bigint,
    job_id          bigint REFERENCES procrastinate_jobs (id),
    periodic_id     character varying(128) NOT NULL DEFAULT '',
    CONSTRAINT procrastinate_periodic_defers_unique
        UNIQUE (task_name, periodic_id, defer_timestamp)
);

CREATE TABLE procrastinate_events (
    id     bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES procrastinate_jobs ON DELETE CASCADE,
    type   procrastinate_job_event_type,
    at     timestamp with time zone DEFAULT now()
);

---------------------------------------------------------------------------------------
-- Indexes
---------------------------------------------------------------------------------------

-- At most one waiting job per queueing lock: this is what makes AlreadyEnqueued.
CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1
    ON procrastinate_jobs (queueing_lock) WHERE status = 'todo';

-- At most one running job per lock: the last guard of lock semantics.
CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1
    ON procrastinate_jobs (lock) WHERE status = 'doing';

-- Running jobs of a worker (stalled job detection).
CREATE INDEX idx_procrastinate_jobs_worker_not_null
    ON procrastinate_jobs (worker_id) WHERE worker_id IS NOT NULL AND status = 'doing';

CREATE INDEX procrastinate_jobs_queue_name_idx_v1
    ON procrastinate_jobs (queue_name);

-- Lock look-ups done by fetch_job.
CREATE INDEX procrastinate_jobs_id_lock_idx_v1
    ON procrastinate_jobs (id, lock) WHERE status IN ('todo', 'doing');

-- Fetch order: priority first, then age.
CREATE INDEX procrastinate_jobs_priority_idx_v1
    ON procrastinate_jobs (priority DESC, id ASC) WHERE status = 'todo';

CREATE INDEX procrastinate_events_job_id_fkey_v1
    ON procrastinate_events (job_id);

CREATE INDEX procrastinate_periodic_defers_job_id_fkey_v1
    ON procrastinate_periodic_defers (job_id);

CREATE INDEX idx_procrastinate_workers_last_heartbeat
    ON procrastinate_workers (last_heartbeat);

---------------------------------------------------------------------------------------
-- Functions called by clients
---------------------------------------------------------------------------------------

-- Inserts every job of the array in one statement; returns their ids in the array's order
-- (NULL for an empty array).
CREATE FUNCTION procrastinate_defer_jobs_v1(jobs procrastinate_job_to_defer_v1[])
RETURNS bigint[]
LANGUAGE plpgsql
AS $body$
DECLARE
    new_ids bigint[];
BEGIN
    -- ids come from one sequence, in insertion order: sorting them keeps the input order
    WITH created AS (
        INSERT INTO procrastinate_jobs
            (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
        SELECT spec.queue_name, spec.task_name, spec.priority, spec.lock,
               spec.queueing_lock, spec.args, spec.scheduled_at
        FROM unnest(jobs) AS spec
        RETURNING id
    )
    SELECT array_agg(created.id ORDER BY created.id) INTO new_ids FROM created;
    RETURN new_ids;
END;
$body$;

-- Defers one tick of a periodic task unless some worker already did; returns the new job
-- id, or NULL when the tick was already taken. Older ticks of the same task are forgotten.
CREATE FUNCTION procrastinate_defer_periodic_job_v2(
    _queue_name character varying,
    _lock character varying,
    _queueing_lock character varying,
    _task_name character varying,
    _priority integer,
    _periodic_id character varying,
    _defer_timestamp bigint,
    _args jsonb
)
RETURNS bigint
LANGUAGE plpgsql
AS $body$
DECLARE
    tick_id bigint;
    new_job_id bigint;
BEGIN
    INSERT INTO procrastinate_periodic_defers (task_name, periodic_id, defer_timestamp)
    VALUES (_task_name, _periodic_id, _defer_timestamp)
    ON CONFLICT DO NOTHING
    RETURNING id INTO tick_id;

    IF tick_id IS NULL THEN
        RETURN NULL;  -- another worker deferred this tick
    END IF;

    new_job_id := (procrastinate_defer_jobs_v1(ARRAY[
        ROW(_queue_name, _task_name, _priority, _lock, _queueing_lock, _args,
            NULL::timestamp with time zone)::procrastinate_job_to_defer_v1
    ]))[1];

    UPDATE procrastinate_periodic_defers SET job_id = new_job_id WHERE id = tick_id;

    -- rows are locked in id order so that two workers cleaning up cannot deadlock
    DELETE FROM procrastinate_periodic_defers
    WHERE id IN (
        SELECT stale.id
        FROM procrastinate_periodic_defers AS stale
        WHERE stale.task_name = _task_name
          AND stale.periodic_id = _periodic_id
          AND stale.defer_timestamp < _defer_timestamp
        ORDER BY stale.id
        FOR UPDATE
    );

    RETURN new_job_id;
END;
$body$;

-- Takes the next runnable job for this worker: status todo, in one of the queues (NULL
-- means every queue), not scheduled in the future, and first of its lock (no job with the
-- same lock is doing, and none waiting before it in priority DESC, id ASC order).
-- Returns a row of NULLs when there is nothing to do.
CREATE FUNCTION procrastinate_fetch_job_v2(
    target_queue_names character varying[],
    p_worker_id bigint
)
RETURNS procrastinate_jobs
LANGUAGE plpgsql
AS $body$
DECLARE
    fetched procrastinate_jobs;
BEGIN
    UPDATE procrastinate_jobs AS job
    SET status = 'doing', worker_id = p_worker_id
    WHERE job.id = (
        SELECT next_job.id
        FROM procrastinate_jobs AS next_job
        WHERE next_job.status = 'todo'
          AND (target_queue_names IS NULL OR next_job.queue_name = ANY (target_queue_names))
          AND (next_job.scheduled_at IS NULL OR next_job.scheduled_at <= now())
          AND (
              next_job.lock IS NULL
              OR NOT EXISTS (
                  SELECT 1
                  FROM procrastinate_jobs AS same_lock
                  WHERE same_lock.lock = next_job.lock
                    AND (
                        same_lock.status = 'doing'
                        OR (
                            same_lock.status = 'todo'
                            AND (
                                same_lock.priority > next_job.priority
                                OR (same_lock.priority = next_job.priority
                                    AND same_lock.id < next_job.id)
                            )
                        )
                    )
              )
          )
        ORDER BY next_job.priority DESC, next_job.id ASC
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING job.* INTO fetched;

    RETURN fetched;
END;
$body$;

-- Ends a todo or doing job with succeeded, failed or aborted (or deletes it). A doing job
-- counts one more attempt; the abort request is cleared.
CREATE FUNCTION procrastinate_finish_job_v1(
    job_id bigint,
    end_status procrastinate_job_status,
    delete_job boolean
)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    touched bigint;
BEGIN
    IF end_status NOT IN ('succeeded', 'failed', 'aborted') THEN
        RAISE 'End status should be either "succeeded", "failed" or "aborted" (job id: %)', job_id;
    END IF;

    IF delete_job THEN
        DELETE FROM procrastinate_jobs AS job
        WHERE job.id = job_id AND job.status IN ('todo', 'doing')
        RETURNING job.id INTO touched;
    ELSE
        UPDATE procrastinate_jobs AS job
        SET status = end_status,
            abort_requested = false,
            attempts = job.attempts + (CASE WHEN job.status = 'doing' THEN 1 ELSE 0 END)
        WHERE job.id = job_id AND job.status IN ('todo', 'doing')
        RETURNING job.id INTO touched;
    END IF;

    IF touched IS NULL THEN
        RAISE 'Job was not found or not in "doing" or "todo" status (job id: %)', job_id;
    END IF;
END;
$body$;

-- Cancels a waiting job (or deletes it); with abort, also flags a running job for abort.
-- Returns the job id, or NULL when nothing applied.
CREATE FUNCTION procrastinate_cancel_job_v1(job_id bigint, abort boolean, delete_job boolean)
RETURNS bigint
LANGUAGE plpgsql
AS $body$
DECLARE
    touched bigint;
BEGIN
    IF delete_job THEN
        DELETE FROM procrastinate_jobs AS job
        WHERE job.id = job_id AND job.status = 'todo'
        RETURNING job.id INTO touched;
        IF touched IS NOT NULL THEN
            RETURN touched;
        END IF;
    END IF;

    IF abort THEN
        -- a waiting job is cancelled at once; a running one is asked to stop
        UPDATE procrastinate_jobs AS job
        SET abort_requested = true,
            status = (CASE WHEN job.status = 'todo'
                           THEN 'cancelled'::procrastinate_job_status
                           ELSE job.status END)
        WHERE job.id = job_id AND job.status IN ('todo', 'doing')
        RETURNING job.id INTO touched;
    ELSE
        UPDATE procrastinate_jobs AS job
        SET status = 'cancelled'
        WHERE job.id = job_id AND job.status = 'todo'
        RETURNING job.id INTO touched;
    END IF;

    RETURN touched;
END;
$body$;

-- Puts a running job back to todo for another attempt (or fails it when an abort was
-- requested). Kept for clients older than retry_job_v2.
CREATE FUNCTION procrastinate_retry_job_v1(
    job_id bigint,
    retry_at timestamp with time zone,
    new_priority integer,
    new_queue_name character varying,
    new_lock character varying
)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    wants_abort boolean;
    touched bigint;
BEGIN
    SELECT job.abort_requested INTO wants_abort
    FROM procrastinate_jobs AS job
    WHERE job.id = job_id AND job.status = 'doing'
    FOR UPDATE;

    IF wants_abort THEN
        UPDATE procrastinate_jobs AS job
        SET status = 'failed'
        WHERE job.id = job_id AND job.status = 'doing'
        RETURNING job.id INTO touched;
    ELSE
        UPDATE procrastinate_jobs AS job
        SET status = 'todo',
            attempts = job.attempts + 1,
            scheduled_at = retry_at,
            priority = coalesce(new_priority, job.priority),
            queue_name = coalesce(new_queue_name, job.queue_name),
            lock = coalesce(new_lock, job.lock)
        WHERE job.id = job_id AND job.status = 'doing'
        RETURNING job.id INTO touched;
    END IF;

    IF touched IS NULL THEN
        RAISE 'Job was not found or not in "doing" status (job id: %)', job_id;
    END IF;
END;
$body$;

-- Like retry_job_v1, and also retries a failed job (manual retry).
CREATE FUNCTION procrastinate_retry_job_v2(
    job_id bigint,
    retry_at timestamp with time zone,
    new_priority integer,
    new_queue_name character varying,
    new_lock character varying
)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    found_status procrastinate_job_status;
    wants_abort boolean;
    touched bigint;
BEGIN
    SELECT job.status, job.abort_requested INTO found_status, wants_abort
    FROM procrastinate_jobs AS job
    WHERE job.id = job_id AND job.status IN ('doing', 'failed')
    FOR UPDATE;

    IF found_status = 'doing' AND wants_abort THEN
        UPDATE procrastinate_jobs AS job
        SET status = 'failed'
        WHERE job.id = job_id AND job.status = 'doing'
        RETURNING job.id INTO touched;
    ELSE
        UPDATE procrastinate_jobs AS job
        SET status = 'todo',
            attempts = job.attempts + 1,
            scheduled_at = retry_at,
            priority = coalesce(new_priority, job.priority),
            queue_name = coalesce(new_queue_name, job.queue_name),
            lock = coalesce(new_lock, job.lock)
        WHERE job.id = job_id AND job.status IN ('doing', 'failed')
        RETURNING job.id INTO touched;
    END IF;

    IF touched IS NULL THEN
        RAISE 'Job was not found or has an invalid status to retry (job id: %)', job_id;
    END IF;
END;
$body$;

-- Adds a worker; returns its id.
CREATE FUNCTION procrastinate_register_worker_v1()
RETURNS TABLE (worker_id bigint)
LANGUAGE plpgsql
AS $body$
BEGIN
    RETURN QUERY
        INSERT INTO procrastinate_workers DEFAULT VALUES
        RETURNING procrastinate_workers.id;
END;
$body$;

-- Removes a worker; its jobs lose their worker_id (ON DELETE SET NULL).
CREATE FUNCTION procrastinate_unregister_worker_v1(worker_id bigint)
RETURNS void
LANGUAGE plpgsql
AS $body$
BEGIN
    DELETE FROM procrastinate_workers AS worker WHERE worker.id = worker_id;
END;
$body$;

CREATE FUNCTION procrastinate_update_heartbeat_v1(worker_id bigint)
RETURNS void
LANGUAGE plpgsql
AS $body$
BEGIN
    UPDATE procrastinate_workers AS worker
    SET last_heartbeat = now()
    WHERE worker.id = worker_id;
END;
$body$;

-- Removes the workers silent for longer than the given number of seconds; returns their ids.
CREATE FUNCTION procrastinate_prune_stalled_workers_v1(seconds_since_heartbeat double precision)
RETURNS TABLE (worker_id bigint)
LANGUAGE plpgsql
AS $body$
BEGIN
    RETURN QUERY
        DELETE FROM procrastinate_workers AS worker
        WHERE worker.last_heartbeat < now() - make_interval(secs => seconds_since_heartbeat)
        RETURNING worker.id;
END;
$body$;

---------------------------------------------------------------------------------------
-- Trigger functions
---------------------------------------------------------------------------------------

-- NOTIFY payloads are built by json_build_object, whose text form clients already parse.
CREATE FUNCTION procrastinate_notify_queue_job_inserted_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    message text := json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text;
BEGIN
    PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, message);
    PERFORM pg_notify('procrastinate_any_queue_v1', message);
    RETURN NEW;
END;
$body$;

CREATE FUNCTION procrastinate_notify_queue_abort_job_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    message text := json_build_object('type', 'abort_job_requested', 'job_id', NEW.id)::text;
BEGIN
    PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, message);
    PERFORM pg_notify('procrastinate_any_queue_v1', message);
    RETURN NEW;
END;
$body$;

CREATE FUNCTION procrastinate_trigger_function_status_events_insert_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO procrastinate_events (job_id, type) VALUES (NEW.id, 'deferred');
    RETURN NEW;
END;
$body$;

-- Records the event that a status change stands for; changes with no event record nothing.
CREATE FUNCTION procrastinate_trigger_function_status_events_update_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    event procrastinate_job_event_type;
BEGIN
    event := CASE
        WHEN OLD.status = 'todo' AND NEW.status = 'doing' THEN 'started'
        WHEN OLD.status = 'todo' AND NEW.status IN ('cancelled', 'failed', 'succeeded')
            THEN 'cancelled'
        WHEN OLD.status = 'doing' AND NEW.status = 'todo' THEN 'deferred_for_retry'
        WHEN OLD.status = 'doing' AND NEW.status = 'failed' THEN 'failed'
        WHEN OLD.status = 'doing' AND NEW.status = 'succeeded' THEN 'succeeded'
        WHEN OLD.status = 'doing' AND NEW.status = 'aborted' THEN 'aborted'
        WHEN OLD.status = 'failed' AND NEW.status = 'todo' THEN 'retried'
    END::procrastinate_job_event_type;

    IF event IS NOT NULL THEN
        INSERT INTO procrastinate_events (job_id, type) VALUES (NEW.id, event);
    END IF;
    RETURN NEW;
END;
$body$;

CREATE FUNCTION procrastinate_trigger_function_scheduled_events_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO procrastinate_events (job_id, type, at)
    VALUES (NEW.id, 'scheduled', NEW.scheduled_at);
    RETURN NEW;
END;
$body$;

CREATE FUNCTION procrastinate_trigger_abort_requested_events_procedure_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    INSERT INTO procrastinate_events (job_id, type) VALUES (NEW.id, 'abort_requested');
    RETURN NEW;
END;
$body$;

-- A deleted job must not be referenced by its periodic tick.
CREATE FUNCTION procrastinate_unlink_periodic_defers_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    UPDATE procrastinate_periodic_defers AS tick SET job_id = NULL WHERE tick.job_id = OLD.id;
    RETURN OLD;
END;
$body$;

---------------------------------------------------------------------------------------
-- Triggers on procrastinate_jobs
---------------------------------------------------------------------------------------

CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW
    WHEN (new.status = 'todo')
    EXECUTE FUNCTION procrastinate_notify_queue_job_inserted_v1();

CREATE TRIGGER procrastinate_jobs_notify_queue_job_aborted_v1
    AFTER UPDATE OF abort_requested ON procrastinate_jobs
    FOR EACH ROW
    WHEN (old.abort_requested = false AND new.abort_requested = true AND new.status = 'doing')
    EXECUTE FUNCTION procrastinate_notify_queue_abort_job_v1();

CREATE TRIGGER procrastinate_trigger_status_events_update_v1
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    EXECUTE FUNCTION procrastinate_trigger_function_status_events_update_v1();

CREATE TRIGGER procrastinate_trigger_status_events_insert_v1
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW
    WHEN (new.status = 'todo')
    EXECUTE FUNCTION procrastinate_trigger_function_status_events_insert_v1();

CREATE TRIGGER procrastinate_trigger_scheduled_events_v1
    AFTER INSERT OR UPDATE ON procrastinate_jobs
    FOR EACH ROW
    WHEN (new.scheduled_at IS NOT NULL AND new.status = 'todo')
    EXECUTE FUNCTION procrastinate_trigger_function_scheduled_events_v1();

CREATE TRIGGER procrastinate_trigger_abort_requested_events_v1
    AFTER UPDATE OF abort_requested ON procrastinate_jobs
    FOR EACH ROW
    WHEN (new.abort_requested = true)
    EXECUTE FUNCTION procrastinate_trigger_abort_requested_events_procedure_v1();

CREATE TRIGGER procrastinate_trigger_delete_jobs_v1
    BEFORE DELETE ON procrastinate_jobs
    FOR EACH ROW
    EXECUTE FUNCTION procrastinate_unlink_periodic_defers_v1();
