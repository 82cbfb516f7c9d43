//! The worker's local queue (jobs claimed beyond the free slots) against a real database:
//! waiting jobs go back to `todo` on a graceful stop and run again anywhere (Python
//! included) in their order; an abort request ends a waiting job without running it; lock
//! jobs never overlap; `hand_back_jobs` does the same in memory and in PostgreSQL.
//!
//! A worker prefetches only once it knows how long attempts take, so each scenario starts
//! with a quick `warm` job; then a `gate` job holds the only slot while the jobs behind it
//! wait in the local queue, until the test opens the gate.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use postpone::store::FetchJobsParams;
use postpone::store::{DeferJobParams, Store};
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, JobStatus, MemoryStore, Task};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::harness::{Log, TestDb, run_python, schema_db, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

/// What the tasks share: what they saw, and the gate.
#[derive(Debug)]
struct Shared {
    log: Log,
    gate: Semaphore,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            log: Log::default(),
            gate: Semaphore::new(0),
        })
    }
    fn push(&self, event: String) {
        self.log.push(event);
    }
    fn events(&self) -> Vec<String> {
        self.log.events()
    }
    fn open_gate(&self) {
        self.gate.add_permits(1);
    }
}

fn shared(ctx: &JobContext) -> &Shared {
    ctx.additional_context::<Shared>()
        .expect("workers here run with Shared as additional context")
}

/// Records its label (Python's `lq.record` below does the same).
#[derive(Serialize, Deserialize)]
struct Record {
    label: String,
}

impl Task for Record {
    fn name() -> std::borrow::Cow<'static, str> {
        "lq.record".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        shared(&ctx).push(self.label);
        Ok(())
    }
}

/// Holds its slot until the test opens the gate.
#[derive(Serialize, Deserialize)]
struct Gate;

impl Task for Gate {
    fn name() -> std::borrow::Cow<'static, str> {
        "lq.gate".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        shared(&ctx).push("gate".to_owned());
        let permit = shared(&ctx).gate.acquire().await.map_err(TaskError::msg)?;
        permit.forget();
        Ok(())
    }
}

/// Records start and end around a short pause, to see overlaps.
#[derive(Serialize, Deserialize)]
struct Slow {
    label: String,
}

impl Task for Slow {
    fn name() -> std::borrow::Cow<'static, str> {
        "lq.slow".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        shared(&ctx).push(format!("start {}", self.label));
        tokio::time::sleep(Duration::from_millis(3)).await;
        shared(&ctx).push(format!("end {}", self.label));
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Record>()
        .task::<Gate>()
        .task::<Slow>()
        .build()
        .expect("test app builds")
}

fn config(shared: &Arc<Shared>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(shared.clone()),
        fetch_job_polling_interval: Duration::from_millis(100),
        abort_job_polling_interval: Duration::from_millis(100),
        prefetch: Some(50),
        ..WorkerConfig::default()
    }
}

fn record<'a>(app: &'a App, label: &str) -> postpone::Configured<'a> {
    app.configure(Record {
        label: label.to_owned(),
    })
}

async fn events(db: &TestDb, id: i64) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT type::text FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (status, worker_id, attempts) of each job.
async fn rows(app: &App, ids: &[i64]) -> Vec<(JobStatus, Option<i64>, i32)> {
    let mut rows = Vec::new();
    for &id in ids {
        let job = app.job_manager().get_job(id).await.expect("job");
        rows.push((job.status, job.worker_id, job.attempts));
    }
    rows
}

