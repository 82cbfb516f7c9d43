-- any_running_nodes: whether a workflow node is released (its job queued or running),
-- read by the workflow service's pass; the finish statements name the node table only
-- while one may be (queries::finish_jobs). One probe of postpone_workflow_nodes_released_idx.
SELECT EXISTS (SELECT 1 FROM postpone_workflow_nodes WHERE status = 'released')
