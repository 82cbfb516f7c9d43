-- finish_jobs_with_results: finish_jobs.sql (the jobs $1-$3, their errors $4-$8, the
-- waiters' notifications), plus the results of the attempts that succeeded ($9 job ids,
-- $10 attempt numbers, $11 workers, $12 JSON texts; never for a deleted job) into
-- postpone_job_results (migration 0007), for the jobs written. The completer sends it
-- only for a batch with a result to keep, so a batch without one runs finish_jobs.sql.
-- A job the delete policy removes keeps no result row, but its result is sent too, for
-- its workflow node's copy (below).
-- Last, the jobs that are workflow nodes (postpone_workflow_nodes, migration 0009) get
-- their node's end recorded, with a copy of its result, before a delete can lose it; each row says which workflows
-- had a node end, and which nodes (the same arrays on every row; NULL when none), so the
-- store advances those workflows (advance_workflows), looking only at those nodes'
-- children. With no workflow, one probe of an empty index per job.
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
), results AS (
    INSERT INTO postpone_job_results (job_id, attempt, worker_id, result)
    SELECT result.job_id, result.attempt, result.worker_id, result.json::json
      FROM unnest($9::bigint[], $10::int4[], $11::bigint[], $12::text[])
           AS result (job_id, attempt, worker_id, json)
     WHERE result.job_id IN (SELECT id FROM finished)
       AND result.job_id IN (SELECT job.id FROM unnest($1::bigint[], $3::bool[]) AS job (id, delete_job)
                              WHERE NOT job.delete_job)
        ON CONFLICT (job_id) DO NOTHING
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
