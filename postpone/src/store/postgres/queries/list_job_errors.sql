-- list_job_errors: the recorded errors of jobs $1, by job, oldest first.
SELECT job_id, attempt, worker_id, kind, message, failed_at
  FROM postpone_job_errors
 WHERE job_id = ANY($1::bigint[])
 ORDER BY job_id, id
