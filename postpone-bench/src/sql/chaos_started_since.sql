-- The first run started after $1, if any.
SELECT min(last_start) FROM chaos_runs WHERE last_start > $1::timestamptz
