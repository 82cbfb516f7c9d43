//! The worker against a real database: order, locks, queues, retries, failures, abort,
//! shutdown and delete policies. Each test defers jobs, runs an in-process worker, and
//! checks both what the tasks saw and what the database says.

use std::sync::Arc;
use std::time::Duration;

use postpone::middleware::Next;
use postpone::task::{AbortReason, JobContext, TaskError};
use postpone::worker::{DeleteJobs, WorkerConfig};
use postpone::{App, JobStatus, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::harness::{Log, Record, TestDb, schema_db, wait_for, wait_for_listener};

const DEADLINE: Duration = Duration::from_secs(20);

/// Records start and end around a short pause, to see overlaps.
#[derive(Serialize, Deserialize)]
struct Slow {
    label: String,
    millis: u64,
}

impl Task for Slow {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.slow".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("start {}", self.label));
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Log::of(&ctx).push(format!("end {}", self.label));
        Ok(())
    }
}

/// Always fails; retried twice.
#[derive(Serialize, Deserialize)]
struct Flaky;

impl Task for Flaky {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.flaky".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("attempt {}", ctx.job().attempts));
        Err(TaskError::new("Boom", "always fails"))
    }
}

/// Panics.
#[derive(Serialize, Deserialize)]
struct Panics;

impl Task for Panics {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.panics".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        panic!("the task blew up")
    }
}

/// Waits until aborted (async: cancelled at its await point).
#[derive(Serialize, Deserialize)]
struct Forever;

impl Task for Forever {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.forever".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("started".to_owned());
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Waits forever, with a retry policy: a shutdown abort sends it back to the queue.
#[derive(Serialize, Deserialize)]
struct ForeverRetried;

impl Task for ForeverRetried {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.forever_retried".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(3))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("started".to_owned());
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Fails; a custom decision moves it to another queue, priority and lock on its first
/// failure, and lets it fail for good on the second.
#[derive(Serialize, Deserialize)]
struct Moved;

impl Task for Moved {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.moved".into()
    }
    fn config() -> TaskConfig {
        let decide = |job: &postpone::Job, error: &TaskError| {
            (job.attempts == 0 && error.kind() == "Busy").then(|| {
                postpone::retry::RetryDecision::retry_in(Duration::ZERO)
                    .with_queue("elsewhere")
                    .with_priority(7)
                    .with_lock("moved-lock")
            })
        };
        TaskConfig::default().with_retry(postpone::retry::Retry::Custom(Arc::new(decide)))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!(
            "attempt {} on {}",
            ctx.job().attempts,
            ctx.job().queue_name
        ));
        Err(TaskError::new("Busy", "try elsewhere"))
    }
}

/// Polls `should_abort` and reports the reason it saw.
#[derive(Serialize, Deserialize)]
struct Polling;

impl Task for Polling {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.polling".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("started".to_owned());
        let seen = ctx.clone();
        // Blocking work is not at an await point: it polls, and reports what it saw
        // (the async wrapper around it is cancelled when the abort comes).
        tokio::task::spawn_blocking(move || {
            while !seen.should_abort() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Log::of(&seen).push(format!("reason {:?}", seen.abort_reason()));
        })
        .await
        .map_err(TaskError::msg)?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Task for Add {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.add".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("{}", self.a + self.b));
        Ok(())
    }
}

/// Runs inside a task-level middleware.
#[derive(Serialize, Deserialize)]
struct Wrapped;

impl Task for Wrapped {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.wrapped".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_middleware(Arc::new(|ctx: JobContext, next: Next| async move {
            Log::of(&ctx).push("task before".to_owned());
            let result = next.await;
            Log::of(&ctx).push("task after".to_owned());
            result
        }))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("run".to_owned());
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Record>()
        .task::<Slow>()
        .task::<Flaky>()
        .task::<Panics>()
        .task::<Forever>()
        .task::<Polling>()
        .task::<Add>()
        .task::<Wrapped>()
        .task::<ForeverRetried>()
        .task::<Moved>()
        .build()
        .expect("test app builds")
}

