-- defer_workflow: inserts a workflow in one statement, all or nothing (schema migration
-- 0009, docs/adr/0019-workflows.md): its row ($1 name, $2 on_parent_failure), one node
-- row per node ($3 names, $4 parents as JSON arrays of names, then the job each becomes
-- as defer_jobs takes it: $5 queues, $6 tasks, $7 priorities, $8 locks, $9 queueing
-- locks, $10 args as JSON text, $11 scheduled_at, $12 timeouts in ms, $13 flow-control
-- buckets as defer_jobs_with_extras takes them, a JSON array or NULL), and the roots
-- (nodes without parents) as jobs in procrastinate_jobs, with their timeouts and buckets:
-- the triggers write their 'deferred' events and job_inserted notifications, sent on
-- commit. Every node's bucket names are kept with it (flow_buckets, migration 0010) for
-- its job, and the limits of every bucket of the workflow go to postpone_flow_limits now.
-- The other nodes wait, without a job, for advance_workflows. A root's job id is taken
-- from the jobs' own sequence before its row is inserted, so the node row can name it.
-- Returns the workflow's id.
WITH workflow AS (
    INSERT INTO postpone_workflows (name, on_parent_failure)
    VALUES ($1, $2)
    RETURNING id
), node AS (
    SELECT t.*, jsonb_array_length(t.parents::jsonb) = 0 AS is_root
      FROM unnest($3::text[], $4::text[], $5::varchar[], $6::varchar[], $7::int4[], $8::text[],
                  $9::text[], $10::text[], $11::timestamptz[], $12::int8[], $13::text[])
           WITH ORDINALITY AS t(name, parents, queue_name, task_name, priority, lock,
                                queueing_lock, args, scheduled_at, timeout_ms, flow, n)
), root AS (
    SELECT node.n, nextval('procrastinate_jobs_id_seq'::regclass) AS job_id
      FROM node
     WHERE node.is_root
), jobs AS (
    INSERT INTO procrastinate_jobs (id, queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
    SELECT root.job_id, node.queue_name, node.task_name, node.priority, node.lock,
           node.queueing_lock, node.args::jsonb, node.scheduled_at
      FROM root
      JOIN node USING (n)
     ORDER BY root.job_id
    RETURNING id
), timeouts AS (
    INSERT INTO postpone_job_timeouts (job_id, timeout_ms)
    SELECT root.job_id, node.timeout_ms
      FROM root
      JOIN node USING (n)
     WHERE node.timeout_ms IS NOT NULL
), flows AS (
    INSERT INTO postpone_job_flow (job_id, buckets)
    SELECT root.job_id, ARRAY(SELECT bucket ->> 'bucket' FROM jsonb_array_elements(node.flow::jsonb) AS bucket)
      FROM root
      JOIN node USING (n)
     WHERE node.flow IS NOT NULL
), limits AS (
    SELECT postpone_keep_flow_limits_v1(jsonb_agg(bucket))
      FROM node, jsonb_array_elements(node.flow::jsonb) AS bucket
     WHERE node.flow IS NOT NULL
    HAVING count(*) > 0
), nodes AS (
    INSERT INTO postpone_workflow_nodes (workflow_id, name, parents, status, job_id, queue_name,
                                         task_name, priority, lock, queueing_lock, args,
                                         scheduled_at, timeout_ms, flow_buckets)
    SELECT workflow.id, node.name, ARRAY(SELECT jsonb_array_elements_text(node.parents::jsonb)),
           CASE WHEN root.job_id IS NULL THEN 'waiting' ELSE 'released' END, root.job_id,
           node.queue_name, node.task_name, node.priority, node.lock, node.queueing_lock,
           node.args::jsonb, node.scheduled_at, node.timeout_ms,
           CASE WHEN node.flow IS NOT NULL
                THEN ARRAY(SELECT bucket ->> 'bucket' FROM jsonb_array_elements(node.flow::jsonb) AS bucket)
           END
      FROM workflow
     CROSS JOIN node
      LEFT JOIN root USING (n)
-- Tells every listening Postpone worker to record workflow nodes in its finishes from now
-- on (finish_jobs.sql); delivered at commit, with the roots' job_inserted notifications.
), notified AS (
    SELECT pg_notify('postpone_workflows_v1',
                     json_build_object('type', 'workflow_deferred', 'workflow_id', id)::text)
      FROM workflow
)
SELECT id FROM workflow
 WHERE (SELECT count(*) FROM notified) >= 0 AND (SELECT count(*) FROM limits) >= 0
