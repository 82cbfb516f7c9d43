-- When the server (re)started: a restart's outage ends here.
SELECT pg_postmaster_start_time()
