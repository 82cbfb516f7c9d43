-- retry_job: a doing or failed job goes back to todo at retry_at (now when NULL), with
-- optional new priority, queue and lock; procrastinate_retry_job_v2's rules.
SELECT procrastinate_retry_job_v2($1, COALESCE($2::timestamptz, now()), $3, $4, $5)
