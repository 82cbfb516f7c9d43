//! Interop with the real Python package (procrastinate 3.10.0): jobs deferred by Rust run
//! on a Python worker exactly like Python-deferred twins; Python-deferred jobs are listed and
//! counted by Rust; cancel and retry cross the language boundary both ways; a queueing lock
//! held by one side refuses the other.
//!
//! The Python side is `python/interop_app.py` (tasks `tests.record` and `tests.fail`, which
//! record each run in `interop_runs`), prepended to every script run here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use postpone::RetryDecision;
use postpone::job::Job;
use postpone::store::postgres::queries::SET_WISE_DEFER_MIN;
use postpone::task::{JobContext, TaskError};
use postpone::{App, Error, JobFilter, JobStatus, Task};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::harness::{TestDb, run_python, schema_db};

const PYTHON_APP: &str = include_str!("python/interop_app.py");

/// Same name and arguments as `record` in interop_app.py.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    n: i64,
    label: String,
}

impl Task for Record {
    fn name() -> Cow<'static, str> {
        "tests.record".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Same name as `fail` in interop_app.py (which always raises).
#[derive(Debug, Serialize, Deserialize)]
struct Fail {
    n: i64,
}

impl Task for Fail {
    fn name() -> Cow<'static, str> {
        "tests.fail".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Err(TaskError::msg("tests.fail always fails"))
    }
}

fn rec(n: i64, label: &str) -> Record {
    Record {
        n,
        label: label.to_owned(),
    }
}

async fn setup() -> (TestDb, Client, App) {
    let db = schema_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE interop_runs (seq bigserial PRIMARY KEY, job_id bigint NOT NULL, \
             task_name text NOT NULL, args jsonb NOT NULL)",
        )
        .await
        .expect("create interop_runs");
    let app = App::builder()
        .database_url(&db.url)
        .expect("database url")
        .task::<Record>()
        .task::<Fail>()
        .build()
        .expect("build app");
    (db, client, app)
}

/// Runs `body` after interop_app.py; returns the JSON its `show(...)` printed last.
async fn python(db: &TestDb, body: &str) -> Value {
    let script = format!("{PYTHON_APP}\n\n# --- test body ---\n{body}\n");
    let stdout = run_python(db, &script).await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("Python printed no JSON result ({e}); stdout:\n{stdout}"))
}

/// A one-shot Python worker: runs every available job, then exits.
async fn run_python_worker(db: &TestDb) {
    python(db, "app.run_worker(wait=False)\nshow('done')").await;
}

