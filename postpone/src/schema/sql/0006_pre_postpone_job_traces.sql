-- Postpone migration 0006 (pre): the trace context of the span that deferred a job, so
-- that the span of its run links to it (OpenTelemetry), kept beside the job and deleted
-- with it. Never in the job's args: a Python task receives its args as keyword arguments.
-- Written only by a defer call made inside a sampled span of an app built with the
-- `opentelemetry` feature; Python-deferred jobs have no row.
CREATE TABLE postpone_job_traces (
    job_id      bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    -- W3C Trace Context `traceparent`: 00-<trace id>-<span id>-<flags>
    traceparent text NOT NULL
);
