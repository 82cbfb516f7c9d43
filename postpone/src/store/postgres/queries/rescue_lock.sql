-- rescue_lock: one rescue pass at a time across every worker on the database: the
-- transaction's advisory lock on $1 (released at its end, so it works through PgBouncer in
-- transaction pooling); false when another pass holds it.
SELECT pg_try_advisory_xact_lock($1::bigint)
