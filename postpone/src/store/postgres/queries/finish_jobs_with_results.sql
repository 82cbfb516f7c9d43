-- finish_jobs_with_results: finish_jobs.sql (the jobs $1-$3, their errors $4-$8, the
-- waiters' notifications), plus the results of the attempts that succeeded ($9 job ids,
-- $10 attempt numbers, $11 workers, $12 JSON texts; never for a deleted job) into
-- postpone_job_results (migration 0007), for the jobs written. The completer sends it
-- only for a batch with a result to keep, so a batch without one runs finish_jobs.sql.
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
        ON CONFLICT (job_id) DO NOTHING
)
SELECT id FROM finished