fn config(log: &Arc<Log>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(log.clone()),
        fetch_job_polling_interval: Duration::from_millis(100),
        abort_job_polling_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

async fn status(app: &App, id: i64) -> JobStatus {
    app.job_manager()
        .get_job_status(id)
        .await
        .expect("job status")
}

async fn events(db: &TestDb, id: i64) -> Vec<String> {
    let client = db.client().await;
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
}

#[tokio::test]
async fn one_shot_worker_runs_every_job_once_and_records_the_contract_events() {
    let db = schema_db().await;
    let app = app(&db);
    let ids = app
        .batch_defer((0..50).map(|i| {
            app.configure(Record {
                label: format!("{i}"),
            })
        }))
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).with_concurrency(7).one_shot())
        .await
        .expect("worker");
    let mut seen = log.events();
    seen.sort_by_key(|s| s.parse::<i32>().unwrap_or(-1));
    assert_eq!(seen, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    for id in [ids[0], ids[49]] {
        let job = app.job_manager().get_job(id).await.expect("job");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.attempts, 1);
        assert_eq!(events(&db, id).await, ["deferred", "started", "succeeded"]);
    }
    let client = db.client().await;
    let workers: i64 = client
        .query_one("SELECT count(*) FROM procrastinate_workers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(workers, 0, "the worker unregisters when it stops");
}

#[tokio::test]
async fn jobs_run_by_priority_then_id() {
    let db = schema_db().await;
    let app = app(&db);
    for (label, priority) in [("low", -1), ("a", 0), ("high", 5), ("b", 0), ("top", 9)] {
        app.configure(Record {
            label: label.to_owned(),
        })
        .with_priority(priority)
        .defer()
        .await
        .expect("defer");
    }
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    assert_eq!(log.events(), ["top", "high", "a", "b", "low"]);
}

#[tokio::test]
async fn a_worker_takes_only_its_queues_and_future_jobs_wait() {
    let db = schema_db().await;
    let app = app(&db);
    for queue in ["a", "b", "c"] {
        app.configure(Record {
            label: queue.to_owned(),
        })
        .with_queue(queue)
        .defer()
        .await
        .expect("defer");
    }
    let later = app
        .configure(Record {
            label: "later".to_owned(),
        })
        .with_queue("a")
        .schedule_in(Duration::from_secs(3600))
        .defer()
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).with_queues(["a", "c"]).one_shot())
        .await
        .expect("worker");
    let mut seen = log.events();
    seen.sort();
    assert_eq!(seen, ["a", "c"]);
    assert_eq!(status(&app, later).await, JobStatus::Todo);
}

