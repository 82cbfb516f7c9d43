-- flow_next_start: milliseconds until a rate-limited bucket that is full now has room
-- (postpone_flow_next_start_v1, schema migration 0008); NULL when none is full (greatest()
-- would turn that NULL into 0: a worker would claim again at once, over and over).
SELECT CASE WHEN due.at IS NULL THEN NULL
            ELSE greatest(0, ceil(extract(epoch FROM due.at - now()) * 1000))::int8
       END AS wait_ms
  FROM (SELECT postpone_flow_next_start_v1() AS at) AS due
