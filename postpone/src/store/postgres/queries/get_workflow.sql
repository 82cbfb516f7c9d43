-- get_workflow: one workflow's row (schema migration 0009).
SELECT id, name, on_parent_failure, created_at
  FROM postpone_workflows
 WHERE id = $1
