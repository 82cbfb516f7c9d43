-- Postpone migration 0005 (pre): why each attempt that did not succeed ended, kept and
-- deleted with its job. Additive: Procrastinate's objects are unchanged, and a Python
-- worker's jobs simply have no rows here.

-- One row per attempt that ended other than succeeded, written by the statement that
-- writes its outcome (finish_jobs, retry_jobs, the rescue): the attempt's number (1 for
-- the first), the worker that ran it, the error's kind (a task's error kind, `Panic`,
-- `Timeout`, `JobAborted`, `Stalled`, `TaskNotFound`) and its message.
CREATE TABLE postpone_job_errors (
    id        bigserial PRIMARY KEY,
    job_id    bigint NOT NULL REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    attempt   integer NOT NULL,
    worker_id bigint,
    kind      text NOT NULL,
    message   text NOT NULL,
    failed_at timestamp with time zone NOT NULL DEFAULT now()
);

CREATE INDEX postpone_job_errors_job_id_idx ON postpone_job_errors (job_id);
