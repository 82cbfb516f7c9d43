-- list_jobs_to_abort: which of these running jobs have an abort request.
SELECT id FROM procrastinate_jobs WHERE id = ANY($1::bigint[]) AND status = 'doing' AND abort_requested
