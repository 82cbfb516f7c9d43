-- W1S: $1 jobs, one procrastinate_defer_jobs_v1 call and one COMMIT each.
CALL postpone_bench_w1s($1::integer)
