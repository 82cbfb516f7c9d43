-- delete_old_jobs: delete jobs in the given final statuses ($1) of a queue ($2; NULL: all)
-- whose latest event is older than $3 hours. Same selection as Procrastinate's query, but
-- through the events' job_id index per candidate instead of sorting every event of the
-- table. Returns (as rows touched) the jobs deleted.
-- Ended workflows go by the same rule (schema migration 0009, docs/workflows.md): a
-- workflow whose every node ended in one of those statuses (and, with a queue, is of that
-- queue), the last more than $3 hours ago, is deleted with its nodes (ON DELETE CASCADE).
WITH workflows AS (
    DELETE FROM postpone_workflows AS workflow
     WHERE NOT EXISTS (
               SELECT 1
                 FROM postpone_workflow_nodes AS node
                WHERE node.workflow_id = workflow.id
                  AND (node.status <> ALL ($1::text[])
                       OR ($2::varchar IS NOT NULL AND node.queue_name <> $2)
                       OR node.ended_at >= now() - make_interval(hours => $3::int4))
           )
    RETURNING workflow.id
)
DELETE FROM procrastinate_jobs AS job
 WHERE job.status = ANY($1::text[]::procrastinate_job_status[])
   AND ($2::varchar IS NULL OR job.queue_name = $2)
   AND (SELECT max(event.at) FROM procrastinate_events AS event WHERE event.job_id = job.id)
       < now() - make_interval(hours => $3::int4)
