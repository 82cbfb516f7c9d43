-- Sessions of the worker process named $1 (its application_name): once it has one, it
-- listens for signals (it installs its handlers before it connects).
SELECT count(*) FROM pg_stat_activity WHERE application_name = $1::text
