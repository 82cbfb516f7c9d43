-- finish_jobs: procrastinate_finish_job_v1 for many jobs in one call, through
-- postpone_finish_jobs_v1 (schema migration 0003). Each job ($1 ids, $2 end statuses
-- succeeded/failed/aborted, $3 delete flags) still in todo or doing is either deleted or
-- set to its end status with abort_requested cleared and attempts + 1 when it was doing.
-- In the same statement, for the jobs written (never for a deleted one):
-- * the errors of the attempts that did not succeed ($4 job ids, $5 attempt numbers,
--   $6 workers, $7 kinds, $8 messages) go to postpone_job_errors (migration 0005);
-- * the results of the attempts that succeeded ($9 job ids, $10 attempt numbers,
--   $11 workers, $12 JSON texts) go to postpone_job_results (migration 0007), except a
--   deleted job's (sent for its workflow node's copy only);
-- * the jobs someone waits for (postpone_job_waiters) lose their waiter row, and each
--   sends `{"type": "job_finished", "job_id": N, "status": S}` on
--   postpone_job_finished_v1. A deleted job's waiter row goes with it (its waiters find
--   it gone when they next look).
-- * the jobs that are workflow nodes (postpone_workflow_nodes, migration 0009) get their
--   node's end recorded, with a copy of their result, before a delete can lose it; each
--   row says which workflows had a node end, and which nodes (the same arrays on every
--   row; NULL when none), so the store advances them (advance_workflows) and looks only
--   at those nodes' children. When no
--   workflow is used this is one probe of an empty index per job.
-- Returns the ids written; a job in any other status is left alone (and missing from the
-- result). A batch without errors, results or waiters sends empty arrays.
WITH finished AS (
    SELECT id
      FROM postpone_finish_jobs_v1($1::bigint[], $2::text[]::procrastinate_job_status[], $3::bool[]) AS id
), errors AS (
    INSERT INTO postpone_job_errors (job_id, attempt, worker_id, kind, message)
    SELECT error.job_id, error.attempt, error.worker_id, error.kind, error.message
      FROM unnest($4::bigint[], $5::int4[], $6::bigint[], $7::text[], $8::text[])
           AS error (job_id, attempt, worker_id, kind, message)
     WHERE error.job_id IN (SELECT id FROM finished)
), results AS (
    INSERT INTO postpone_job_results (job_id, attempt, worker_id, result)
    SELECT result.job_id, result.attempt, result.worker_id, result.json::json
      FROM unnest($9::bigint[], $10::int4[], $11::bigint[], $12::text[])
           AS result (job_id, attempt, worker_id, json)
     WHERE result.job_id IN (SELECT id FROM finished)
       AND result.job_id IN (SELECT job.id FROM unnest($1::bigint[], $3::bool[]) AS job (id, delete_job)
                              WHERE NOT job.delete_job)
        ON CONFLICT (job_id) DO NOTHING
), woken AS (
    DELETE FROM postpone_job_waiters AS waiter
     USING unnest($1::bigint[], $2::text[], $3::bool[]) AS job (id, status, delete_job)
     WHERE waiter.job_id = job.id
       AND NOT job.delete_job
       AND job.id IN (SELECT id FROM finished)
    RETURNING pg_notify(
        'postpone_job_finished_v1',
        json_build_object('type', 'job_finished', 'job_id', job.id, 'status', job.status)::text
    )
), nodes AS (
    UPDATE postpone_workflow_nodes AS node
       SET status = job.status,
           ended_at = now(),
           result = (SELECT result.json::json
                       FROM unnest($9::bigint[], $12::text[]) AS result (job_id, json)
                      WHERE result.job_id = node.job_id
                      LIMIT 1)
      FROM unnest($1::bigint[], $2::text[]) AS job (id, status)
     WHERE node.job_id = job.id
       AND node.status = 'released'
       AND job.id IN (SELECT id FROM finished)
    RETURNING node.workflow_id, node.name
)
SELECT id,
       (SELECT array_agg(DISTINCT workflow_id) FROM nodes) AS workflows,
       (SELECT array_agg(name) FROM nodes) AS ended_nodes
  FROM finished
