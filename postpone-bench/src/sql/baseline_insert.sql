-- W1's floor: one bare row.
INSERT INTO postpone_bench_baseline VALUES ($1, $2)
