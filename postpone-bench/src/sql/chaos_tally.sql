-- The account of a scenario: jobs, by outcome, and what the runs and the recorded failed
-- attempts say. A job may run twice only after an attempt that did not succeed (its
-- error recorded in postpone_job_errors: a rescue after a kill, a forced stop, or the
-- task's own failure); `unexplained` counts the others. Jobs a forced stop aborted (error
-- `JobAborted` "aborted: Shutdown") may end aborted.
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE job.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE job.status = 'aborted' AND stopped.yes) AS aborted_on_purpose,
       count(*) FILTER (WHERE job.status IN ('todo', 'doing')) AS stuck,
       count(*) FILTER (WHERE job.status = 'succeeded' AND run.job_id IS NULL) AS never_ran,
       count(*) FILTER (WHERE run.runs > 1) AS run_twice,
       count(*) FILTER (WHERE run.runs > 1 AND NOT failed.yes) AS unexplained,
       count(*) FILTER (WHERE interrupted.yes) AS running_at_kill,
       (SELECT count(*) FROM postpone_rescues) AS rescued
  FROM procrastinate_jobs AS job
  LEFT JOIN chaos_runs AS run ON run.job_id = job.id
 CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM postpone_job_errors AS e WHERE e.job_id = job.id) AS yes
       ) AS failed
 CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM postpone_job_errors AS e
                        WHERE e.job_id = job.id AND e.kind = 'JobAborted'
                          AND e.message = 'aborted: Shutdown') AS yes
       ) AS stopped
 CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT 1 FROM postpone_job_errors AS e
                        WHERE e.job_id = job.id
                          AND (e.kind = 'Stalled'
                               OR (e.kind = 'JobAborted' AND e.message = 'aborted: Shutdown'))) AS yes
       ) AS interrupted
