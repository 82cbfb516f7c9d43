-- list_queue_pauses: the paused queues, by name.
SELECT queue_name, paused_at
  FROM postpone_queue_pauses
 ORDER BY queue_name