#[tokio::test]
async fn jobs_sharing_a_lock_never_overlap_and_keep_their_order() {
    let db = schema_db().await;
    let app = app(&db);
    for i in 0..6 {
        app.configure(Slow {
            label: format!("L{i}"),
            millis: 20,
        })
        .with_lock("the-lock")
        .defer()
        .await
        .expect("defer");
    }
    app.configure(Slow {
        label: "free".to_owned(),
        millis: 20,
    })
    .defer()
    .await
    .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(config(&log).with_concurrency(5))
        .await
        .expect("worker");
    let manager = app.job_manager();
    wait_for("every job to succeed", DEADLINE, || async {
        let jobs = manager
            .list_jobs(&postpone::JobFilter::default())
            .await
            .expect("list");
        jobs.iter().all(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let locked: Vec<String> = log
        .events()
        .into_iter()
        .filter(|e| e.contains(" L"))
        .collect();
    let expected: Vec<String> = (0..6)
        .flat_map(|i| [format!("start L{i}"), format!("end L{i}")])
        .collect();
    assert_eq!(
        locked, expected,
        "same-lock jobs ran one at a time, in id order"
    );
}

#[tokio::test]
async fn failures_are_retried_by_the_strategy_then_fail() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Flaky).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    let manager = app.job_manager();
    wait_for("the job to fail for good", DEADLINE, || async {
        manager.get_job_status(id).await.expect("status") == JobStatus::Failed
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(log.events(), ["attempt 0", "attempt 1", "attempt 2"]);
    let job = manager.get_job(id).await.expect("job");
    assert_eq!(job.attempts, 3);
    assert_eq!(
        events(&db, id).await,
        [
            "deferred",
            "started",
            // Triggers fire in name order: scheduled_events before status_events.
            "scheduled",
            "deferred_for_retry",
            "started",
            "scheduled",
            "deferred_for_retry",
            "started",
            "failed"
        ]
    );
}

#[tokio::test]
async fn panics_unknown_tasks_and_bad_args_fail_the_job_not_the_worker() {
    let db = schema_db().await;
    let app = app(&db);
    let panics = app.defer(Panics).await.expect("defer");
    let unknown = app
        .configure_by_name("tests.nobody", serde_json::json!({}))
        .allow_unknown()
        .defer()
        .await
        .expect("defer");
    let bad_args = app
        .configure_by_name("tests.nobody", serde_json::json!({"a": "x"}))
        .allow_unknown()
        .defer()
        .await
        .expect("defer");
    // Rename the last job to a known task whose args it does not fit.
    db.client()
        .await
        .execute(
            "UPDATE procrastinate_jobs SET task_name = 'tests.add' WHERE id = $1",
            &[&bad_args],
        )
        .await
        .expect("update");
    let after = app.defer(Add { a: 2, b: 3 }).await.expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    for id in [panics, unknown, bad_args] {
        assert_eq!(status(&app, id).await, JobStatus::Failed, "job {id}");
    }
    assert_eq!(status(&app, after).await, JobStatus::Succeeded);
    assert_eq!(log.events(), ["5"]);
}

async fn abort_a_running_job(listen_notify: bool) {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Forever).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            listen_notify,
            ..config(&log)
        })
        .await
        .expect("worker");
    let manager = app.job_manager();
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["started"]
    })
    .await;
    assert!(
        manager
            .cancel_job_by_id(id, true, false)
            .await
            .expect("abort")
    );
    wait_for("the job to be aborted", DEADLINE, || async {
        manager.get_job_status(id).await.expect("status") == JobStatus::Aborted
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let job = manager.get_job(id).await.expect("job");
    assert!(!job.abort_requested, "finishing clears abort_requested");
    assert_eq!(
        events(&db, id).await,
        ["deferred", "started", "abort_requested", "aborted"]
    );
}

#[tokio::test]
async fn abort_reaches_a_running_job_through_notify() {
    abort_a_running_job(true).await;
}

#[tokio::test]
async fn abort_reaches_a_running_job_by_polling() {
    abort_a_running_job(false).await;
}

#[tokio::test]
async fn graceful_stop_waits_for_running_jobs() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app
        .defer(Slow {
            label: "s".to_owned(),
            millis: 300,
        })
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["start s"]
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(log.events(), ["start s", "end s"]);
    assert_eq!(status(&app, id).await, JobStatus::Succeeded);
}

#[tokio::test]
async fn graceful_timeout_aborts_with_reason_shutdown() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Polling).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            shutdown_graceful_timeout: Some(Duration::from_millis(100)),
            ..config(&log)
        })
        .await
        .expect("worker");
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["started"]
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(status(&app, id).await, JobStatus::Aborted);
    wait_for("the task to see the reason", DEADLINE, || async {
        log.events()
            .contains(&format!("reason {:?}", Some(AbortReason::Shutdown)))
    })
    .await;
}

#[tokio::test]
async fn forced_stop_aborts_at_once() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Forever).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["started"]
    })
    .await;
    handle.abort();
    handle.join().await.expect("worker stops");
    assert_eq!(status(&app, id).await, JobStatus::Aborted);
}

