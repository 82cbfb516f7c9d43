-- record_rescues: one postpone_rescues row per rescued job ($1 ids, $2 their dead workers,
-- $3 whether they may have started, $4 outcomes).
INSERT INTO postpone_rescues (job_id, worker_id, started, outcome)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bool[], $4::text[])
