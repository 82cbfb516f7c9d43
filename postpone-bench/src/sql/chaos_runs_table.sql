-- The chaos suite's record of every run: each job's task adds one to its counter as its
-- first act, with when, in which process and for which worker.
CREATE TABLE chaos_runs (
    job_id     bigint PRIMARY KEY,
    runs       integer NOT NULL,
    last_start timestamp with time zone NOT NULL,
    last_pid   integer NOT NULL,
    last_worker bigint
)
