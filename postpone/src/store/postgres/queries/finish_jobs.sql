-- finish_jobs: procrastinate_finish_job_v1 for many jobs in one statement, through
-- postpone_finish_jobs_v1 (schema migration 0002). $1 ids, $2 end statuses (succeeded,
-- failed, aborted), $3 delete flags. Returns the ids written; a job no longer todo or
-- doing is left alone (and missing from the result).
SELECT id FROM postpone_finish_jobs_v1($1::bigint[], $2::text[], $3::bool[]) AS id
