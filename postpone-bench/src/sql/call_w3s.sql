-- W3S: drains the backlog as worker $1, claiming $2 jobs at a time.
CALL postpone_bench_w3s($1::bigint, $2::integer)
