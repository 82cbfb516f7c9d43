//! Task timeouts against a real database: a task's timeout, a defer call's that overrides
//! it either way, the worker's default, retries by the strategy, what polling code sees,
//! periodic registrations, and bad values refused before anything is written.

use std::sync::Arc;
use std::time::Duration;

use postpone::retry::RetryStrategy;
use postpone::task::{AbortReason, JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Error, JobStatus, Periodic, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::harness::{Log, TestDb, schema_db, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

/// Sleeps (async), with a 150 ms timeout of its task; a timeout is retried once, any
/// other error is not.
#[derive(Serialize, Deserialize)]
struct Limited {
    millis: u64,
}

impl Task for Limited {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.limited".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_timeout(Duration::from_millis(150))
            .with_retry(RetryStrategy::max_attempts(1).with_retry_on(["Timeout"]))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("start {}", ctx.job().attempts));
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Log::of(&ctx).push(format!("end {}", ctx.job().attempts));
        Ok(())
    }
}

/// Sleeps (async), no timeout of its own, no retry.
#[derive(Serialize, Deserialize)]
struct Unlimited {
    millis: u64,
}

impl Task for Unlimited {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.unlimited".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("start".to_owned());
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        Log::of(&ctx).push("end".to_owned());
        Ok(())
    }
}

/// Blocking work with a 150 ms timeout: polls `should_abort` and reports the reason.
#[derive(Serialize, Deserialize)]
struct Blocking;

impl Task for Blocking {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.blocking".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_timeout(Duration::from_millis(150))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let seen = ctx.clone();
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

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Limited>()
        .task::<Unlimited>()
        .task::<Blocking>()
        .build()
        .expect("test app builds")
}

fn config(log: &Arc<Log>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(log.clone()),
        fetch_job_polling_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

/// Runs a worker until every job in `ids` has left todo/doing; returns the statuses.
async fn work_off(app: &App, config: WorkerConfig, ids: &[i64]) -> Vec<JobStatus> {
    let handle = app.start_worker(config).await.expect("worker");
    let manager = app.job_manager();
    wait_for("every job to end", DEADLINE, || async {
        for id in ids {
            let status = manager.get_job_status(*id).await.expect("status");
            if matches!(status, JobStatus::Todo | JobStatus::Doing) {
                return false;
            }
        }
        true
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let mut statuses = Vec::new();
    for id in ids {
        statuses.push(manager.get_job_status(*id).await.expect("status"));
    }
    statuses
}

async fn attempts(app: &App, id: i64) -> i32 {
    app.job_manager().get_job(id).await.expect("job").attempts
}

#[tokio::test]
async fn a_tasks_timeout_fails_the_attempt_with_kind_timeout_and_the_strategy_retries_it() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Limited { millis: 60_000 }).await.expect("defer");
    let log = Arc::new(Log::default());
    assert_eq!(
        work_off(&app, config(&log), &[id]).await,
        [JobStatus::Failed]
    );
    // Retried because the error kind is "Timeout" (the strategy retries nothing else);
    // each attempt was cut short.
    assert_eq!(log.events(), ["start 0", "start 1"]);
    assert_eq!(attempts(&app, id).await, 2);
}

#[tokio::test]
async fn a_defer_calls_timeout_overrides_the_tasks_both_ways() {
    let db = schema_db().await;
    let app = app(&db);
    // Longer than the task's 150 ms: a 400 ms job succeeds.
    let longer = app
        .configure(Limited { millis: 400 })
        .with_timeout(Duration::from_secs(30))
        .defer()
        .await
        .expect("defer");
    // Shorter than the worker's default: it is cut at 100 ms.
    let shorter = app
        .configure(Unlimited { millis: 60_000 })
        .with_timeout(Duration::from_millis(100))
        .defer()
        .await
        .expect("defer");
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT timeout_ms FROM postpone_job_timeouts WHERE job_id = $1",
            &[&shorter],
        )
        .await
        .expect("the defer call's timeout is stored")
        .get(0);
    assert_eq!(stored, 100);
    let log = Arc::new(Log::default());
    let statuses = work_off(
        &app,
        WorkerConfig {
            task_timeout: Some(Duration::from_secs(60)),
            ..config(&log)
        },
        &[longer, shorter],
    )
    .await;
    assert_eq!(statuses, [JobStatus::Succeeded, JobStatus::Failed]);
    assert_eq!(attempts(&app, shorter).await, 1);
}

