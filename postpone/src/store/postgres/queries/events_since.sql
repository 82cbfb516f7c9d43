-- events_since: the first $2 events after id $1 (by the primary key), counted per minute
-- of their time and per type, each count with the highest id it covers. Events without a
-- time count in no minute (NULL) but still move the caller's mark.
SELECT date_trunc('minute', event.at) AS minute, event.type::text AS type,
       count(*) AS n, max(event.id) AS last_id
  FROM (SELECT id, type, at
          FROM procrastinate_events
         WHERE id > $1
         ORDER BY id
         LIMIT $2::bigint) AS event
 GROUP BY 1, 2
 ORDER BY 1, 2
