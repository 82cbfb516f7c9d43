-- job_table_size: the jobs table's size in pages, as the file is now (not as the last
-- ANALYZE saw it), for choosing between an exact count and a sample.
SELECT (pg_relation_size('procrastinate_jobs'::regclass)
        / current_setting('block_size')::bigint)::bigint AS pages
