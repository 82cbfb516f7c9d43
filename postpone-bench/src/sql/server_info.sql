-- The server the figures were measured on.
SELECT current_setting('server_version'), version(),
       current_setting('fsync'), current_setting('synchronous_commit'),
       current_setting('shared_buffers'), current_setting('max_connections')
