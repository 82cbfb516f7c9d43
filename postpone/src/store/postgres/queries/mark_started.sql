-- mark_started: raise worker $1's start watermark to ($2 priority, $3 job id), never lower
-- it (postpone_mark_started_v1, schema migration 0004): the jobs it holds at or before it
-- in start order may start. An UNLOGGED table: the commit waits for no WAL flush.
SELECT postpone_mark_started_v1($1::bigint, $2::int4, $3::int8)
