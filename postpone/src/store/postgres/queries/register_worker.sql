-- register_worker: a new row in procrastinate_workers; returns its id.
SELECT worker_id FROM procrastinate_register_worker_v1()