#[tokio::test]
async fn the_workers_timeout_applies_to_tasks_without_one() {
    let db = schema_db().await;
    let app = app(&db);
    let cut = app
        .defer(Unlimited { millis: 60_000 })
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let statuses = work_off(
        &app,
        WorkerConfig {
            task_timeout: Some(Duration::from_millis(150)),
            ..config(&log)
        },
        &[cut],
    )
    .await;
    assert_eq!(statuses, [JobStatus::Failed]);
    assert_eq!(log.events(), ["start"]);
    // No timeout anywhere: the same job runs to its end.
    let whole = app.defer(Unlimited { millis: 300 }).await.expect("defer");
    let log = Arc::new(Log::default());
    assert_eq!(
        work_off(&app, config(&log), &[whole]).await,
        [JobStatus::Succeeded]
    );
    assert_eq!(log.events(), ["start", "end"]);
}

#[tokio::test]
async fn blocking_code_that_polls_sees_the_reason_timeout() {
    let db = schema_db().await;
    let app = app(&db);
    let id = app.defer(Blocking).await.expect("defer");
    let log = Arc::new(Log::default());
    assert_eq!(
        work_off(&app, config(&log), &[id]).await,
        [JobStatus::Failed]
    );
    // The worker waited for the blocking code to return before writing the outcome.
    assert_eq!(
        log.events(),
        [format!("reason {:?}", Some(AbortReason::Timeout))]
    );
}

#[tokio::test]
async fn a_periodic_registrations_timeout_is_stored_with_its_jobs() {
    let db = schema_db().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Unlimited>()
        .periodic(
            Periodic::new::<Unlimited>("* * * * *")
                .with_kwargs(serde_json::json!({ "millis": 1 }))
                .with_timeout(Duration::from_secs(7)),
        )
        .build()
        .expect("app builds");
    let ids = app
        .defer_periodic_jobs(chrono::Utc::now())
        .await
        .expect("tick deferred");
    assert_eq!(ids.len(), 1);
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT timeout_ms FROM postpone_job_timeouts WHERE job_id = $1",
            &[&ids[0]],
        )
        .await
        .expect("the registration's timeout is stored")
        .get(0);
    assert_eq!(stored, 7_000);
}

#[tokio::test]
async fn bad_timeouts_are_refused_and_change_nothing() {
    let db = schema_db().await;
    let app = app(&db);
    for bad in [Duration::ZERO, Duration::from_secs(31 * 24 * 3600)] {
        let error = app
            .configure(Unlimited { millis: 1 })
            .with_timeout(bad)
            .defer()
            .await
            .expect_err("refused");
        assert!(
            matches!(error, Error::InvalidInput(_)) && error.to_string().contains("30 days"),
            "{error}"
        );
        let error = app
            .start_worker(WorkerConfig {
                task_timeout: Some(bad),
                ..WorkerConfig::default()
            })
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("timeout"), "{error}");
    }
    let counts = db
        .client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM procrastinate_jobs), (SELECT count(*) FROM procrastinate_workers)",
            &[],
        )
        .await
        .expect("counts");
    assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1)), (0, 0));

    #[derive(Serialize, Deserialize)]
    struct ZeroTimeout;
    impl Task for ZeroTimeout {
        fn name() -> std::borrow::Cow<'static, str> {
            "tests.zero_timeout".into()
        }
        fn config() -> TaskConfig {
            TaskConfig::default().with_timeout(Duration::ZERO)
        }
        async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
            Ok(())
        }
    }
    let error = App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<ZeroTimeout>()
        .build()
        .expect_err("refused");
    assert!(error.to_string().contains("tests.zero_timeout"), "{error}");
}