/// Defers `warm`, `gate` and `labels`; starts a worker of concurrency 1 and waits until the
/// gate holds the slot and every job of `labels` waits in the local queue (`doing`, this
/// worker's). Returns the ids of `labels` and the worker.
async fn gate_and_waiting(
    app: &App,
    shared: &Arc<Shared>,
    config: WorkerConfig,
    labels: &[&str],
) -> (Vec<i64>, postpone::WorkerHandle) {
    record(app, "warm").defer().await.expect("defer");
    app.defer(Gate).await.expect("defer");
    let ids = app
        .batch_defer(labels.iter().map(|label| record(app, label)))
        .await
        .expect("defer");
    let handle = app
        .start_worker(config.with_concurrency(1))
        .await
        .expect("worker");
    let worker = handle.worker_id();
    wait_for("the jobs to wait behind the gate", DEADLINE, || async {
        shared.events() == ["warm", "gate"]
            && rows(app, &ids)
                .await
                .iter()
                .all(|row| *row == (JobStatus::Doing, Some(worker), 0))
    })
    .await;
    (ids, handle)
}

#[tokio::test]
async fn waiting_jobs_go_back_to_todo_on_a_graceful_stop_and_run_again_in_order() {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    let labels = ["a", "b", "c", "d", "e"];
    let (ids, handle) = gate_and_waiting(&app, &shared, config(&shared), &labels).await;

    // The stop hands them back at once, while the gate still runs.
    handle.stop();
    wait_for("the waiting jobs to be handed back", DEADLINE, || async {
        rows(&app, &ids)
            .await
            .iter()
            .all(|row| *row == (JobStatus::Todo, None, 0))
    })
    .await;
    assert_eq!(shared.events(), ["warm", "gate"], "none of them ran");
    shared.open_gate();
    handle.join().await.expect("worker stops");
    assert_eq!(
        events(&db, ids[0]).await,
        ["deferred", "started", "deferred_for_retry"]
    );

    // Another worker runs them, in their order, as any todo job.
    app.run_worker(config(&shared).with_concurrency(1).one_shot())
        .await
        .expect("worker");
    assert_eq!(shared.events()[2..], labels.map(str::to_owned));
    for (status, _, attempts) in rows(&app, &ids).await {
        assert_eq!((status, attempts), (JobStatus::Succeeded, 1));
    }
    assert_eq!(
        events(&db, ids[0]).await,
        [
            "deferred",
            "started",
            "deferred_for_retry",
            "started",
            "succeeded"
        ]
    );
}

#[tokio::test]
async fn python_sees_handed_back_jobs_as_todo_jobs_and_runs_them() {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    let labels = ["p1", "p2", "p3"];
    let (ids, handle) = gate_and_waiting(&app, &shared, config(&shared), &labels).await;
    handle.stop();
    wait_for("the waiting jobs to be handed back", DEADLINE, || async {
        rows(&app, &ids)
            .await
            .iter()
            .all(|row| row.0 == JobStatus::Todo)
    })
    .await;
    // While the gate still runs on the live worker: nothing looks stalled to Procrastinate.
    let stalled = python(
        &db,
        "async def main():\n    async with app.open_async():\n        jobs = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=60)\n        return [j.id for j in jobs]\nshow(asyncio.run(main()))",
    )
    .await;
    assert_eq!(stalled, json!([]));
    shared.open_gate();
    handle.join().await.expect("worker stops");

    let ran = python(
        &db,
        "app.run_worker(wait=False, concurrency=1, install_signal_handlers=False)\nshow(RAN)",
    )
    .await;
    assert_eq!(ran, json!(labels));
    for (status, _, attempts) in rows(&app, &ids).await {
        assert_eq!((status, attempts), (JobStatus::Succeeded, 1));
    }
}

/// Runs `body` after a Procrastinate app with an `lq.record` task that appends its label to
/// `RAN`; `show(value)` prints the JSON result.
async fn python(db: &TestDb, body: &str) -> Value {
    let script = format!(
        "import asyncio, json, os\nimport procrastinate\napp = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ['DATABASE_URL']))\nRAN = []\n@app.task(name='lq.record')\ndef record(label):\n    RAN.append(label)\ndef show(value):\n    print(json.dumps(value))\n{body}\n"
    );
    let stdout = run_python(db, &script).await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("Python printed no JSON result ({e}); stdout:\n{stdout}"))
}

