-- finish_jobs: procrastinate_finish_job_v1 for many jobs in one call, through
-- postpone_finish_jobs_v1 (schema migration 0003). Each job ($1 ids, $2 end statuses
-- succeeded/failed/aborted, $3 delete flags) still in todo or doing is either deleted or
-- set to its end status with abort_requested cleared and attempts + 1 when it was doing.
-- Returns the ids written; a job in any other status is left alone (and missing from the
-- result).
SELECT id
  FROM postpone_finish_jobs_v1($1::bigint[], $2::text[]::procrastinate_job_status[], $3::bool[]) AS id
