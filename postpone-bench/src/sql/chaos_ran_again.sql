-- How many of jobs $1 have run more than once, and how many ended aborted.
SELECT count(*) FILTER (WHERE run.runs > 1),
       count(*) FILTER (WHERE job.status = 'aborted')
  FROM procrastinate_jobs AS job
  LEFT JOIN chaos_runs AS run ON run.job_id = job.id
 WHERE job.id = ANY($1::bigint[])
