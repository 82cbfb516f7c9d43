-- Postpone migration 0009 (pre): workflows, sets of jobs with dependencies (a DAG)
-- (docs/workflows.md, docs/adr/0019-workflows.md). Additive: Procrastinate's objects are
-- unchanged. A node waits here, not in procrastinate_jobs, until its parents allow it to
-- run: only then is its job inserted, so no worker (a Python one included) can fetch it
-- earlier.

-- One submitted workflow. on_parent_failure says what a parent that ends without
-- success (failed, cancelled, aborted) does to the nodes below it: 'cancel' them
-- (transitively) or let them 'run' once all their parents have ended.
CREATE TABLE postpone_workflows (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    on_parent_failure text NOT NULL CHECK (on_parent_failure IN ('cancel', 'run')),
    created_at        timestamp with time zone NOT NULL DEFAULT now()
);

-- One node of a workflow: the job it will be (task_name ... timeout_ms, as
-- procrastinate_defer_jobs_v1 takes them), its parents by name, and where it stands:
-- waiting (no job yet), released (its job exists in procrastinate_jobs), or its job's
-- end (succeeded, failed, cancelled, aborted), recorded when the job ends (finish_jobs)
-- or found ended by a worker's workflow service (sync_workflows) for jobs ended
-- elsewhere (a Python worker, a cancel). A node cancelled before it had a job has no
-- job_id. `result` is a copy of the job's result (postpone_job_results), kept when the
-- delete policy removes the job, for its children's JobContext::parent_result.
-- job_id is no foreign key: the job may be deleted, the node's outcome stays.
CREATE TABLE postpone_workflow_nodes (
    workflow_id   bigint NOT NULL REFERENCES postpone_workflows (id) ON DELETE CASCADE,
    name          text NOT NULL,
    parents       text[] NOT NULL,
    status        text NOT NULL CHECK (status IN ('waiting', 'released', 'succeeded', 'failed', 'cancelled', 'aborted')),
    job_id        bigint,
    result        json,
    queue_name    character varying(128) NOT NULL,
    task_name     character varying(128) NOT NULL,
    priority      integer NOT NULL,
    lock          text,
    queueing_lock text,
    args          jsonb NOT NULL,
    scheduled_at  timestamp with time zone,
    timeout_ms    bigint,
    ended_at      timestamp with time zone,
    PRIMARY KEY (workflow_id, name)
);

-- finish_jobs' probe, one per finished job: is this job a workflow node? Empty when no
-- workflow is used, so the probe costs an empty index's lookup.
CREATE UNIQUE INDEX postpone_workflow_nodes_job_id_idx ON postpone_workflow_nodes (job_id)
    WHERE job_id IS NOT NULL;

-- sync_workflows' scan: the nodes whose jobs run now.
CREATE INDEX postpone_workflow_nodes_released_idx ON postpone_workflow_nodes (job_id)
    WHERE status = 'released';

-- advance_workflows' candidates: the waiting nodes among the children of the nodes that
-- just ended (`parents && ended`), found without reading the workflow's other nodes.
-- fastupdate off: a pending list of a just-submitted workflow's entries would be read
-- whole by every advance until vacuum merges it (measured: 4 ms against 0.04 ms per scan
-- on a 10,000-node workflow).
CREATE INDEX postpone_workflow_nodes_waiting_parents_idx ON postpone_workflow_nodes
    USING gin (parents) WITH (fastupdate = off) WHERE status = 'waiting';
