-- The session commits without waiting for the WAL flush.
SET synchronous_commit = off
