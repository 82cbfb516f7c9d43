-- After a drain: every job must have succeeded.
SELECT count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status <> 'succeeded')
  FROM procrastinate_jobs
