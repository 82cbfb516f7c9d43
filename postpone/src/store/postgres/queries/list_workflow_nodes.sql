-- list_workflow_nodes: the nodes of one workflow ($1), by name (schema migration 0009).
SELECT name, parents, status, job_id, task_name, ended_at
  FROM postpone_workflow_nodes
 WHERE workflow_id = $1
 ORDER BY name
