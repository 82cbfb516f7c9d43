-- Postpone migration 0007 (pre): what a task returned, kept and deleted with its job, and
-- who waits for a job's end. Additive: Procrastinate's objects are unchanged; a Python
-- worker's jobs simply have no result rows, and its finish notifies no one.

-- The result of a job's successful attempt (the serde value a Rust task set with
-- `JobContext::set_result`), written by the statement that writes the job's `succeeded`
-- outcome (finish_jobs), beside the failed attempts' errors of postpone_job_errors: one
-- write path, one cascade. `json`, not `jsonb`: the text the worker serialised is kept
-- as it is (any JSON string is accepted, `\u0000` included), and it is never searched.
CREATE TABLE postpone_job_results (
    job_id      bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker_id   bigint,
    result      json NOT NULL,
    finished_at timestamp with time zone NOT NULL DEFAULT now()
);

-- Jobs someone waits for (`JobHandle::wait`): finish_jobs removes a job's row when it
-- writes the job's end and sends `{"type": "job_finished", "job_id": N}` on
-- postpone_job_finished_v1, so a batch with no waited job notifies no one.
CREATE TABLE postpone_job_waiters (
    job_id      bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    since       timestamp with time zone NOT NULL DEFAULT now()
);
