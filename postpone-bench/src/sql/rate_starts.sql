-- RATE: the 'started' events in the $1 seconds from one second after the first start (the
-- first window's burst left out), and the most starts in any one-second window [t, t + 1 s)
-- over the whole run, t being a start.
WITH starts AS (
    SELECT at FROM procrastinate_events WHERE type = 'started'
), first AS (
    SELECT min(at) AS at FROM starts
)
SELECT (SELECT count(*)
          FROM starts, first
         WHERE starts.at >= first.at + interval '1 second'
           AND starts.at < first.at + interval '1 second' + $1::int8 * interval '1 second'),
       (SELECT coalesce(max(busiest.n), 0)
          FROM (SELECT count(*) OVER (ORDER BY starts.at
                                      RANGE BETWEEN CURRENT ROW AND interval '999999 microseconds' FOLLOWING
                                      EXCLUDE NO OTHERS) AS n
                  FROM starts) AS busiest)
