-- W4S: a bare one-row write.
UPDATE postpone_bench_write SET n = n + 1 WHERE id = 1
