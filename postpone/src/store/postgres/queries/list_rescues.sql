-- list_rescues: the rescues of jobs $1, oldest first.
SELECT job_id, worker_id, rescued_at, started, outcome
  FROM postpone_rescues
 WHERE job_id = ANY($1::bigint[])
 ORDER BY id
