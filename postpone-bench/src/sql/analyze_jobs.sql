-- --analyze: statistics for a fresh backlog.
ANALYZE procrastinate_jobs
