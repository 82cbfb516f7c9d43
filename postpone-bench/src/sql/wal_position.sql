-- The server's WAL position, in bytes since the start: what a workload wrote is the
-- difference of two readings.
SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8
