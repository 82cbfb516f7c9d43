-- Postpone's bulk paths: defer, claim and finish many jobs per statement, with the
-- contract's event rows and NOTIFYs written set-wise instead of by one trigger call per row.
--
-- How: the four trigger functions below keep their exact behaviour, except that they do
-- nothing while the transaction-local setting `postpone.bulk_events` is 'on'. Our bulk
-- functions turn it on only when postpone_bulk_events_v1() confirms that the installed
-- trigger functions are these (marker `postpone:bulk-aware-v1`), write the same events and
-- notifications themselves, and turn it off again before returning. If Procrastinate
-- (Python) later replaces the trigger functions with its own, the check fails and the bulk
-- functions leave the work to the triggers: every job still gets exactly one set of events.
-- Python clients see no difference: same rows, same events, same payloads.

CREATE OR REPLACE FUNCTION procrastinate_notify_queue_job_inserted_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    message text;
BEGIN
    -- postpone:bulk-aware-v1: a Postpone bulk statement notifies for its rows itself.
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        RETURN NEW;
    END IF;
    message := json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text;
    PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, message);
    PERFORM pg_notify('procrastinate_any_queue_v1', message);
    RETURN NEW;
END;
$body$;

CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_insert_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    -- postpone:bulk-aware-v1: a Postpone bulk statement writes its rows' events itself.
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        RETURN NEW;
    END IF;
    INSERT INTO procrastinate_events (job_id, type) VALUES (NEW.id, 'deferred');
    RETURN NEW;
END;
$body$;

CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_update_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    event procrastinate_job_event_type;
BEGIN
    -- postpone:bulk-aware-v1: a Postpone bulk statement writes its rows' events itself.
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
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
$body$;

CREATE OR REPLACE FUNCTION procrastinate_trigger_function_scheduled_events_v1()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    -- postpone:bulk-aware-v1: a Postpone bulk statement writes its rows' events itself.
    IF current_setting('postpone.bulk_events', true) = 'on' THEN
        RETURN NEW;
    END IF;
    INSERT INTO procrastinate_events (job_id, type, at)
    VALUES (NEW.id, 'scheduled', NEW.scheduled_at);
    RETURN NEW;
END;
$body$;

-- True when the installed trigger functions are the bulk-aware ones above.
CREATE FUNCTION postpone_bulk_events_v1()
RETURNS boolean
LANGUAGE sql
STABLE
AS $body$
    SELECT count(*) = 4
      FROM pg_catalog.pg_proc AS proc
     WHERE proc.pronamespace = current_schema()::regnamespace
       AND proc.proname IN (
               'procrastinate_notify_queue_job_inserted_v1',
               'procrastinate_trigger_function_status_events_insert_v1',
               'procrastinate_trigger_function_status_events_update_v1',
               'procrastinate_trigger_function_scheduled_events_v1')
       AND proc.prosrc LIKE '%postpone:bulk-aware-v1%'
$body$;

