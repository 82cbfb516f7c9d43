-- wait_for_job: records that someone waits for job $1's end (postpone_job_waiters), so
-- that the finish_jobs statement that writes it notifies postpone_job_finished_v1. Run
-- after the waiter LISTENs and before it reads the job. Nothing for a job that is gone.
INSERT INTO postpone_job_waiters (job_id)
SELECT id FROM procrastinate_jobs WHERE id = $1
    ON CONFLICT (job_id) DO NOTHING
