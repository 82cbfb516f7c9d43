-- This session's backend, to read its CPU time.
SELECT pg_backend_pid()
