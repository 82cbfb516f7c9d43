-- The chaos suite's database, on its private cluster.
CREATE DATABASE chaos
