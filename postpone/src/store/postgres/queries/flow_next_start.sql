-- flow_next_start: milliseconds until a rate-limited bucket that is full now has room
-- (postpone_flow_next_start_v1, schema migration 0008); NULL when none is full.
SELECT greatest(0, ceil(extract(epoch FROM postpone_flow_next_start_v1() - now()) * 1000))::int8
       AS wait_ms
