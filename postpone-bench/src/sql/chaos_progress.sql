-- Jobs finished (in any final state), and jobs still waiting or running.
SELECT count(*) FILTER (WHERE status NOT IN ('todo', 'doing')),
       count(*) FILTER (WHERE status IN ('todo', 'doing'))
  FROM procrastinate_jobs
