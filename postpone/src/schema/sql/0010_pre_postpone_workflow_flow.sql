-- Postpone migration 0010 (pre): workflow nodes under flow control (docs/workflows.md,
-- docs/flow-control.md, ADR 18 and 19). Additive: Procrastinate's objects are unchanged.
--
-- A node of a rate- or concurrency-limited task or queue keeps its job's buckets until its
-- job exists: defer_workflow writes them here (and the limits of every bucket of the
-- workflow, in postpone_flow_limits), and the statement that inserts the node's job (the
-- roots: defer_workflow; the others: advance_workflows) writes them to postpone_job_flow,
-- where the claim reads them. NULL: the node's job has no limit.
ALTER TABLE postpone_workflow_nodes ADD COLUMN flow_buckets text[];

-- Keeps the limits of these buckets (a JSON array of {bucket, max_running, rate,
-- period_ms}, as the defer statements send them; NULL or empty: none) in
-- postpone_flow_limits: a bucket seen first is inserted; one whose limits changed is
-- updated; one in use with the same limits is not locked (no contention between defers
-- of one key). Of two entries for one bucket, the first in bucket order wins, as in
-- defer_jobs_with_extras. Used by defer_periodic_job and defer_workflow.
CREATE FUNCTION postpone_keep_flow_limits_v1(buckets jsonb)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO postpone_flow_limits (bucket, max_running, rate, period_ms)
    SELECT DISTINCT ON (bucket ->> 'bucket')
           bucket ->> 'bucket', (bucket ->> 'max_running')::int4, (bucket ->> 'rate')::int4,
           (bucket ->> 'period_ms')::int8
      FROM jsonb_array_elements(COALESCE(buckets, '[]'::jsonb)) AS bucket
     ORDER BY bucket ->> 'bucket'
        ON CONFLICT (bucket) DO NOTHING;
    UPDATE postpone_flow_limits AS flow_limit
       SET max_running = limits.max_running, rate = limits.rate, period_ms = limits.period_ms
      FROM (SELECT DISTINCT ON (bucket ->> 'bucket')
                   bucket ->> 'bucket' AS bucket, (bucket ->> 'max_running')::int4 AS max_running,
                   (bucket ->> 'rate')::int4 AS rate, (bucket ->> 'period_ms')::int8 AS period_ms
              FROM jsonb_array_elements(COALESCE(buckets, '[]'::jsonb)) AS bucket
             ORDER BY bucket ->> 'bucket') AS limits
     WHERE flow_limit.bucket = limits.bucket
       AND (flow_limit.max_running, flow_limit.rate, flow_limit.period_ms)
           IS DISTINCT FROM (limits.max_running, limits.rate, limits.period_ms);
$$;
