-- list_workflows: the newest workflows, at most $1, with their nodes counted per status
-- (schema migration 0009).
SELECT workflow.id, workflow.name, workflow.on_parent_failure, workflow.created_at,
       (SELECT json_object_agg(counted.status, counted.n)::text
          FROM (SELECT node.status, count(*) AS n
                  FROM postpone_workflow_nodes AS node
                 WHERE node.workflow_id = workflow.id
                 GROUP BY node.status) AS counted) AS counts
  FROM postpone_workflows AS workflow
 ORDER BY workflow.id DESC
 LIMIT $1
