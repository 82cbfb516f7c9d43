-- Postpone's batch writes: the worker's finish and retry for many jobs in one call, with
-- plans that do not depend on statistics (ADR 8), and the batch defer, claim and finish
-- writing the contract's event rows and job_inserted notifications set-wise (ADR 4).
--
-- Plans. As plain statements joined to their input arrays, the finish and retry were
-- planned by statistics, and on a backlog the planner had never analysed (a W3 drain:
-- 20,000 jobs deferred, then drained within seconds) they scanned the whole table for each
-- batch and rescanned the input for every row: 10 ms per 100 finished jobs, against 2.5 ms
-- here, nearly all of it the status events (measured, docs/performance.md). Here each job
-- row is found through an index by `id = ANY(ids)` (sequential and bitmap scans are off
-- inside the functions), and its own values are looked up by position in the arrays
-- instead of by a join. Ids must be distinct within a call (the worker writes each
-- outcome once).
--
-- Set-wise events. The batch defer, claim and finish write the events and notifications
-- for a whole batch in one statement each, instead of one trigger call (and one INSERT or
-- two pg_notify calls) per row. Same rows, same payloads, same per-job order: a Python
-- client sees no difference. The protocol, which keeps exactly one set of events per job
-- whoever installed the trigger functions:
--
-- 1. Our functions (postpone_defer_jobs_v1, postpone_fetch_jobs_v1, the doing-job part of
--    postpone_finish_jobs_v1) turn the transaction-local setting postpone.bulk_events on
--    around their one INSERT or UPDATE, and off right after it.
-- 2. The trigger functions below, the ones a database created by Postpone has, do their
--    usual work unless that setting is on; then they skip it and record that they did
--    (postpone.skipped_<kind> = on, once per statement).
-- 3. Our function then writes, set-wise, the events and notifications of exactly the
--    kinds whose trigger recorded a skip, and clears those records.
--
-- A trigger function installed by Procrastinate (a database Postpone adopted, or one whose
-- functions a later Procrastinate migration replaced) ignores the setting, does its work
-- and records nothing, so our function adds nothing: no version check is needed on any
-- call. The settings are transaction-local and reset before our functions return, so they
-- never reach a caller's own statements in the same transaction.
--
-- Which trigger can fire while the setting is on: on the defer's INSERT, the job_inserted
-- NOTIFY, the 'deferred' event and (scheduled jobs) the 'scheduled' event; on the claim's
-- and the finish's UPDATE, the status event only (the scheduled-event trigger needs a todo
-- row, the abort triggers abort_requested turning true).

-- The trigger functions (step 2 above), only where Postpone created the contract (not adopted): an
-- adopted database keeps Procrastinate's own, and the set-wise paths then leave all the
-- work to them.
DO $migration$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM postpone_migrations
                    WHERE version = '0001' AND phase = 'pre' AND NOT adopted) THEN
        RETURN;
    END IF;

    EXECUTE $sql$
CREATE OR REPLACE FUNCTION procrastinate_notify_queue_job_inserted_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    message text;
BEGIN
    -- Postpone's set-wise defer notifies for its rows itself (migration 0003).
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        IF current_setting('postpone.skipped_job_inserted', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('postpone.skipped_job_inserted', 'on', true);
        END IF;
        RETURN NEW;
    END IF;
    message := json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text;
    PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, message);
    PERFORM pg_notify('procrastinate_any_queue_v1', message);
    RETURN NEW;
END;
$body$
$sql$;

    EXECUTE $sql$
CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_insert_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    -- Postpone's set-wise defer writes its rows' events itself (migration 0003).
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        IF current_setting('postpone.skipped_status_insert', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('postpone.skipped_status_insert', 'on', true);
        END IF;
        RETURN NEW;
    END IF;
    INSERT INTO procrastinate_events (job_id, type) VALUES (NEW.id, 'deferred');
    RETURN NEW;
END;
$body$
$sql$;

    EXECUTE $sql$
CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_update_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    event procrastinate_job_event_type;
BEGIN
    -- Postpone's set-wise claim and finish write their rows' events themselves (0003).
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        IF current_setting('postpone.skipped_status_update', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('postpone.skipped_status_update', 'on', true);
        END IF;
        RETURN NEW;
    END IF;
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
$body$
$sql$;

    EXECUTE $sql$
CREATE OR REPLACE FUNCTION procrastinate_trigger_function_scheduled_events_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    -- Postpone's set-wise defer writes its rows' events itself (migration 0003).
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        IF current_setting('postpone.skipped_scheduled', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('postpone.skipped_scheduled', 'on', true);
        END IF;
        RETURN NEW;
    END IF;
    INSERT INTO procrastinate_events (job_id, type, at)
    VALUES (NEW.id, 'scheduled', NEW.scheduled_at);
    RETURN NEW;
END;
$body$
$sql$;
END;
$migration$;

-- Inserts a batch of jobs (the rows procrastinate_defer_jobs_v1 inserts), all or nothing,
-- and returns their ids in input order. Per job, as the triggers would: NOTIFY
-- job_inserted on the queue's channel, then on procrastinate_any_queue_v1; a 'scheduled'
-- event (at its scheduled_at) when it has one, then its 'deferred' event. args is JSON
-- text, so every driver binds it the same way.
CREATE FUNCTION postpone_defer_jobs_v1(
    p_queue_names character varying[],
    p_task_names character varying[],
    p_priorities integer[],
    p_locks text[],
    p_queueing_locks text[],
    p_args text[],
    p_scheduled_ats timestamp with time zone[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    ids bigint[];
    queues character varying[];
    scheduled timestamp with time zone[];
    skipped_scheduled boolean;
    skipped_deferred boolean;
BEGIN
    PERFORM set_config('postpone.bulk_events', 'on', true);
    WITH inserted AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
        SELECT t.queue_name, t.task_name, t.priority, t.lock, t.queueing_lock, t.args::jsonb, t.scheduled_at
          FROM unnest(p_queue_names, p_task_names, p_priorities, p_locks, p_queueing_locks, p_args, p_scheduled_ats)
               WITH ORDINALITY AS t(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n)
         ORDER BY t.n
        RETURNING id, queue_name, scheduled_at
    )
    SELECT array_agg(inserted.id ORDER BY inserted.id),
           array_agg(inserted.queue_name ORDER BY inserted.id),
           array_agg(inserted.scheduled_at ORDER BY inserted.id)
      INTO ids, queues, scheduled
      FROM inserted;
    PERFORM set_config('postpone.bulk_events', 'off', true);

    IF current_setting('postpone.skipped_job_inserted', true) = 'on' THEN
        PERFORM set_config('postpone.skipped_job_inserted', 'off', true);
        PERFORM pg_notify(channel.name, json_build_object('type', 'job_inserted', 'job_id', job.id)::text)
           FROM unnest(ids, queues) AS job(id, queue_name)
          CROSS JOIN LATERAL (VALUES ('procrastinate_queue_v1#' || job.queue_name, 1),
                                     ('procrastinate_any_queue_v1', 2)) AS channel(name, k)
          ORDER BY job.id, channel.k;
    END IF;

    skipped_scheduled := current_setting('postpone.skipped_scheduled', true) = 'on';
    skipped_deferred := current_setting('postpone.skipped_status_insert', true) = 'on';
    IF skipped_scheduled OR skipped_deferred THEN
        PERFORM set_config('postpone.skipped_scheduled', 'off', true);
        PERFORM set_config('postpone.skipped_status_insert', 'off', true);
        INSERT INTO procrastinate_events (job_id, type, at)
        SELECT event.job_id, event.type, event.at
          FROM (SELECT job.id AS job_id, 'scheduled'::procrastinate_job_event_type AS type,
                       job.scheduled_at AS at, 1 AS k
                  FROM unnest(ids, scheduled) AS job(id, scheduled_at)
                 WHERE skipped_scheduled AND job.scheduled_at IS NOT NULL
                UNION ALL
                SELECT job.id, 'deferred'::procrastinate_job_event_type, now(), 2
                  FROM unnest(ids) AS job(id)
                 WHERE skipped_deferred) AS event
         ORDER BY event.job_id, event.k;
    END IF;

    -- Ids come from the sequence in insertion (input) order: ascending is input order.
    RETURN QUERY SELECT unnest(ids);
END;
$$;

-- postpone_fetch_jobs_v1 (migration 0002) with the claimed jobs' 'started' events written
-- set-wise. Same choice rules, same settings.
CREATE OR REPLACE FUNCTION postpone_fetch_jobs_v1(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET enable_sort = off
    SET jit = off
AS $$
DECLARE
    claimed procrastinate_jobs[];
BEGIN
    PERFORM set_config('postpone.bulk_events', 'on', true);
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
    ),
    updated AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'doing', worker_id = p_worker_id
          FROM candidate
         WHERE job.id = candidate.id
        RETURNING job
    )
    SELECT array_agg(updated.job ORDER BY (updated.job).id) INTO claimed FROM updated;
    PERFORM set_config('postpone.bulk_events', 'off', true);

    IF current_setting('postpone.skipped_status_update', true) = 'on' THEN
        PERFORM set_config('postpone.skipped_status_update', 'off', true);
        INSERT INTO procrastinate_events (job_id, type)
        SELECT job.id, 'started' FROM unnest(claimed) AS job ORDER BY job.id;
    END IF;
    RETURN QUERY SELECT * FROM unnest(claimed);
END;
$$;

-- procrastinate_finish_job_v1 for many jobs (p_ids, distinct). Each job still in todo or
-- doing is deleted when its p_delete flag is set, else set to its end status (p_statuses:
-- succeeded, failed or aborted) with abort_requested cleared and attempts + 1 when it was
-- doing. Returns the ids written; a job in any other status is left alone and missing
-- from the result. The events of jobs that were doing (the worker's case) are written
-- set-wise: doing -> succeeded, failed or aborted records the event of that name, as the
-- status trigger does. A job finished while still todo goes through a second, plain
-- UPDATE whose trigger writes its event ('cancelled', or none).
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
DECLARE
    done_ids bigint[];
    done_statuses procrastinate_job_status[];
BEGIN
    IF true = ANY(p_delete) THEN
        RETURN QUERY
        DELETE FROM procrastinate_jobs AS job
         WHERE job.id = ANY(p_ids)
           AND p_delete[array_position(p_ids, job.id)]
           AND job.status IN ('todo', 'doing')
        RETURNING job.id;
    END IF;

    PERFORM set_config('postpone.bulk_events', 'on', true);
    WITH updated AS (
        UPDATE procrastinate_jobs AS job
           SET status = p_statuses[array_position(p_ids, job.id)],
               abort_requested = false,
               attempts = job.attempts + 1
         WHERE job.id = ANY(p_ids)
           AND NOT p_delete[array_position(p_ids, job.id)]
           AND job.status = 'doing'
        RETURNING job.id, job.status
    )
    SELECT array_agg(updated.id ORDER BY updated.id), array_agg(updated.status ORDER BY updated.id)
      INTO done_ids, done_statuses
      FROM updated;
    PERFORM set_config('postpone.bulk_events', 'off', true);

    IF current_setting('postpone.skipped_status_update', true) = 'on' THEN
        PERFORM set_config('postpone.skipped_status_update', 'off', true);
        INSERT INTO procrastinate_events (job_id, type)
        SELECT job.id, job.status::text::procrastinate_job_event_type
          FROM unnest(done_ids, done_statuses) AS job(id, status)
         WHERE job.status IN ('succeeded', 'failed', 'aborted')
         ORDER BY job.id;
    END IF;
    RETURN QUERY SELECT unnest(done_ids);

    IF coalesce(cardinality(done_ids), 0) < cardinality(p_ids) THEN
        RETURN QUERY
        UPDATE procrastinate_jobs AS job
           SET status = p_statuses[array_position(p_ids, job.id)],
               abort_requested = false
         WHERE job.id = ANY(p_ids)
           AND NOT p_delete[array_position(p_ids, job.id)]
           AND job.status = 'todo'
        RETURNING job.id;
    END IF;
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
