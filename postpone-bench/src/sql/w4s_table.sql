-- W4S: the one row a bare write updates.
CREATE TABLE postpone_bench_write (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO postpone_bench_write VALUES (1, 0)
