-- WF: the nodes of workflow $1 that succeeded.
SELECT count(*) FROM postpone_workflow_nodes WHERE workflow_id = $1 AND status = 'succeeded'
