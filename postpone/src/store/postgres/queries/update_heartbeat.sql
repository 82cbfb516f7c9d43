-- update_heartbeat: the worker is alive.
SELECT procrastinate_update_heartbeat_v1($1)
