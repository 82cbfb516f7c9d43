-- W2S: $1 jobs in batches of $2 through path $3 (contract, set_wise or floor).
CALL postpone_bench_w2s($1::integer, $2::integer, $3::text)