-- Inserts jobs (the rows procrastinate_defer_jobs_v1 inserts), all or nothing; returns
-- their ids in input order. Per job, as the triggers would: NOTIFY job_inserted on the
-- queue's channel then on procrastinate_any_queue_v1, a 'scheduled' event (at its
-- scheduled_at) when it has one, then its 'deferred' event.
CREATE FUNCTION postpone_defer_jobs_v1(
    queue_names character varying[],
    task_names character varying[],
    priorities integer[],
    locks text[],
    queueing_locks text[],
    args text[],
    scheduled_ats timestamp with time zone[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $body$
DECLARE
    bulk boolean := postpone_bulk_events_v1();
    ids bigint[];
BEGIN
    IF bulk THEN
        PERFORM set_config('postpone.bulk_events', 'on', true);
    END IF;

    WITH inserted AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
        SELECT t.queue_name, t.task_name, t.priority, t.lock, t.queueing_lock, t.args::jsonb, t.scheduled_at
          FROM unnest(queue_names, task_names, priorities, locks, queueing_locks, args, scheduled_ats)
               WITH ORDINALITY AS t(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n)
         ORDER BY t.n
        RETURNING id, scheduled_at
    ),
    events AS (
        INSERT INTO procrastinate_events (job_id, type, at)
        SELECT e.job_id, e.type, e.at
          FROM (SELECT id AS job_id, 'scheduled'::procrastinate_job_event_type AS type,
                       scheduled_at AS at, 1 AS k
                  FROM inserted
                 WHERE bulk AND scheduled_at IS NOT NULL
                UNION ALL
                SELECT id, 'deferred'::procrastinate_job_event_type, now(), 2
                  FROM inserted
                 WHERE bulk) AS e
         ORDER BY e.job_id, e.k
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM inserted;

    IF bulk THEN
        PERFORM pg_notify(channel.name, json_build_object('type', 'job_inserted', 'job_id', job.id)::text)
           FROM procrastinate_jobs AS job
          CROSS JOIN LATERAL (VALUES ('procrastinate_queue_v1#' || job.queue_name, 1),
                                     ('procrastinate_any_queue_v1', 2)) AS channel(name, k)
          WHERE job.id = ANY(ids)
          ORDER BY job.id, channel.k;
        PERFORM set_config('postpone.bulk_events', 'off', true);
    END IF;
    RETURN QUERY SELECT unnest(ids);
END;
$body$;

-- Claims up to p_limit jobs for a worker in one call, with procrastinate_fetch_job_v2's
-- choice rules (which claims one): todo jobs of the given queues (all when NULL), not
-- scheduled in the future, by priority DESC then id ASC, skipping rows other workers are
-- claiming; a job with a lock is eligible only if no job with that lock is doing and no
-- todo job with that lock comes before it. So a batch holds at most one job per lock, and
-- same-lock jobs run in priority/id order. Each claimed job gets its 'started' event.
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
AS $body$
DECLARE
    bulk boolean := postpone_bulk_events_v1();
BEGIN
    IF bulk THEN
        PERFORM set_config('postpone.bulk_events', 'on', true);
    END IF;
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
    ),
    claimed AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'doing', worker_id = p_worker_id
          FROM candidate
         WHERE job.id = candidate.id
        RETURNING job.*
    ),
    events AS (
        INSERT INTO procrastinate_events (job_id, type)
        SELECT claimed.id, 'started' FROM claimed WHERE bulk ORDER BY claimed.id
    )
    SELECT * FROM claimed;
    IF bulk THEN
        PERFORM set_config('postpone.bulk_events', 'off', true);
    END IF;
END;
$body$;

-- procrastinate_finish_job_v1 for many jobs: each job (ids, end statuses succeeded /
-- failed / aborted, delete flags) still todo or doing is deleted, or set to its end status
-- with abort_requested cleared and attempts + 1 if it was doing, with the event the status
-- trigger would write. Returns the ids written; jobs in other statuses are left alone.
CREATE FUNCTION postpone_finish_jobs_v1(
    job_ids bigint[],
    end_statuses text[],
    delete_jobs boolean[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $body$
DECLARE
    bulk boolean := postpone_bulk_events_v1();
BEGIN
    IF bulk THEN
        PERFORM set_config('postpone.bulk_events', 'on', true);
    END IF;
    RETURN QUERY
    WITH input AS (
        SELECT t.id, t.status::procrastinate_job_status AS status, t.delete_job
          FROM unnest(job_ids, end_statuses, delete_jobs) AS t(id, status, delete_job)
    ),
    target AS (
        SELECT job.id, job.status AS old_status, input.status AS new_status, input.delete_job
          FROM procrastinate_jobs AS job
          JOIN input ON input.id = job.id
         WHERE job.status IN ('todo', 'doing')
           FOR UPDATE OF job
    ),
    deleted AS (
        DELETE FROM procrastinate_jobs AS job
         USING target
         WHERE job.id = target.id AND target.delete_job
        RETURNING job.id
    ),
    updated AS (
        UPDATE procrastinate_jobs AS job
           SET status = target.new_status,
               abort_requested = false,
               attempts = CASE WHEN target.old_status = 'doing' THEN job.attempts + 1 ELSE job.attempts END
          FROM target
         WHERE job.id = target.id AND NOT target.delete_job
        RETURNING job.id, target.old_status, target.new_status
    ),
    events AS (
        INSERT INTO procrastinate_events (job_id, type)
        SELECT e.id, e.type
          FROM (SELECT updated.id,
                       CASE
                           WHEN updated.old_status = 'doing'
                               THEN updated.new_status::text::procrastinate_job_event_type
                           WHEN updated.new_status IN ('failed', 'succeeded')
                               THEN 'cancelled'::procrastinate_job_event_type
                       END AS type
                  FROM updated
                 WHERE bulk) AS e
         WHERE e.type IS NOT NULL
         ORDER BY e.id
    )
    SELECT deleted.id FROM deleted
    UNION ALL
    SELECT updated.id FROM updated;
    IF bulk THEN
        PERFORM set_config('postpone.bulk_events', 'off', true);
    END IF;
END;
$body$;