/// `(job_id, args)` of every run, in the order the worker ran them.
async fn runs(client: &Client) -> Vec<(i64, Value)> {
    client
        .query("SELECT job_id, args FROM interop_runs ORDER BY seq", &[])
        .await
        .expect("select runs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn event_types(client: &Client, id: i64) -> Vec<String> {
    client
        .query(
            "SELECT type::text FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("select events")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn job_count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM procrastinate_jobs", &[])
        .await
        .expect("count jobs")
        .get(0)
}

/// A job as interop_app.py's `dump_job` printed it.
fn job_from_python(value: &Value) -> Job {
    let text = |key: &str| value[key].as_str().map(str::to_owned);
    Job {
        id: value["id"].as_i64().expect("id"),
        queue_name: text("queue_name").expect("queue"),
        task_name: text("task_name").expect("task"),
        priority: i32::try_from(value["priority"].as_i64().expect("priority")).expect("i32"),
        lock: text("lock"),
        queueing_lock: text("queueing_lock"),
        args: value["args"].clone(),
        status: text("status")
            .expect("status")
            .parse()
            .expect("known status"),
        scheduled_at: text("scheduled_at").map(|at| {
            DateTime::parse_from_rfc3339(&at)
                .expect("isoformat")
                .with_timezone(&Utc)
        }),
        attempts: i32::try_from(value["attempts"].as_i64().expect("attempts")).expect("i32"),
        abort_requested: value["abort_requested"].as_bool().expect("abort_requested"),
        worker_id: value["worker_id"].as_i64(),
        timeout: None,
        trace_context: None,
    }
}

async fn deferred(configured: postpone::Configured<'_>) -> Vec<i64> {
    vec![configured.defer().await.expect("defer")]
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("list of ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn rust_deferred_jobs_run_on_a_python_worker_like_python_deferred_twins() {
    let (db, client, app) = setup().await;
    let past = (Utc::now() - Duration::hours(1))
        .with_nanosecond(0)
        .expect("valid");

    // (label, priority, runs now) of each job, deferred the same way by both languages.
    let mut rust = BTreeMap::new();
    rust.insert(
        "single",
        vec![app.defer(rec(1, "single")).await.expect("single")],
    );
    let batch = app
        .batch_defer([
            app.configure(rec(2, "batch")),
            app.configure(rec(3, "batch")),
        ])
        .await
        .expect("batch");
    rust.insert("batch", batch);
    // A batch large enough for the set-wise defer (events and NOTIFYs written by our
    // function, not the triggers): a Python worker must see it as any other.
    let bulk = app
        .batch_defer((0..SET_WISE_DEFER_MIN).map(|_| app.configure(rec(9, "bulk"))))
        .await
        .expect("bulk");
    rust.insert("bulk", bulk);
    let lock = app
        .configure(rec(4, "lock"))
        .with_lock("shared-lock")
        .with_priority(2);
    rust.insert("lock", deferred(lock).await);
    let qlock = app
        .configure(rec(5, "qlock"))
        .with_queueing_lock("rs-qlock");
    rust.insert("qlock", deferred(qlock).await);
    let priority = app.configure(rec(6, "priority")).with_priority(10);
    rust.insert("priority", deferred(priority).await);
    rust.insert(
        "past",
        deferred(app.configure(rec(7, "past")).schedule_at(past)).await,
    );
    let future = app
        .configure(rec(8, "future"))
        .schedule_in(std::time::Duration::from_secs(3600));
    rust.insert("future", deferred(future).await);

    let body = format!(
        r#"
now = datetime.datetime.now(datetime.timezone.utc)
with app.open():
    ids = {{
        "single": [record.defer(n=1, label="single")],
        "batch": record.batch_defer({{"n": 2, "label": "batch"}}, {{"n": 3, "label": "batch"}}),
        "bulk": record.batch_defer(*[{{"n": 9, "label": "bulk"}}] * {SET_WISE_DEFER_MIN}),
        "lock": [record.configure(lock="shared-lock", priority=2).defer(n=4, label="lock")],
        "qlock": [record.configure(queueing_lock="py-qlock").defer(n=5, label="qlock")],
        "priority": [record.configure(priority=10).defer(n=6, label="priority")],
        "past": [record.configure(schedule_at=datetime.datetime.fromisoformat("{past}")).defer(n=7, label="past")],
        "future": [record.configure(schedule_in={{"hours": 1}}).defer(n=8, label="future")],
    }}
show(ids)
"#,
        past = past.to_rfc3339()
    );
    let py = python(&db, &body).await;
    let python_ids: BTreeMap<&str, Vec<i64>> = rust.keys().map(|k| (*k, ids(&py[*k]))).collect();

    run_python_worker(&db).await;

    let manager = app.job_manager();
    let jobs: BTreeMap<i64, Job> = manager
        .list_jobs(&JobFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    assert_eq!(jobs.len(), 16 + 2 * SET_WISE_DEFER_MIN);
    // Expected run order: every job due now, priority DESC then id ASC.
    let mut due: Vec<&Job> = jobs
        .values()
        .filter(|j| j.args["label"] != "future")
        .collect();
    due.sort_by_key(|j| (-j.priority, j.id));
    let expected: Vec<(i64, Value)> = due.iter().map(|j| (j.id, j.args.clone())).collect();
    assert_eq!(
        runs(&client).await,
        expected,
        "each due job ran once, in order"
    );
    let labels: Vec<&str> = due
        .iter()
        .filter_map(|j| j.args["label"].as_str())
        .collect();
    assert_eq!(&labels[..4], ["priority", "priority", "lock", "lock"]);

    for (label, rust_ids) in &rust {
        let python_ids = &python_ids[label];
        assert_eq!(rust_ids.len(), python_ids.len(), "{label}");
        for (rust_id, python_id) in rust_ids.iter().zip(python_ids) {
            let (r, p) = (&jobs[rust_id], &jobs[python_id]);
            let (status, attempts) = if *label == "future" {
                (JobStatus::Todo, 0)
            } else {
                (JobStatus::Succeeded, 1)
            };
            assert_eq!((r.status, r.attempts), (status, attempts), "{label}: {r:?}");
            // Same row but for id, queueing lock and (for schedule_in) scheduled_at.
            let comparable = |j: &Job| {
                let mut j = j.clone();
                j.id = 0;
                j.queueing_lock = None;
                if *label == "future" {
                    j.scheduled_at = None;
                }
                j
            };
            assert_eq!(comparable(r), comparable(p), "{label}: Rust vs Python twin");
            let rust_events = event_types(&client, *rust_id).await;
            assert_eq!(
                rust_events,
                event_types(&client, *python_id).await,
                "{label}: same events"
            );
            let run_events: &[&str] = match *label {
                "future" => &["scheduled", "deferred"],
                "past" => &["scheduled", "deferred", "started", "succeeded"],
                _ => &["deferred", "started", "succeeded"],
            };
            assert_eq!(rust_events, run_events, "{label}");
        }
    }
    assert_eq!(
        jobs[&rust["qlock"][0]].queueing_lock.as_deref(),
        Some("rs-qlock")
    );
    assert_eq!(jobs[&rust["past"][0]].scheduled_at, Some(past));
}

#[tokio::test]
async fn python_deferred_jobs_are_listed_and_counted_by_rust() {
    let (db, _client, app) = setup().await;
    let py = python(
        &db,
        r#"
def counts(rows):
    return [{k: (v if k == "name" else int(v)) for k, v in row.items()} for row in rows]

with app.open():
    one = record.configure(
        queue="pyq", lock="py-lock", queueing_lock="py-qlock", priority=4, schedule_in={"hours": 1}
    ).defer(n=1, label="py")
    batch = record.configure(queue="pyq-batch", priority=-1, lock="py-lock").batch_defer(
        {"n": 2, "label": "b"}, {"n": 3, "label": "b"}
    )
    plain = fail.defer(n=4)
    app.job_manager.cancel_job_by_id(batch[1])
    jm = app.job_manager
    show({
        "ids": [one, *batch, plain],
        "jobs": [dump_job(j) for j in jm.list_jobs()],
        "queues": counts(jm.list_queues()),
        "tasks": counts(jm.list_tasks()),
        "locks": counts(jm.list_locks()),
    })
"#,
    )
    .await;
    let manager = app.job_manager();
    let rust_jobs = manager
        .list_jobs(&JobFilter::default())
        .await
        .expect("list");
    let python_jobs: Vec<Job> = py["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(job_from_python)
        .collect();
    assert_eq!(rust_jobs, python_jobs, "every column as Python sees it");
    let [one, b1, b2, plain] = ids(&py["ids"])[..] else {
        panic!("four ids: {py}")
    };
    let job = manager.get_job(one).await.expect("one");
    assert_eq!(
        (
            job.queue_name.as_str(),
            job.lock.as_deref(),
            job.queueing_lock.as_deref(),
            job.priority,
            job.status,
        ),
        ("pyq", Some("py-lock"), Some("py-qlock"), 4, JobStatus::Todo)
    );
    assert_eq!(job.args, json!({"n": 1, "label": "py"}));
    let delay = job.scheduled_at.expect("scheduled") - Utc::now();
    assert!(
        Duration::minutes(55) < delay && delay <= Duration::hours(1),
        "{delay}"
    );
    assert_eq!(
        manager.get_job_status(b2).await.expect("status"),
        JobStatus::Cancelled
    );
    assert_eq!(manager.get_job(b1).await.expect("b1").priority, -1);
    assert_eq!(
        manager.get_job(plain).await.expect("plain").task_name,
        "tests.fail"
    );

    // Counts: Rust's per-status counts equal Python's.
    let filter = JobFilter::default();
    let rust_counts = [
        (
            "queues",
            manager.list_queues(&filter).await.expect("queues"),
        ),
        ("tasks", manager.list_tasks(&filter).await.expect("tasks")),
        ("locks", manager.list_locks(&filter).await.expect("locks")),
    ];
    for (what, counts) in rust_counts {
        let python_rows = py[what].as_array().expect("rows");
        let python: BTreeMap<String, Value> = python_rows
            .iter()
            .map(|row| (row["name"].as_str().expect("name").to_owned(), row.clone()))
            .collect();
        let names: Vec<&String> = counts.iter().map(|c| &c.name).collect();
        assert_eq!(names, python.keys().collect::<Vec<_>>(), "{what}");
        for c in &counts {
            let row = &python[&c.name];
            assert_eq!(
                Some(c.jobs_count),
                row["jobs_count"].as_i64(),
                "{what} {}",
                c.name
            );
            for status in [
                "todo",
                "doing",
                "succeeded",
                "failed",
                "cancelled",
                "aborted",
            ] {
                let parsed: JobStatus = status.parse().expect("status");
                let count = Some(c.count(parsed));
                assert_eq!(count, row[status].as_i64(), "{what} {} {status}", c.name);
            }
        }
    }
    let locks = manager.list_locks(&filter).await.expect("locks");
    assert_eq!(locks.len(), 1);
    assert_eq!(
        (locks[0].name.as_str(), locks[0].jobs_count),
        ("py-lock", 3)
    );
}

#[tokio::test]
async fn cancel_and_retry_cross_the_language_boundary() {
    let (db, client, app) = setup().await;
    let manager = app.job_manager();
    let fails = app
        .batch_defer([app.configure(Fail { n: 1 }), app.configure(Fail { n: 2 })])
        .await
        .expect("failing jobs");
    run_python_worker(&db).await;
    for id in &fails {
        assert_eq!(
            manager.get_job_status(*id).await.expect("status"),
            JobStatus::Failed
        );
    }
    let (f1, f2) = (fails[0], fails[1]);
    let a = app.defer(rec(1, "a")).await.expect("a");
    let b = app.defer(rec(2, "b")).await.expect("b");
    let c = app
        .configure(rec(3, "c"))
        .with_queue("running")
        .defer()
        .await
        .expect("c");
    let worker: i64 = client
        .query_one("SELECT procrastinate_register_worker_v1()", &[])
        .await
        .expect("register")
        .get(0);
    let fetched: Option<i64> = client
        .query_one(
            "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['running']::varchar[], $1)",
            &[&worker],
        )
        .await
        .expect("fetch")
        .get(0);
    assert_eq!(fetched, Some(c));

    // Rust acts; Python sees it.
    assert!(
        manager
            .cancel_job_by_id(a, false, false)
            .await
            .expect("cancel a")
    );
    assert!(
        manager
            .cancel_job_by_id(c, true, false)
            .await
            .expect("abort c")
    );
    let retry_at = (Utc::now() + Duration::hours(1))
        .with_nanosecond(0)
        .expect("valid");
    let options = RetryDecision {
        retry_at: Some(retry_at),
        priority: Some(3),
        queue: Some("again".into()),
        lock: Some("rust-lock".into()),
    };
    manager
        .retry_job_by_id(f1, options)
        .await
        .expect("retry f1");

    // Python acts on b and f2.
    let body = format!(
        r#"
with app.open():
    jm = app.job_manager
    seen = {{
        "a": jm.get_job_status({a}).value,
        "c": dump_job(jm.list_jobs(id={c})[0]),
        "f1": dump_job(jm.list_jobs(id={f1})[0]),
    }}
    seen["cancel_b"] = jm.cancel_job_by_id({b})
    jm.retry_job_by_id(
        {f2},
        retry_at=datetime.datetime.fromisoformat("{retry_at}"),
        priority=6,
        queue="again2",
        lock="python-lock",
    )
show(seen)
"#,
        retry_at = retry_at.to_rfc3339()
    );
    let seen = python(&db, &body).await;
    assert_eq!(seen["a"], "cancelled");
    let c_seen = job_from_python(&seen["c"]);
    assert_eq!(
        (c_seen.status, c_seen.abort_requested),
        (JobStatus::Doing, true)
    );
    let f1_seen = job_from_python(&seen["f1"]);
    assert_eq!(f1_seen, manager.get_job(f1).await.expect("f1"));
    assert_eq!(
        (
            f1_seen.status,
            f1_seen.priority,
            f1_seen.queue_name.as_str(),
            f1_seen.lock.as_deref(),
            f1_seen.scheduled_at,
            f1_seen.attempts,
        ),
        (
            JobStatus::Todo,
            3,
            "again",
            Some("rust-lock"),
            Some(retry_at),
            2
        )
    );
    assert_eq!(seen["cancel_b"], true);

    // Rust sees what Python did.
    let b_job = manager.get_job(b).await.expect("b");
    assert_eq!(b_job.status, JobStatus::Cancelled);
    let f2_job = manager.get_job(f2).await.expect("f2");
    assert_eq!(
        (
            f2_job.status,
            f2_job.priority,
            f2_job.queue_name.as_str(),
            f2_job.lock.as_deref(),
            f2_job.scheduled_at,
            f2_job.attempts,
        ),
        (
            JobStatus::Todo,
            6,
            "again2",
            Some("python-lock"),
            Some(retry_at),
            2
        )
    );

    // Both sides wrote the same events.
    for id in [a, b] {
        assert_eq!(event_types(&client, id).await, ["deferred", "cancelled"]);
    }
    assert_eq!(
        event_types(&client, c).await,
        ["deferred", "started", "abort_requested"]
    );
    let f1_events = event_types(&client, f1).await;
    assert_eq!(f1_events, event_types(&client, f2).await);
    assert_eq!(&f1_events[..3], ["deferred", "started", "failed"]);
    let mut tail = f1_events[3..].to_vec();
    tail.sort();
    assert_eq!(tail, ["retried", "scheduled"]);
}

#[tokio::test]
async fn a_queueing_lock_held_by_one_language_refuses_the_other() {
    let (db, client, app) = setup().await;
    let held = python(
        &db,
        r#"
with app.open():
    show(record.configure(queueing_lock="shared").defer(n=1, label="python"))
"#,
    )
    .await;
    let held = held.as_i64().expect("id");
    let err = app
        .configure(rec(2, "rust"))
        .with_queueing_lock("shared")
        .defer()
        .await
        .expect_err("Python holds the queueing lock");
    assert!(
        matches!(err, Error::AlreadyEnqueued { ref queueing_lock } if queueing_lock == "shared"),
        "{err:?}"
    );
    assert_eq!(job_count(&client).await, 1);

    let rust_held = app
        .configure(rec(3, "rust"))
        .with_queueing_lock("shared-rs")
        .defer()
        .await
        .expect("Rust holds another");
    let outcome = python(
        &db,
        r#"
import procrastinate.exceptions
with app.open():
    try:
        record.configure(queueing_lock="shared-rs").defer(n=4, label="python")
        show({"raised": None})
    except procrastinate.exceptions.AlreadyEnqueued as e:
        show({"raised": type(e).__name__, "message": str(e)})
"#,
    )
    .await;
    assert_eq!(outcome["raised"], "AlreadyEnqueued", "{outcome}");
    let message = outcome["message"].as_str().expect("message");
    assert!(message.contains("shared-rs"), "{message}");
    assert_eq!(job_count(&client).await, 2);

    // Once the holders run, both languages may queue again.
    run_python_worker(&db).await;
    let ran: Vec<i64> = runs(&client).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ran, [held, rust_held]);
    app.configure(rec(5, "rust"))
        .with_queueing_lock("shared")
        .defer()
        .await
        .expect("the lock is free again");
}

/// Pauses are Postpone's: a Python worker does not know about them and takes a paused
/// queue's jobs (docs/interop.md says so; `postpone queues` too).
#[tokio::test]
async fn a_python_worker_ignores_a_paused_queue() {
    let (db, client, app) = setup().await;
    let id = app.defer(rec(1, "paused")).await.expect("defer");
    let queue = app.job_manager().get_job(id).await.expect("job").queue_name;
    assert!(app.job_manager().pause_queue(&queue).await.expect("pause"));
    run_python_worker(&db).await;
    assert_eq!(runs(&client).await.len(), 1);
    assert_eq!(
        app.job_manager().get_job_status(id).await.expect("status"),
        postpone::JobStatus::Succeeded
    );
}

/// Results are Postpone's: a Rust handle waiting on jobs a Python worker runs sees their
/// ends (by polling: Procrastinate's finish announces nothing) but no result, and no
/// recorded error for a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_waiting_on_a_python_run_job_sees_its_end_without_a_result() {
    let (db, _client, app) = setup().await;
    let poll = std::time::Duration::from_millis(50);
    let ok = app
        .defer_and_track(rec(1, "python"))
        .await
        .expect("defer")
        .with_poll_interval(poll)
        .expect("interval");
    let failed = app
        .defer_and_track(Fail { n: 2 })
        .await
        .expect("defer")
        .with_poll_interval(poll)
        .expect("interval");
    let waits = [ok.clone(), failed.clone()].map(|handle| {
        tokio::spawn(async move { handle.wait(std::time::Duration::from_secs(60)).await })
    });
    // Both waits are registered before the Python worker runs the jobs.
    crate::harness::wait_for(
        "the waits to be registered",
        std::time::Duration::from_secs(20),
        || async { db.count("SELECT count(*) FROM postpone_job_waiters").await == 2 },
    )
    .await;
    run_python_worker(&db).await;
    let [ok_wait, failed_wait] = waits;
    let outcome = ok_wait.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.status, postpone::JobStatus::Succeeded);
    assert_eq!(outcome.result::<Value>().expect("decode"), None);
    let outcome = failed_wait.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.status, postpone::JobStatus::Failed);
    assert_eq!(outcome.error, None);
    assert_eq!(app.job_result::<Value>(ok.id()).await.expect("read"), None);
    // Procrastinate's finish does not know the waiter rows: they stay until the jobs go.
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_waiters").await,
        2
    );
}
