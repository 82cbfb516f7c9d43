-- fetch_jobs: claim up to $3 jobs for worker $2 in one round trip, through
-- postpone_fetch_jobs_v2 (schema migration 0004): postpone_fetch_jobs_v1 (migration 0002:
-- procrastinate_fetch_job_v2's rules, for a batch), and the worker's start watermark raised
-- in the same statement to ($5 priority, $6 job id) when given and to the $4-th claimed job
-- in start order when $4 > 0 (the jobs that start at once). Each job comes with the
-- timeout its defer call set, if any (postpone_job_timeouts), and the trace context of the
-- span that deferred it, if any (postpone_job_traces).
SELECT claimed.id, claimed.queue_name, claimed.task_name, claimed.priority, claimed.lock,
       claimed.queueing_lock, claimed.args, claimed.status::text AS status, claimed.scheduled_at,
       claimed.attempts, claimed.abort_requested, claimed.worker_id, timeout.timeout_ms,
       trace.traceparent
  FROM postpone_fetch_jobs_v2($1::varchar[], $2::bigint, $3::int4, $4::int4, $5::int4, $6::int8) AS claimed
  LEFT JOIN postpone_job_timeouts AS timeout ON timeout.job_id = claimed.id
  LEFT JOIN postpone_job_traces AS trace ON trace.job_id = claimed.id
