-- defer_jobs: insert a batch of jobs in one statement, all or nothing.
-- The same rows procrastinate_defer_jobs_v1 inserts; the schema's triggers add the
-- 'deferred' (and 'scheduled') events and the job_inserted notifications, sent on commit.
-- $6 carries each job's args as JSON text, so every driver binds it the same way.
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
SELECT t.queue_name, t.task_name, t.priority, t.lock, t.queueing_lock, t.args::jsonb, t.scheduled_at
  FROM unnest($1::varchar[], $2::varchar[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
       WITH ORDINALITY AS t(queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, n)
 ORDER BY t.n
RETURNING id
