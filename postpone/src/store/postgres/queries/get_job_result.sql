-- get_job_result: the stored result of job $1 (postpone_job_results), if any.
SELECT job_id, attempt, worker_id, result::text AS result, finished_at
  FROM postpone_job_results
 WHERE job_id = $1
