-- delete_old_jobs: delete jobs in the given final statuses whose latest event is older
-- than $3 hours. Same selection as Procrastinate's query, but through the events' job_id
-- index per candidate instead of sorting every event of the table.
DELETE FROM procrastinate_jobs AS job
 WHERE job.status = ANY($1::text[]::procrastinate_job_status[])
   AND ($2::varchar IS NULL OR job.queue_name = $2)
   AND (SELECT max(event.at) FROM procrastinate_events AS event WHERE event.job_id = job.id)
       < now() - make_interval(hours => $3::int4)
