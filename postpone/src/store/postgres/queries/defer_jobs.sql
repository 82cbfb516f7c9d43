-- defer_jobs: insert a batch of jobs in one call, all or nothing, through
-- postpone_defer_jobs_v1 (schema migration 0004): the rows procrastinate_defer_jobs_v1
-- inserts, with their 'deferred' (and 'scheduled') events and job_inserted notifications
-- (sent on commit) written set-wise. Ids in input order. $6 carries each job's args as
-- JSON text, so every driver binds it the same way.
SELECT id
  FROM postpone_defer_jobs_v1($1::varchar[], $2::varchar[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS id
