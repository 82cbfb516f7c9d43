-- WF: every job (one per released node).
SELECT count(*) FROM procrastinate_jobs
