-- notify_flow_released: for the jobs $1 among which some counted against flow-control
-- buckets (postpone_job_flow) and have left doing, one job_inserted notification per queue,
-- on the channels and with the payload of procrastinate_notify_queue_job_inserted_v1, so
-- the workers waiting for those buckets claim now instead of at their next poll.
SELECT count(pg_notify(channel.name, json_build_object('type', 'job_inserted', 'job_id', released.id)::text))
  FROM (SELECT job.queue_name, min(job.id) AS id
          FROM procrastinate_jobs AS job
          JOIN postpone_job_flow AS flow ON flow.job_id = job.id
         WHERE job.id = ANY($1::bigint[])
           AND job.status <> 'doing'
         GROUP BY job.queue_name) AS released
 CROSS JOIN LATERAL (VALUES ('procrastinate_queue_v1#' || released.queue_name),
                            ('procrastinate_any_queue_v1')) AS channel(name)
