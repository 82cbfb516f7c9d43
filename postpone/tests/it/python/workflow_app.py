# The Python side of postpone/tests/it/workflows.rs: a Procrastinate 3.10 app whose task
# `wf.step` matches the Rust task of that file (records its run in `wf_runs` with
# who = 'python', then fails when asked to; tried again when it cannot connect), and two
# ways to run a worker: until the queue is idle (`run_until_idle`), or until stdin closes
# (`serve`).
import asyncio
import contextlib
import os
import sys

import procrastinate
import psycopg

URL = os.environ["DATABASE_URL"]

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))


# A run whose connection the loaded server refused (too many clients) is tried again;
# a failure asked for is not.
@app.task(
    name="wf.step",
    pass_context=True,
    retry=procrastinate.RetryStrategy(max_attempts=3, retry_exceptions={psycopg.OperationalError}),
)
def step(context, node, fail):
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO wf_runs (job_id, node, who) VALUES (%s, %s, 'python')",
            (context.job.id, node),
        )
    if fail:
        raise ValueError(f"node {node} fails, as asked")


def run_until_idle(queue, timeout=30.0):
    """Runs a worker on `queue` until none of its jobs is todo or doing, then stops it."""

    async def main():
        loop = asyncio.get_running_loop()
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[queue],
                    install_signal_handlers=False,
                    fetch_job_polling_interval=0.1,
                )
            )
            deadline = loop.time() + timeout
            try:
                async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
                    while True:
                        cur = await conn.execute(
                            "SELECT count(*) FROM procrastinate_jobs "
                            "WHERE queue_name = %s AND status IN ('todo', 'doing')",
                            (queue,),
                        )
                        if (await cur.fetchone())[0] == 0:
                            break
                        if worker.done():
                            worker.result()
                            raise RuntimeError("the worker stopped on its own")
                        if loop.time() > deadline:
                            raise TimeoutError(f"jobs of {queue} still pending after {timeout}s")
                        await asyncio.sleep(0.05)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    asyncio.run(main())
    print("idle")


def serve(queue, concurrency):
    """Runs a worker on `queue` until stdin closes, then stops it gracefully."""

    async def main():
        loop = asyncio.get_running_loop()
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[queue],
                    concurrency=concurrency,
                    install_signal_handlers=False,
                    fetch_job_polling_interval=0.1,
                )
            )
            stdin_closed = loop.run_in_executor(None, sys.stdin.read)
            done, _ = await asyncio.wait(
                {worker, stdin_closed}, return_when=asyncio.FIRST_COMPLETED
            )
            if worker in done:
                worker.result()
                raise RuntimeError("the worker stopped on its own")
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    asyncio.run(main())
    print("stopped")
