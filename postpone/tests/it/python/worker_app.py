# The Python side of postpone/tests/it/interop_worker.rs: a Procrastinate 3.10 app whose
# task names and arguments match the Rust tasks of that file, plus helpers to run a Python
# worker until the queues are idle (`run_until_idle`), or as a long-running process that
# stops when its stdin closes (`serve`).
#
# interop_worker.rs prepends this file to each script it runs. Runs are recorded in the
# table `interop_runs` (created by the Rust test) with who = 'python'.
import asyncio
import contextlib
import json
import os
import sys

import procrastinate
import psycopg
from psycopg.types.json import Jsonb

URL = os.environ["DATABASE_URL"]

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))

# The keyword arguments of interop.typed jobs; `Typed::expected()` in Rust is the same.
TYPED_ARGS = {
    "n": 2**40,
    "x": 1.5,
    "s": "h\u00e9llo \u2713",
    "flag": True,
    "items": [1, 2, 3],
    "maybe": None,
    "nested": {"a": -7, "b": ["x", "y"]},
}


def record(job_id, args=None, info=None):
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO interop_runs (job_id, who, args, info) VALUES (%s, 'python', %s, %s)",
            (job_id, Jsonb(args), Jsonb(info)),
        )


@app.task(name="interop.typed", pass_context=True)
def typed(context, n, x, s, flag, items, maybe, nested):
    kwargs = dict(n=n, x=x, s=s, flag=flag, items=items, maybe=maybe, nested=nested)
    record(context.job.id, kwargs, {k: type(v).__name__ for k, v in kwargs.items()})


@app.task(name="interop.fail", pass_context=True)
def fail(context, n):
    record(context.job.id, {"n": n})
    raise ValueError("interop.fail always fails")


@app.task(name="interop.flaky", retry=2)
def flaky(n):
    raise ValueError("interop.flaky always fails")


@app.task(
    name="interop.flaky_wait",
    retry=procrastinate.RetryStrategy(max_attempts=1, wait=1),
)
def flaky_wait(n):
    raise ValueError("interop.flaky_wait always fails")


@app.task(name="interop.sleep", pass_context=True)
async def sleep(context, lock, seq, ms):
    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT clock_timestamp()")
        (started,) = await cur.fetchone()
        await asyncio.sleep(ms / 1000)
        await conn.execute(
            "INSERT INTO interop_runs (job_id, who, lock, seq, started, ended) "
            "VALUES (%s, 'python', %s, %s, %s, clock_timestamp())",
            (context.job.id, lock, seq, started),
        )


@app.task(name="interop.forever", pass_context=True)
async def forever(context):
    record(context.job.id)
    await asyncio.Event().wait()


async def _count_pending(conn, queues):
    cur = await conn.execute(
        "SELECT count(*) FROM procrastinate_jobs "
        "WHERE queue_name = ANY(%s) AND status IN ('todo', 'doing')",
        (list(queues),),
    )
    return (await cur.fetchone())[0]


def run_until_idle(queues, timeout=30.0, **options):
    """Runs a waiting worker on `queues` until none of their jobs is todo or doing
    (retries scheduled later included), then stops it gracefully."""

    async def main():
        loop = asyncio.get_running_loop()
        async with app.open_async():
            options.setdefault("fetch_job_polling_interval", 0.1)
            worker = asyncio.create_task(
                app.run_worker_async(queues=queues, install_signal_handlers=False, **options)
            )
            deadline = loop.time() + timeout
            try:
                async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
                    while await _count_pending(conn, queues):
                        if worker.done():
                            worker.result()
                            raise RuntimeError("the worker stopped on its own")
                        if loop.time() > deadline:
                            raise TimeoutError(f"jobs of {queues} still pending after {timeout}s")
                        await asyncio.sleep(0.05)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    asyncio.run(main())


def serve(**options):
    """Runs a waiting worker until stdin closes, then stops it gracefully."""

    async def main():
        loop = asyncio.get_running_loop()
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(install_signal_handlers=False, **options)
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


def stalled_jobs(seconds_since_heartbeat):
    """Procrastinate's get_stalled_jobs, as [{id, status, worker_id}] sorted by id."""

    async def main():
        async with app.open_async():
            jobs = await app.job_manager.get_stalled_jobs(
                seconds_since_heartbeat=seconds_since_heartbeat
            )
            return sorted(
                ({"id": j.id, "status": j.status, "worker_id": j.worker_id} for j in jobs),
                key=lambda j: j["id"],
            )

    return asyncio.run(main())


def show(value):
    """Prints the script's result: one JSON line, the last line of stdout."""
    print(json.dumps(value, default=str))


def defer_twins(make):
    """Shows {q: make(q)} for q in ("rs", "py"): the same jobs (a dict of key -> job id)
    deferred on queue rs, for the Rust worker, and on queue py, for a Python worker."""
    with app.open():
        show({q: make(q) for q in ("rs", "py")})
