-- sync_workflows: the workflow service's pass (schema migration 0009,
-- docs/adr/0019-workflows.md). Records the end of every released node whose job ended
-- without finish_jobs recording it (run by a Python worker, cancelled, failed by the
-- rescue, aborted while retried), or is gone (deleted by a Python worker's delete policy
-- or a cancel with delete: recorded as cancelled, since its outcome is lost), copying the
-- job's stored result; nodes another pass is recording are left to it (SKIP LOCKED).
-- Returns what to advance, as (workflow, ended node name) rows: the nodes recorded, and
-- the parents of each waiting node whose parents have all ended (an advance that did not
-- run after its finish, a crash between the two).
WITH ended AS (
    SELECT node.workflow_id, node.name, node.job_id, job.status::text AS status
      FROM postpone_workflow_nodes AS node
      LEFT JOIN procrastinate_jobs AS job ON job.id = node.job_id
     WHERE node.status = 'released'
       AND (job.id IS NULL OR job.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
       FOR UPDATE OF node SKIP LOCKED
), recorded AS (
    UPDATE postpone_workflow_nodes AS node
       SET status = COALESCE(ended.status, 'cancelled'),
           ended_at = now(),
           result = (SELECT stored.result FROM postpone_job_results AS stored WHERE stored.job_id = ended.job_id)
      FROM ended
     WHERE node.workflow_id = ended.workflow_id
       AND node.name = ended.name
    RETURNING node.workflow_id, node.name
), stuck AS (
    SELECT DISTINCT child.workflow_id, parent_name.name
      FROM postpone_workflow_nodes AS child
     CROSS JOIN unnest(child.parents) AS parent_name (name)
     WHERE child.status = 'waiting'
       AND NOT EXISTS (
           SELECT 1
             FROM unnest(child.parents) AS parent (name)
            WHERE (SELECT node.status
                     FROM postpone_workflow_nodes AS node
                    WHERE node.workflow_id = child.workflow_id
                      AND node.name = parent.name) IN ('waiting', 'released')
       )
)
SELECT workflow_id, name FROM recorded
UNION
SELECT workflow_id, name FROM stuck
