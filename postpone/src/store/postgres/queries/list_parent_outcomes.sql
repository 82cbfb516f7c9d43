-- list_parent_outcomes: for the job $1, when it is a workflow node, its workflow, its
-- node's name and its parents' outcomes and results, by name (schema migration 0009;
-- JobContext::parent_result). A root has one row, with NULL parent columns.
SELECT node.workflow_id, node.name AS node_name, parent.name AS parent_name,
       parent.status AS parent_status, parent.job_id AS parent_job_id,
       parent.result::text AS parent_result
  FROM postpone_workflow_nodes AS node
  LEFT JOIN postpone_workflow_nodes AS parent
    ON parent.workflow_id = node.workflow_id
   AND parent.name = ANY (node.parents)
 WHERE node.job_id = $1
 ORDER BY parent.name
