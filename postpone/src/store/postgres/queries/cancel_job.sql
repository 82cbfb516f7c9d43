-- cancel_job: a todo job becomes cancelled (or is deleted); with abort, a doing job is
-- marked abort_requested. Returns the id when something was done, NULL otherwise.
SELECT procrastinate_cancel_job_v1($1, $2, $3) AS id
