-- W1's floor: a table without index or trigger for bare one-row INSERTs.
CREATE TABLE postpone_bench_baseline (id bigint, args jsonb)
