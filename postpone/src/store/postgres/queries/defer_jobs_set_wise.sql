-- defer_jobs_set_wise: defer_jobs for a batch of at least SET_WISE_DEFER_MIN jobs (in
-- queries.rs), through postpone_defer_jobs_v1 (schema migration 0003): the same rows,
-- with their 'deferred' (and 'scheduled') events and job_inserted notifications (sent on
-- commit) written set-wise instead of by one trigger call per row. All or nothing; ids in
-- input order. For a few jobs the function's own cost is more than it saves (measured:
-- break-even near 20 jobs a call), so small batches take the plain statement.
SELECT id
  FROM postpone_defer_jobs_v1($1::varchar[], $2::varchar[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS id
