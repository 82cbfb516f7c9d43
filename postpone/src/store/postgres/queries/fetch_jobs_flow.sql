-- fetch_jobs_flow: fetch_jobs under flow control, through postpone_fetch_jobs_flow_v1
-- (schema migration 0008): the same claim, watermark and columns, except that no job starts
-- beyond the concurrency and rate limits of its buckets (postpone_job_flow), claims being
-- serialised by the flow lock. Used by a worker only while limits are in use; every other
-- claim runs fetch_jobs unchanged.
SELECT claimed.id, claimed.queue_name, claimed.task_name, claimed.priority, claimed.lock,
       claimed.queueing_lock, claimed.args, claimed.status::text AS status, claimed.scheduled_at,
       claimed.attempts, claimed.abort_requested, claimed.worker_id, timeout.timeout_ms,
       trace.traceparent
  FROM postpone_fetch_jobs_flow_v1($1::varchar[], $2::bigint, $3::int4, $4::int4, $5::int4, $6::int8) AS claimed
  LEFT JOIN postpone_job_timeouts AS timeout ON timeout.job_id = claimed.id
  LEFT JOIN postpone_job_traces AS trace ON trace.job_id = claimed.id
