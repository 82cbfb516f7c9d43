-- The account of a scenario: jobs, by outcome, and what the runs and rescues say.
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE job.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE job.status = 'aborted') AS aborted,
       count(*) FILTER (WHERE job.status IN ('todo', 'doing')) AS stuck,
       count(*) FILTER (WHERE job.status = 'succeeded' AND run.job_id IS NULL) AS never_ran,
       count(*) FILTER (WHERE run.runs > 1) AS run_twice,
       (SELECT count(DISTINCT job_id) FROM postpone_rescues WHERE started) AS running_at_kill,
       (SELECT count(*) FROM postpone_rescues) AS rescued
  FROM procrastinate_jobs AS job
  LEFT JOIN chaos_runs AS run ON run.job_id = job.id
