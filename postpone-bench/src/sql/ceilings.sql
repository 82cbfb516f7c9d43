-- The server-side ceiling workloads of `postpone bench` (W1S, W2S, W3S): the row work of
-- W1, W2 and W3 done by PL/pgSQL procedures, with no client in the loop. Created in the
-- bench's fresh database (dropped afterwards), after the schema.
--
-- The two placeholders in double braces are replaced with the library's own statements
-- (postpone/src/store/postgres/queries/fetch_jobs.sql and finish_jobs.sql), so W3S runs
-- exactly what the worker's producer and completer run. Wrapped in PL/pgSQL functions,
-- their $1..$n are the functions' arguments and their plans are cached per session, as
-- the worker's prepared statements are.

-- The worker's claim (the producer's fetch_jobs: queues, worker, limit, how many start at
-- once, the start watermark asked); returns the claimed ids.
CREATE FUNCTION postpone_bench_fetch(character varying[], bigint, integer, integer, integer, bigint)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $postpone_bench$
BEGIN
    RETURN QUERY SELECT fetched.id FROM (
{{FETCH_JOBS}}
    ) AS fetched;
END;
$postpone_bench$;

-- The worker's batch finish (the completer's finish_jobs: the jobs, then the errors of
-- their attempts, none in a drain of no-op jobs); returns the finished ids (the
-- statement's first column; the others name the workflow nodes that ended).
CREATE FUNCTION postpone_bench_finish(bigint[], text[], boolean[],
                                      bigint[], int4[], bigint[], text[], text[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $postpone_bench$
DECLARE
    finished record;
BEGIN
    FOR finished IN
{{FINISH_JOBS}}
    LOOP
        RETURN NEXT finished.id;
    END LOOP;
END;
$postpone_bench$;

-- W1S: p_jobs no-op jobs, one procrastinate_defer_jobs_v1 call and one COMMIT each.
CREATE PROCEDURE postpone_bench_w1s(p_jobs integer)
    LANGUAGE plpgsql
AS $postpone_bench$
BEGIN
    FOR i IN 0 .. p_jobs - 1 LOOP
        PERFORM procrastinate_defer_jobs_v1(ARRAY[
            ROW('default', 'postpone.bench.noop', 0, NULL, NULL, jsonb_build_object('i', i), NULL)
                ::procrastinate_job_to_defer_v1]);
        COMMIT;
    END LOOP;
END;
$postpone_bench$;

-- W2S: p_jobs no-op jobs in batches of p_batch, one COMMIT per batch (as W2's
-- batch_defer: one statement, one transaction per batch). p_path says how a batch goes in:
-- 'contract', one procrastinate_defer_jobs_v1 call; 'set_wise', one postpone_defer_jobs_v1
-- call (W2's own path: the events and notifications written set-wise); 'floor', for a
-- table whose user triggers are disabled, what the contract promises per job and nothing
-- else, each set-wise: the job rows, their 'deferred' events (with the foreign key's
-- checks) and their two job_inserted notifications, with no trigger call at all.
CREATE PROCEDURE postpone_bench_w2s(p_jobs integer, p_batch integer, p_path text)
    LANGUAGE plpgsql
AS $postpone_bench$
DECLARE
    done integer := 0;
    batch procrastinate_job_to_defer_v1[];
    ids bigint[];
BEGIN
    IF p_path = 'floor' THEN
        WHILE done < p_jobs LOOP
            WITH inserted AS (
                INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args)
                SELECT 'default', 'postpone.bench.noop', 0, jsonb_build_object('i', g)
                  FROM generate_series(done, least(done + p_batch, p_jobs) - 1) AS g
                 ORDER BY g
                RETURNING id
            )
            SELECT array_agg(id ORDER BY id) INTO ids FROM inserted;
            INSERT INTO procrastinate_events (job_id, type)
            SELECT id, 'deferred' FROM unnest(ids) AS id;
            PERFORM pg_notify(channel, json_build_object('type', 'job_inserted', 'job_id', id)::text)
               FROM unnest(ids) AS id,
                    unnest(ARRAY['procrastinate_queue_v1#default', 'procrastinate_any_queue_v1']) AS channel;
            COMMIT;
            done := least(done + p_batch, p_jobs);
        END LOOP;
        RETURN;
    END IF;
    WHILE done < p_jobs LOOP
        SELECT array_agg(ROW('default', 'postpone.bench.noop', 0, NULL, NULL,
                             jsonb_build_object('i', g), NULL)::procrastinate_job_to_defer_v1
                         ORDER BY g)
          INTO batch
          FROM generate_series(done, least(done + p_batch, p_jobs) - 1) AS g;
        IF p_path = 'set_wise' THEN
            PERFORM postpone_defer_jobs_v1(
                array_agg(job.queue_name ORDER BY ordinality),
                array_agg(job.task_name ORDER BY ordinality),
                array_agg(job.priority ORDER BY ordinality),
                array_agg(job.lock ORDER BY ordinality),
                array_agg(job.queueing_lock ORDER BY ordinality),
                array_agg(job.args::text ORDER BY ordinality),
                array_agg(job.scheduled_at ORDER BY ordinality))
              FROM unnest(batch) WITH ORDINALITY AS job;
        ELSE
            PERFORM procrastinate_defer_jobs_v1(batch);
        END IF;
        COMMIT;
        done := least(done + p_batch, p_jobs);
    END LOOP;
END;
$postpone_bench$;

-- W3S: drains the queue as worker p_worker_id would: claim up to p_batch jobs (one
-- transaction), then write them succeeded (a second transaction), until a claim finds
-- nothing.
CREATE PROCEDURE postpone_bench_w3s(p_worker_id bigint, p_batch integer)
    LANGUAGE plpgsql
AS $postpone_bench$
DECLARE
    ids bigint[];
    n integer;
BEGIN
    LOOP
        SELECT array_agg(claimed) INTO ids
          FROM postpone_bench_fetch(NULL, p_worker_id, p_batch, p_batch, NULL, NULL) AS claimed;
        COMMIT;
        EXIT WHEN ids IS NULL;
        n := cardinality(ids);
        PERFORM postpone_bench_finish(ids, array_fill('succeeded'::text, ARRAY[n]),
                                      array_fill(false, ARRAY[n]),
                                      '{}', '{}', '{}', '{}', '{}');
        COMMIT;
    END LOOP;
END;
$postpone_bench$;
