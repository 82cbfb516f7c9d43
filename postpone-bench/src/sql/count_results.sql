-- After R1: the results stored (postpone_job_results).
SELECT count(*) FROM postpone_job_results