#[tokio::test]
async fn delete_jobs_policies() {
    for (policy, kept_ok, kept_failed) in [
        (DeleteJobs::Never, true, true),
        (DeleteJobs::Successful, false, true),
        (DeleteJobs::Always, false, false),
    ] {
        let db = schema_db().await;
        let app = app(&db);
        let ok = app
            .defer(Record {
                label: "ok".to_owned(),
            })
            .await
            .expect("defer");
        let failed = app.defer(Panics).await.expect("defer");
        let log = Arc::new(Log::default());
        app.run_worker(WorkerConfig {
            delete_jobs: policy,
            ..config(&log).one_shot()
        })
        .await
        .expect("worker");
        let manager = app.job_manager();
        assert_eq!(manager.get_job(ok).await.is_ok(), kept_ok, "{policy:?}");
        assert_eq!(
            manager.get_job(failed).await.is_ok(),
            kept_failed,
            "{policy:?}"
        );
    }
}

#[tokio::test]
async fn notify_wakes_an_idle_worker() {
    let db = schema_db().await;
    let app = app(&db);
    let log = Arc::new(Log::default());
    // Polling alone would take an hour: only NOTIFY can wake it.
    let handle = app
        .start_worker(WorkerConfig {
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..config(&log)
        })
        .await
        .expect("worker");
    // Let the listener connect before deferring.
    wait_for_listener(&db).await;
    app.defer(Record {
        label: "woken".to_owned(),
    })
    .await
    .expect("defer");
    wait_for("the job to run", DEADLINE, || async {
        log.events() == ["woken"]
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
}

#[tokio::test]
async fn bad_settings_start_nothing() {
    let db = schema_db().await;
    let app = app(&db);
    let err = app
        .start_worker(WorkerConfig::default().with_concurrency(0))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("concurrency is 0"), "{err}");
    let workers: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM procrastinate_workers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(workers, 0);
}

#[tokio::test]
async fn worker_middleware_wraps_task_middleware_which_wraps_the_task() {
    let db = schema_db().await;
    let app = app(&db);
    app.defer(Wrapped).await.expect("defer");
    let failing = app.defer(Panics).await.expect("defer");
    let seen = Arc::new(Log::default());
    let worker_mw = |ctx: JobContext, next: Next| async move {
        Log::of(&ctx).push(format!("worker before {}", ctx.job().task_name));
        let result = next.await;
        Log::of(&ctx).push(format!("worker after ok={}", result.is_ok()));
        result
    };
    app.run_worker(WorkerConfig {
        middleware: vec![Arc::new(worker_mw)],
        ..config(&seen).one_shot()
    })
    .await
    .expect("worker");
    assert_eq!(
        seen.events(),
        [
            "worker before tests.wrapped",
            "task before",
            "run",
            "task after",
            "worker after ok=true",
            "worker before tests.panics",
        ]
    );
    // A panic inside the layers still fails the job, and the worker goes on.
    assert_eq!(status(&app, failing).await, JobStatus::Failed);
}

#[tokio::test]
async fn a_worker_pruned_as_stalled_registers_again_and_goes_on() {
    let db = schema_db().await;
    let app = app(&db);
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    let first_id = handle.worker_id();
    // Another worker decided this one was stalled and pruned its row.
    let client = db.client().await;
    client
        .execute(
            "DELETE FROM procrastinate_workers WHERE id = $1",
            &[&first_id],
        )
        .await
        .expect("prune");
    let id = app
        .defer(Record {
            label: "after prune".to_owned(),
        })
        .await
        .expect("defer");
    wait_for("the job to run", DEADLINE, || async {
        log.events() == ["after prune"]
    })
    .await;
    let new_id = handle.worker_id();
    assert_ne!(new_id, first_id);
    let job = app.job_manager().get_job(id).await.expect("job");
    assert_eq!(job.worker_id, Some(new_id));
    handle.stop();
    handle.join().await.expect("worker stops");
    let workers: i64 = client
        .query_one("SELECT count(*) FROM procrastinate_workers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(workers, 0, "the new registration is removed at stop");
}

#[tokio::test]
async fn a_burst_of_notifications_costs_a_few_fetches_not_one_each() {
    let db = schema_db().await;
    let app = app(&db);
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..config(&log).with_concurrency(50)
        })
        .await
        .expect("worker");
    wait_for_listener(&db).await;
    let stats = handle.stats();
    let before = stats.fetches();
    // One commit: 500 job_inserted notifications reach the worker at once.
    app.batch_defer((0..500).map(|i| {
        app.configure(Record {
            label: format!("{i}"),
        })
    }))
    .await
    .expect("defer");
    wait_for("every job to run", DEADLINE, || async {
        stats.completed() == 500
    })
    .await;
    let fetches = stats.fetches() - before;
    handle.stop();
    handle.join().await.expect("worker stops");
    // 500 jobs at 50 slots and a local queue of up to 100 need at least 4 fetches;
    // coalesced wake-ups add a few more, never one per notification.
    assert!(
        (4..=60).contains(&fetches),
        "{fetches} fetches for 500 notifications"
    );
}

