-- finish_jobs: procrastinate_finish_job_v1 for many jobs in one call, through
-- postpone_finish_jobs_v1 (schema migration 0003). Each job ($1 ids, $2 end statuses
-- succeeded/failed/aborted, $3 delete flags) still in todo or doing is either deleted or
-- set to its end status with abort_requested cleared and attempts + 1 when it was doing.
-- In the same statement, the errors of the attempts that did not succeed ($4 job ids,
-- $5 attempt numbers, $6 workers, $7 kinds, $8 messages; never for a deleted job) go to
-- postpone_job_errors, for the jobs written. Returns the ids written; a job in any other
-- status is left alone (and missing from the result).
--
-- One text, four statements (queries::finish_jobs cuts them): the lines of the results
-- section, marked [results] ... [/results], are sent only for a batch with a result to
-- keep; those of the nodes section only when a workflow node may be running, those of
-- the !nodes section only when not. A batch without workflows names no workflow table:
-- each relation a statement names is a lock its every run takes, and past PostgreSQL's
-- 16 fast-path slots a lock goes through the shared lock table.
--
-- First, the jobs someone waits for (postpone_job_waiters, migration 0007) lose their
-- waiter row and each sends `{"type": "job_finished", "job_id": N}` on
-- postpone_job_finished_v1 (delivered at commit; a waiter reads the job then). It runs
-- before the finish (the finish waits on its count) so that a job the finish deletes
-- has no waiter row left for the cascade. With no waiter, one probe of an empty table.
WITH woken AS (
    DELETE FROM postpone_job_waiters
     WHERE job_id = ANY($1::bigint[])
    RETURNING pg_notify('postpone_job_finished_v1',
                        json_build_object('type', 'job_finished', 'job_id', job_id)::text)
), finished AS (
    SELECT id
      FROM postpone_finish_jobs_v1($1::bigint[], $2::text[]::procrastinate_job_status[], $3::bool[]) AS id
     WHERE (SELECT count(*) FROM woken) >= 0
), errors AS (
    INSERT INTO postpone_job_errors (job_id, attempt, worker_id, kind, message)
    SELECT error.job_id, error.attempt, error.worker_id, error.kind, error.message
      FROM unnest($4::bigint[], $5::int4[], $6::bigint[], $7::text[], $8::text[])
           AS error (job_id, attempt, worker_id, kind, message)
     WHERE error.job_id IN (SELECT id FROM finished)
-- [results]
-- The results of the attempts that succeeded ($9 job ids, $10 attempt numbers,
-- $11 workers, $12 JSON texts) go to postpone_job_results (migration 0007), for the jobs
-- written and kept. A job the delete policy removes keeps no result row, but its result
-- is sent too, for its workflow node's copy (below).
), results AS (
    INSERT INTO postpone_job_results (job_id, attempt, worker_id, result)
    SELECT result.job_id, result.attempt, result.worker_id, result.json::json
      FROM unnest($9::bigint[], $10::int4[], $11::bigint[], $12::text[])
           AS result (job_id, attempt, worker_id, json)
     WHERE result.job_id IN (SELECT id FROM finished)
       AND result.job_id IN (SELECT job.id FROM unnest($1::bigint[], $3::bool[]) AS job (id, delete_job)
                              WHERE NOT job.delete_job)
        ON CONFLICT (job_id) DO NOTHING
-- [/results]
-- [nodes]
-- Last, the jobs that are workflow nodes (postpone_workflow_nodes, migration 0009) get
-- their node's end recorded (with a copy of its result), before a delete can lose it;
-- each row says which workflows had a node end, and which nodes (the same arrays on
-- every row; NULL when none), so the store advances those workflows
-- (advance_workflows), looking only at those nodes' children.
), nodes AS (
    UPDATE postpone_workflow_nodes AS node
       SET status = job.status,
-- [results]
           result = (SELECT result.json::json
                       FROM unnest($9::bigint[], $12::text[]) AS result (job_id, json)
                      WHERE result.job_id = node.job_id
                      LIMIT 1),
-- [/results]
           ended_at = now()
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
-- [/nodes]
-- [!nodes]
)
SELECT id, NULL::bigint[] AS workflows, NULL::text[] AS ended_nodes
  FROM finished
-- [/!nodes]