async fn abort_a_waiting_job(listen_notify: bool) {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    let config = WorkerConfig {
        listen_notify,
        ..config(&shared)
    };
    let (ids, handle) = gate_and_waiting(&app, &shared, config, &["x", "y", "z"]).await;
    let manager = app.job_manager();
    assert!(
        manager
            .cancel_job_by_id(ids[1], true, false)
            .await
            .expect("abort")
    );
    // It ends while the gate still holds the only slot: it never needed one.
    wait_for("the waiting job to be aborted", DEADLINE, || async {
        manager.get_job_status(ids[1]).await.expect("status") == JobStatus::Aborted
    })
    .await;
    assert_eq!(shared.events(), ["warm", "gate"]);
    shared.open_gate();
    wait_for("the others to run", DEADLINE, || async {
        shared.events().len() == 4
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(shared.events(), ["warm", "gate", "x", "z"]);
    let job = manager.get_job(ids[1]).await.expect("job");
    assert!(!job.abort_requested, "finishing clears abort_requested");
    assert_eq!(
        events(&db, ids[1]).await,
        ["deferred", "started", "abort_requested", "aborted"]
    );
}

#[tokio::test]
async fn an_abort_request_ends_a_waiting_job_without_running_it_through_notify() {
    abort_a_waiting_job(true).await;
}

#[tokio::test]
async fn an_abort_request_ends_a_waiting_job_without_running_it_by_polling() {
    abort_a_waiting_job(false).await;
}

#[tokio::test]
async fn a_waiting_job_whose_queueing_lock_was_taken_runs_before_the_worker_stops() {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    record(&app, "warm").defer().await.expect("defer");
    app.defer(Gate).await.expect("defer");
    let first = record(&app, "first")
        .with_queueing_lock("once")
        .defer()
        .await
        .expect("defer");
    let plain = record(&app, "plain").defer().await.expect("defer");
    let handle = app
        .start_worker(config(&shared).with_concurrency(1))
        .await
        .expect("worker");
    wait_for("the jobs to wait behind the gate", DEADLINE, || async {
        shared.events() == ["warm", "gate"]
            && rows(&app, &[first, plain])
                .await
                .iter()
                .all(|row| row.0 == JobStatus::Doing)
    })
    .await;
    // Its queueing lock is free while it is doing: another job takes it. That job is due
    // later, so the worker cannot claim it too before the stop (it would then hand back
    // `first`, the lower id, and keep this one).
    let second = record(&app, "second")
        .with_queueing_lock("once")
        .schedule_in(Duration::from_secs(3600))
        .defer()
        .await
        .expect("defer");
    handle.stop();
    wait_for("the plain job to be handed back", DEADLINE, || async {
        app.job_manager()
            .get_job_status(plain)
            .await
            .expect("status")
            == JobStatus::Todo
    })
    .await;
    assert_eq!(
        app.job_manager()
            .get_job_status(first)
            .await
            .expect("status"),
        JobStatus::Doing,
        "it cannot go back: it waits for the slot"
    );
    shared.open_gate();
    handle.join().await.expect("worker stops");
    assert_eq!(shared.events(), ["warm", "gate", "first"]);
    let rows = rows(&app, &[first, second, plain]).await;
    assert_eq!(rows[0].0, JobStatus::Succeeded);
    assert_eq!(rows[1], (JobStatus::Todo, None, 0));
    assert_eq!(rows[2], (JobStatus::Todo, None, 0));
}

#[tokio::test]
async fn lock_jobs_from_the_local_queue_never_overlap_and_keep_their_order() {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    record(&app, "warm").defer().await.expect("defer");
    let mut jobs = Vec::new();
    for i in 0..5 {
        for lock in ["L", "M", "N"] {
            jobs.push(
                app.configure(Slow {
                    label: format!("{lock}{i}"),
                })
                .with_lock(lock),
            );
        }
        jobs.push(app.configure(Slow {
            label: format!("free{i}"),
        }));
    }
    app.batch_defer(jobs).await.expect("defer");
    let handle = app
        .start_worker(config(&shared).with_concurrency(4))
        .await
        .expect("worker");
    let stats = handle.stats();
    wait_for("every job to run", DEADLINE, || async {
        stats.completed() == 21
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let seen = shared.events();
    for lock in ["L", "M", "N"] {
        let locked: Vec<&String> = seen
            .iter()
            .filter(|e| e.contains(&format!(" {lock}")))
            .collect();
        let expected: Vec<String> = (0..5)
            .flat_map(|i| [format!("start {lock}{i}"), format!("end {lock}{i}")])
            .collect();
        assert_eq!(locked, expected.iter().collect::<Vec<_>>(), "lock {lock}");
    }
}

/// `hand_back_jobs` on a store: what it returns, and each job's row and events.
async fn hand_back_scenario(
    store: &Arc<dyn Store>,
    events: impl AsyncFn(i64) -> Vec<String>,
) -> Vec<String> {
    let spec = |label: &str, queueing_lock: Option<&str>| DeferJobParams {
        queue_name: "q".to_owned(),
        task_name: "lq.record".to_owned(),
        priority: 0,
        lock: None,
        queueing_lock: queueing_lock.map(str::to_owned),
        args: json!({ "label": label }),
        scheduled_at: None,
        timeout: None,
        trace_context: None,
        flow: Vec::new(),
    };
    let mut past = spec("scheduled", None);
    past.scheduled_at = Some(Utc::now() - chrono::TimeDelta::seconds(60));
    let ids = store
        .defer_jobs(&[
            spec("plain", None),
            past,
            spec("qlock", Some("x")),
            spec("aborted", None),
            spec("shared-qlock-1", Some("y")),
            spec("other worker", None),
        ])
        .await
        .expect("defer");
    let me = store.register_worker().await.expect("register");
    let other = store.register_worker().await.expect("register");
    let mine = store
        .fetch_jobs(&FetchJobsParams::new(None, me, 5))
        .await
        .expect("fetch");
    assert_eq!(mine.len(), 5);
    let shared_qlock_2 = store
        .defer_jobs(&[spec("shared-qlock-2", Some("y"))])
        .await
        .expect("defer")[0];
    let theirs = store
        .fetch_jobs(&FetchJobsParams::new(None, other, 1))
        .await
        .expect("fetch");
    assert_eq!(theirs.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[5]]);
    let mine_too = store
        .fetch_jobs(&FetchJobsParams::new(None, me, 1))
        .await
        .expect("fetch");
    assert_eq!(
        mine_too.iter().map(|j| j.id).collect::<Vec<_>>(),
        [shared_qlock_2]
    );
    // The queueing lock "x" is free while its job is doing: another todo job takes it.
    store
        .defer_jobs(&[spec("qlock again", Some("x"))])
        .await
        .expect("defer");
    store.cancel_job(ids[3], true, false).await.expect("abort");

    let mut asked = ids.clone();
    asked.push(shared_qlock_2);
    asked.push(999_999);
    let handed = store.hand_back_jobs(me, &asked).await.expect("hand back");
    let mut seen = vec![format!("{handed:?}")];
    for &id in &asked[..7] {
        let job = store.get_job(id).await.expect("get").expect("job exists");
        seen.push(format!(
            "{id}: {} worker {:?} attempts {} events {:?}",
            job.status,
            job.worker_id.map(|w| if w == me { "me" } else { "other" }),
            job.attempts,
            events(id).await
        ));
    }
    let again = store.hand_back_jobs(me, &asked).await.expect("hand back");
    seen.push(format!("again {again:?}"));
    seen
}

#[tokio::test]
async fn hand_back_jobs_is_the_same_in_memory_and_in_postgresql() {
    let db = schema_db().await;
    let pg = app(&db).store().clone();
    let client = db.client().await;
    let pg_seen = hand_back_scenario(&pg, async |id| {
        client
            .query(
                "SELECT type::text FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .expect("events")
            .iter()
            .map(|r| r.get(0))
            .collect()
    })
    .await;
    let memory = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(memory.clone());
    let memory_seen = hand_back_scenario(&store, async |id| {
        memory
            .events(id)
            .iter()
            .map(|e| e.event_type.as_str().to_owned())
            .collect()
    })
    .await;
    assert_eq!(
        memory_seen, pg_seen,
        "the in-memory store differs from PostgreSQL"
    );
    assert_eq!(
        pg_seen[0],
        "HandedBack { todo: [1, 2, 5], abort_requested: [4], queueing_lock_taken: [3, 7] }"
    );
    assert_eq!(
        pg_seen[2],
        "2: todo worker None attempts 0 events [\"scheduled\", \"deferred\", \"started\", \"scheduled\", \"deferred_for_retry\"]"
    );
    assert_eq!(
        pg_seen[8],
        "again HandedBack { todo: [], abort_requested: [4], queueing_lock_taken: [3, 7] }"
    );
}

#[tokio::test]
async fn stopping_and_starting_workers_in_a_loop_runs_every_job_exactly_once() {
    let db = schema_db().await;
    let app = app(&db);
    let shared = Shared::new();
    let total = 600;
    let ids = app
        .batch_defer((0..total).map(|i| record(&app, &format!("{i}"))))
        .await
        .expect("defer");
    let manager = app.job_manager();
    let succeeded = || async {
        manager
            .list_jobs(&postpone::JobFilter {
                status: Some(JobStatus::Succeeded),
                ..postpone::JobFilter::default()
            })
            .await
            .expect("list")
            .len()
    };
    let mut rounds = 0;
    while succeeded().await < total {
        rounds += 1;
        assert!(rounds < 200, "{rounds} rounds and the jobs are not done");
        let handle = app
            .start_worker(config(&shared).with_concurrency(3))
            .await
            .expect("worker");
        let stats = handle.stats();
        // Stop while jobs run and others wait in the local queue.
        wait_for("a few jobs to run", DEADLINE, || async {
            stats.completed() >= 20 || succeeded().await == total
        })
        .await;
        handle.stop();
        handle.join().await.expect("worker stops");
    }
    assert!(rounds > 1, "the loop stopped workers with jobs left");
    let handed_back: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred_for_retry'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(handed_back > 0, "some stops found jobs waiting");
    let mut seen = shared.events();
    assert_eq!(seen.len(), total, "no job ran twice");
    seen.sort_by_key(|label| label.parse::<usize>().unwrap_or(usize::MAX));
    assert_eq!(seen, (0..total).map(|i| i.to_string()).collect::<Vec<_>>());
    for (status, _, attempts) in rows(&app, &ids).await {
        assert_eq!((status, attempts), (JobStatus::Succeeded, 1));
    }
}

#[tokio::test]
async fn handed_back_jobs_wake_an_idle_listening_worker() {
    let db = schema_db().await;
    let app = app(&db);
    let first = Shared::new();
    let (ids, handle) = gate_and_waiting(&app, &first, config(&first), &["j1", "j2"]).await;
    // A second worker with nothing to do, which would not poll for an hour.
    let second = Shared::new();
    let idle = app
        .start_worker(WorkerConfig {
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..config(&second).with_concurrency(1)
        })
        .await
        .expect("worker");
    let stats = idle.stats();
    wait_for("the idle worker to fetch once and listen", DEADLINE, || async {
        let listening: i64 = db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        stats.fetches() >= 1 && listening >= 2
    })
    .await;
    handle.stop();
    wait_for(
        "the idle worker to run the handed-back jobs",
        DEADLINE,
        || async { second.events() == ["j1", "j2"] },
    )
    .await;
    first.open_gate();
    handle.join().await.expect("worker stops");
    idle.stop();
    idle.join().await.expect("worker stops");
    for (status, _, attempts) in rows(&app, &ids).await {
        assert_eq!((status, attempts), (JobStatus::Succeeded, 1));
    }
}