#[tokio::test]
async fn a_custom_retry_decision_moves_the_job() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Moved).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    let manager = app.job_manager();
    wait_for("the job to fail for good", DEADLINE, || async {
        manager.get_job_status(id).await.expect("status") == JobStatus::Failed
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(
        log.events(),
        ["attempt 0 on default", "attempt 1 on elsewhere"]
    );
    let job = manager.get_job(id).await.expect("job");
    assert_eq!(
        (
            job.queue_name.as_str(),
            job.priority,
            job.lock.as_deref(),
            job.attempts
        ),
        ("elsewhere", 7, Some("moved-lock"), 2)
    );
}

#[tokio::test]
async fn a_shutdown_abort_is_retried_when_the_task_allows_it() {
    let db = schema_db().await;
    let app = app(&db);
    let retried = app.defer(ForeverRetried).await.expect("defer");
    let aborted = app.defer(Forever).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            shutdown_graceful_timeout: Some(Duration::from_millis(100)),
            ..config(&log).with_concurrency(2)
        })
        .await
        .expect("worker");
    wait_for("both jobs to start", DEADLINE, || async {
        log.events().len() == 2
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let manager = app.job_manager();
    // Procrastinate's rule: an abort caused by shutdown is retried if the task's policy
    // allows it; one without a policy ends aborted.
    let job = manager.get_job(retried).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Todo, 1));
    assert_eq!(status(&app, aborted).await, JobStatus::Aborted);
}

#[tokio::test]
async fn asynchronous_commit_runs_jobs_on_its_own_connections() {
    let db = schema_db().await;
    let app = app(&db);
    let ids = app
        .batch_defer((0..20).map(|i| {
            app.configure(Record {
                label: format!("{i}"),
            })
        }))
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(WorkerConfig {
        asynchronous_commit: true,
        ..config(&log).with_concurrency(4).one_shot()
    })
    .await
    .expect("worker");
    assert_eq!(log.events().len(), 20);
    for &id in &ids {
        assert_eq!(status(&app, id).await, JobStatus::Succeeded);
    }
    assert_eq!(
        events(&db, ids[0]).await,
        ["deferred", "started", "succeeded"]
    );
}

/// An outcome the database refuses to take (the job was moved on by someone else while it
/// ran) is left as it is and not counted in the worker's stats.
#[tokio::test]
async fn outcomes_not_written_are_not_counted() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app
        .defer(Slow {
            label: "s".to_owned(),
            millis: 300,
        })
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["start s"]
    })
    .await;
    // An admin fails it by hand while it runs.
    db.client()
        .await
        .execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("fail the job by hand");
    wait_for("the job to end", DEADLINE, || async {
        log.events().len() == 2
    })
    .await;
    let stats = handle.stats();
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(status(&app, id).await, JobStatus::Failed, "left as it was");
    assert_eq!((stats.succeeded(), stats.failed()), (0, 0));
}
