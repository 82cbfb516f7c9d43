-- finish_jobs: procrastinate_finish_job_v1 for many jobs in one statement.
-- Each job ($1 ids, $2 end statuses succeeded/failed/aborted, $3 delete flags) still in
-- todo or doing is either deleted or set to its end status with abort_requested cleared
-- and attempts + 1 when it was doing. Returns the ids written; a job in any other
-- status is left alone (and missing from the result). `job.id = ANY($1)` gives the planner
-- the primary key to start from: joined to `input` alone, it walked every todo/doing row.
WITH input AS (
    SELECT t.id, t.status::procrastinate_job_status AS status, t.delete_job
      FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS t(id, status, delete_job)
),
deleted AS (
    DELETE FROM procrastinate_jobs AS job
     USING input
     WHERE job.id = ANY($1::bigint[])
       AND job.id = input.id AND input.delete_job AND job.status IN ('todo', 'doing')
    RETURNING job.id
),
updated AS (
    UPDATE procrastinate_jobs AS job
       SET status = input.status,
           abort_requested = false,
           attempts = CASE WHEN job.status = 'doing' THEN job.attempts + 1 ELSE job.attempts END
      FROM input
     WHERE job.id = ANY($1::bigint[])
       AND job.id = input.id AND NOT input.delete_job AND job.status IN ('todo', 'doing')
    RETURNING job.id
)
SELECT id FROM deleted
UNION ALL
SELECT id FROM updated
