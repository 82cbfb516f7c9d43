-- W2S_no_notify: events are written, nobody is woken.
ALTER TABLE procrastinate_jobs
    DISABLE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1
