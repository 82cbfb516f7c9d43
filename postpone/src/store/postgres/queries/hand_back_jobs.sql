-- hand_back_jobs: jobs worker $1 claimed ($2) but did not start go back to todo, as if
-- never fetched: worker_id NULL, attempts, scheduled_at, priority, queue and lock
-- unchanged. Postpone's own (a Procrastinate worker never claims more than it runs), used
-- by a worker's local queue on stop. The status trigger records doing -> todo as
-- 'deferred_for_retry' (and the scheduled trigger a 'scheduled' event when scheduled_at
-- is set), as for procrastinate_retry_job_v2.
--
-- Only doing jobs still held by the worker (or orphaned by its pruning: worker_id NULL)
-- are touched; a NULL $1 (the rescue) takes the jobs of any worker. A job whose abort was requested is left doing (the worker ends it
-- aborted), and so is one whose queueing lock a todo job holds now (two todo jobs cannot
-- share it: procrastinate_jobs_queueing_lock_idx_v1; the worker runs it instead).
-- Returns one row per job held, by id, with what happened to it: todo, abort_requested or
-- queueing_lock_taken.
WITH held AS (
    SELECT job.id, job.abort_requested, job.queueing_lock
      FROM procrastinate_jobs AS job
     WHERE job.id = ANY($2::bigint[])
       AND job.status = 'doing'
       AND ($1::bigint IS NULL OR job.worker_id = $1::bigint OR job.worker_id IS NULL)
       FOR UPDATE OF job
),
-- Two doing jobs may share a queueing lock: only the first (by id) may go back.
checked AS (
    SELECT held.id,
           held.abort_requested,
           held.queueing_lock IS NOT NULL AND (
               EXISTS (
                   SELECT 1
                     FROM procrastinate_jobs AS other
                    WHERE other.queueing_lock = held.queueing_lock
                      AND other.status = 'todo'
               )
               OR row_number() OVER (PARTITION BY held.queueing_lock, held.abort_requested
                                         ORDER BY held.id) > 1
           ) AS queueing_lock_taken
      FROM held
),
handed AS (
    UPDATE procrastinate_jobs AS job
       SET status = 'todo', worker_id = NULL
      FROM checked
     WHERE job.id = ANY($2::bigint[])
       AND job.id = checked.id AND NOT checked.abort_requested AND NOT checked.queueing_lock_taken
    RETURNING job.id, job.queue_name
),
-- Idle workers learn at once that jobs are there again: one job_inserted notification
-- per queue, on the channels and with the payload of procrastinate_notify_queue_job_inserted_v1.
woken AS (
    SELECT pg_notify(channel.name, json_build_object('type', 'job_inserted', 'job_id', first.id)::text)
      FROM (SELECT handed.queue_name, min(handed.id) AS id FROM handed GROUP BY handed.queue_name) AS first
     CROSS JOIN LATERAL (VALUES ('procrastinate_queue_v1#' || first.queue_name),
                                ('procrastinate_any_queue_v1')) AS channel(name)
)
SELECT checked.id,
       CASE WHEN handed.id IS NOT NULL THEN 'todo'
            WHEN checked.abort_requested THEN 'abort_requested'
            ELSE 'queueing_lock_taken'
       END AS outcome
  FROM checked
  LEFT JOIN handed ON handed.id = checked.id
 CROSS JOIN (SELECT count(*) FROM woken) AS notified
 ORDER BY checked.id
