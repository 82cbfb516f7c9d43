-- get_job_timeout: the timeout a job's defer call set (postpone_job_timeouts), if any.
SELECT timeout_ms FROM postpone_job_timeouts WHERE job_id = $1
