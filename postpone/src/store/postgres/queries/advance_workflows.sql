-- advance_workflows: moves these workflows ($1 ids) on, as far as their nodes' recorded
-- outcomes allow, in one statement (schema migration 0009, docs/adr/0019-workflows.md):
-- * under on_parent_failure 'cancel', every waiting node with a parent that ended without
--   success (failed, cancelled, aborted) is cancelled, and every waiting node below it,
--   transitively: they never get a job;
-- * every waiting node whose parents all succeeded (under 'run': all ended, however) is
--   released: its job is inserted into procrastinate_jobs (the triggers write its
--   'deferred' event and send job_inserted, so Python and Rust workers alike see it),
--   with its timeout and flow-control buckets, under an id taken from the jobs' sequence
--   first.
-- Each parent is looked up by its key (workflow_id, name), one index probe, whatever the
-- planner thinks of the table (a plan that reads the workflow's nodes per candidate is
-- quadratic). A node is released once, whoever runs this and however many at once: the candidates are
-- locked (FOR UPDATE ... SKIP LOCKED, which re-reads a row another statement changed
-- since this one's snapshot, and leaves the rows another is releasing to it), and a node
-- stays a candidate only while it is waiting. Two advancers never both miss a child: each
-- runs after its own parent's outcome committed, so the later one sees both.
-- $2: the names of the nodes that just ended, whose waiting children are the only
-- candidates (found by postpone_workflow_nodes_waiting_parents_idx; each is checked
-- whole, so a name shared by another workflow only adds candidates).
-- Returns how many nodes were cancelled and released.
WITH RECURSIVE flow AS (
    SELECT id, on_parent_failure
      FROM postpone_workflows
     WHERE id = ANY ($1::bigint[])
), doomed (workflow_id, name) AS (
    SELECT child.workflow_id, child.name
      FROM flow
      JOIN postpone_workflow_nodes AS child ON child.workflow_id = flow.id
     WHERE flow.on_parent_failure = 'cancel'
       AND child.status = 'waiting'
       AND child.parents && $2::text[]
       AND EXISTS (
           SELECT 1
             FROM unnest(child.parents) AS parent (name)
            WHERE (SELECT node.status
                     FROM postpone_workflow_nodes AS node
                    WHERE node.workflow_id = child.workflow_id
                      AND node.name = parent.name) IN ('failed', 'cancelled', 'aborted')
       )
    UNION
    SELECT child.workflow_id, child.name
      FROM doomed
      JOIN postpone_workflow_nodes AS child
        ON child.workflow_id = doomed.workflow_id
       AND child.parents && ARRAY[doomed.name]
     WHERE child.status = 'waiting'
), cancelled AS (
    UPDATE postpone_workflow_nodes AS node
       SET status = 'cancelled', ended_at = now()
      FROM doomed
     WHERE node.workflow_id = doomed.workflow_id
       AND node.name = doomed.name
       AND node.status = 'waiting'
    RETURNING node.name
), ready AS (
    SELECT child.workflow_id, child.name
      FROM flow
      JOIN postpone_workflow_nodes AS child ON child.workflow_id = flow.id
     WHERE child.status = 'waiting'
       AND child.parents && $2::text[]
       AND NOT EXISTS (
           SELECT 1
             FROM unnest(child.parents) AS parent (name)
            CROSS JOIN LATERAL (
                   SELECT (SELECT node.status
                             FROM postpone_workflow_nodes AS node
                            WHERE node.workflow_id = child.workflow_id
                              AND node.name = parent.name) AS status
                 ) AS outcome
            WHERE CASE flow.on_parent_failure
                      WHEN 'cancel' THEN outcome.status <> 'succeeded'
                      ELSE outcome.status IN ('waiting', 'released')
                  END
       )
       FOR UPDATE OF child SKIP LOCKED
), released AS (
    UPDATE postpone_workflow_nodes AS node
       SET status = 'released', job_id = nextval('procrastinate_jobs_id_seq'::regclass)
      FROM ready
     WHERE node.workflow_id = ready.workflow_id
       AND node.name = ready.name
    RETURNING node.job_id, node.queue_name, node.task_name, node.priority, node.lock,
              node.queueing_lock, node.args, node.scheduled_at, node.timeout_ms,
              node.flow_buckets
), jobs AS (
    INSERT INTO procrastinate_jobs (id, queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
    SELECT job_id, queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at
      FROM released
     ORDER BY job_id
    RETURNING id
), timeouts AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT job_id, timeout_ms
      FROM released
     WHERE timeout_ms IS NOT NULL
), flows AS (
    -- Its flow-control buckets (migration 0010; their limits were kept at submit).
    INSERT INTO postpone_job_flow (job_id, buckets)
    SELECT job_id, flow_buckets
      FROM released
     WHERE flow_buckets IS NOT NULL
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled, (SELECT count(*) FROM jobs) AS released
