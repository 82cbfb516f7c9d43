# The Python side of Postpone's interop tests: a Procrastinate 3.10 app whose task names
# match the Rust tasks of postpone/tests/it/interop.rs. Every run is recorded in the table
# `interop_runs` (created by the Rust test), in the order the worker ran the jobs.
#
# interop.rs prepends this file to each script it runs, so the script can use `app`,
# `record`, `fail`, `show` and `dump_job` directly.
import datetime
import json
import os

import procrastinate
import psycopg
from psycopg.types.json import Jsonb

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"])
)


def _record_run(job_id, task_name, kwargs):
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO interop_runs (job_id, task_name, args) VALUES (%s, %s, %s)",
            (job_id, task_name, Jsonb(kwargs)),
        )


@app.task(name="tests.record", pass_context=True)
def record(context, **kwargs):
    _record_run(context.job.id, context.job.task_name, kwargs)


@app.task(name="tests.fail", pass_context=True)
def fail(context, **kwargs):
    _record_run(context.job.id, context.job.task_name, kwargs)
    raise ValueError("tests.fail always fails")


def dump_job(job):
    """A procrastinate Job as a JSON-ready dict, with the names of procrastinate_jobs."""
    return {
        "id": job.id,
        "queue_name": job.queue,
        "task_name": job.task_name,
        "priority": job.priority,
        "lock": job.lock,
        "queueing_lock": job.queueing_lock,
        "args": job.task_kwargs,
        "status": job.status,
        "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at else None,
        "attempts": job.attempts,
        "abort_requested": job.abort_requested,
        "worker_id": job.worker_id,
    }


def show(value):
    """Prints the script's result: one JSON line, the last line of stdout."""
    print(json.dumps(value, default=str))
