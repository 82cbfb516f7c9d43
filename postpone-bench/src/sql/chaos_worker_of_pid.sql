-- The worker of process $1, as its latest recorded run names it.
SELECT last_worker FROM chaos_runs WHERE last_pid = $1::integer
 ORDER BY last_start DESC LIMIT 1
