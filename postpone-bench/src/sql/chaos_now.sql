-- The server's clock, to compare with the recorded starts and rescues.
SELECT clock_timestamp()
