-- flow_in_use: whether any flow-control limit is stored (postpone_flow_limits, schema
-- migration 0008): a worker whose app has no limit switches to fetch_jobs_flow once it is.
SELECT EXISTS (SELECT 1 FROM postpone_flow_limits) AS in_use
