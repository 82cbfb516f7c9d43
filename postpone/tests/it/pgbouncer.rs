//! Through a real PgBouncer (Debian's, started by the testkit on a private port):
//! poll-only mode in `pool_mode = transaction` defers, batch defers, drains, retries,
//! aborts, rescues, pauses, defers periodic jobs and stops gracefully; a worker that would
//! LISTEN there refuses to start with a clear error; asynchronous commit is refused;
//! session pooling works in both modes.
//!
//! PgBouncer 1.18 carries no prepared statements in transaction mode: a named statement
//! prepared by one transaction is gone (or another client's) in the next, so any use of
//! one fails these tests with "prepared statement ... does not exist".

use std::sync::Arc;
use std::time::Duration;

use postpone::periodic::Periodic;
use postpone::retry::RetryStrategy;
use postpone::task::{JobContext, TaskConfig, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Error, JobStatus, Task};
use postpone_testkit::{PgBouncer, PoolMode};
use serde::{Deserialize, Serialize};

use crate::harness::{
    Log, Record, TestDb, dead_worker_holds, polling_worker, record, schema_db, wait_for,
    wait_status, work_until,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Fails its first attempt, then records its label; one retry.
#[derive(Serialize, Deserialize)]
struct Flaky {
    label: String,
}

impl Task for Flaky {
    fn name() -> std::borrow::Cow<'static, str> {
        "bouncer.flaky".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        if ctx.job().attempts == 0 {
            return Err(TaskError::msg("first attempt fails"));
        }
        Log::of(&ctx).push(self.label);
        Ok(())
    }
}

/// Logs `start <label>`, then runs until aborted.
#[derive(Serialize, Deserialize)]
struct Forever {
    label: String,
}

impl Task for Forever {
    fn name() -> std::borrow::Cow<'static, str> {
        "bouncer.forever".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("start {}", self.label));
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A periodic tick, every second.
#[derive(Serialize, Deserialize)]
struct Tick {
    timestamp: i64,
}

impl Task for Tick {
    fn name() -> std::borrow::Cow<'static, str> {
        "bouncer.tick".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

async fn bouncer(mode: PoolMode) -> &'static PgBouncer {
    PgBouncer::shared(mode)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The app of these tests, connected to `db` through PgBouncer in `mode`.
fn app_through(bouncer: &PgBouncer, db: &TestDb, poll_only: bool) -> App {
    App::builder()
        .database_url(&bouncer.url(&db.name))
        .expect("test url parses")
        .poll_only(poll_only)
        .task::<Record>()
        .task::<Flaky>()
        .task::<Forever>()
        .build()
        .expect("test app builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_defers_drains_and_retries_through_transaction_pooling() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Transaction).await;
    let app = app_through(bouncer, &db, true);
    app.check_schema()
        .await
        .expect("the schema check runs through PgBouncer");
    // One at a time, a set-wise batch (20 and more), and one with a timeout.
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(app.defer(record(format!("one {i}"))).await.expect("defer"));
    }
    ids.extend(
        app.batch_defer((0..50).map(|i| app.configure(record(format!("batch {i}")))))
            .await
            .expect("batch defer"),
    );
    ids.push(
        app.configure(record("timed"))
            .with_timeout(Duration::from_secs(60))
            .defer()
            .await
            .expect("defer with a timeout"),
    );
    let flaky = app
        .defer(Flaky {
            label: "flaky".to_owned(),
        })
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker starts");
    let manager = app.job_manager();
    wait_for("every job to succeed", DEADLINE, || async {
        db.count("SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
            .await
            == 0
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_jobs").await,
        i64::try_from(ids.len()).expect("fits") + 1
    );
    let job = manager.get_job(flaky).await.expect("the flaky job");
    assert_eq!(job.attempts, 2, "failed once, retried once");
    let mut events = log.events();
    events.sort();
    assert_eq!(events.len(), ids.len() + 1, "each job ran once: {events:?}");
    events.dedup();
    assert_eq!(events.len(), ids.len() + 1, "no job ran twice");
    // Graceful: the worker's row goes.
    handle.stop();
    handle.join().await.expect("the worker stops");
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_workers").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_aborts_pauses_and_stops_gracefully_through_transaction_pooling() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Transaction).await;
    let app = app_through(bouncer, &db, true);
    let manager = app.job_manager();
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker starts");
    // Abort: found by polling, there being no notification.
    let forever = app
        .defer(Forever {
            label: "forever".to_owned(),
        })
        .await
        .expect("defer");
    wait_for("the job to start", DEADLINE, || async {
        log.events().contains(&"start forever".to_owned())
    })
    .await;
    assert!(
        manager
            .cancel_job_by_id(forever, true, false)
            .await
            .expect("abort")
    );
    wait_status(&manager, forever, JobStatus::Aborted).await;
    // Pause: the worker reads the pauses by polling.
    assert!(manager.pause_queue("p").await.expect("pause"));
    let paused = app
        .configure(record("paused"))
        .with_queue("p")
        .defer()
        .await
        .expect("defer into a paused queue");
    let other = app.defer(record("other")).await.expect("defer");
    wait_status(&manager, other, JobStatus::Succeeded).await;
    assert_eq!(
        manager.get_job_status(paused).await.expect("status"),
        JobStatus::Todo
    );
    assert!(manager.resume_queue("p").await.expect("resume"));
    wait_status(&manager, paused, JobStatus::Succeeded).await;
    // Graceful stop with a job running: it is aborted at the graceful timeout's end and
    // the worker still unregisters.
    let last = app
        .defer(Forever {
            label: "last".to_owned(),
        })
        .await
        .expect("defer");
    wait_for("the last job to start", DEADLINE, || async {
        log.events().contains(&"start last".to_owned())
    })
    .await;
    handle.abort();
    handle.join().await.expect("the worker stops");
    assert_eq!(
        manager.get_job_status(last).await.expect("status"),
        JobStatus::Aborted
    );
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_workers").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_rescues_and_defers_periodic_jobs_through_transaction_pooling() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Transaction).await;
    // Two dead workers (heartbeats an hour old), each holding a doing job: the first
    // with no start watermark (a Python worker: its job may have started, a failed
    // attempt, retried), the second with nothing started (its job goes back as it was).
    let app = App::builder()
        .database_url(&bouncer.url(&db.name))
        .expect("test url parses")
        .poll_only(true)
        .task::<Record>()
        .task::<Flaky>()
        .task::<Tick>()
        .periodic(Periodic::new::<Tick>("* * * * * *"))
        .build()
        .expect("test app builds");
    let started = app
        .defer(Flaky {
            label: "started".to_owned(),
        })
        .await
        .expect("defer");
    let waiting = app.defer(record("waiting")).await.expect("defer");
    dead_worker_holds(&db, 1001, &[started], None).await;
    dead_worker_holds(&db, 1002, &[waiting], Some((i32::MAX, 0))).await;
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker starts");
    let manager = app.job_manager();
    for id in [started, waiting] {
        wait_status(&manager, id, JobStatus::Succeeded).await;
    }
    assert_eq!(manager.get_job(started).await.expect("job").attempts, 2);
    // Its run on the dead worker was not counted: one attempt, here.
    assert_eq!(manager.get_job(waiting).await.expect("job").attempts, 1);
    let rescues = manager
        .list_rescues(&[started, waiting])
        .await
        .expect("rescues");
    let rescues: Vec<(i64, bool)> = rescues.iter().map(|r| (r.job_id, r.started)).collect();
    assert_eq!(rescues, [(started, true), (waiting, false)]);
    wait_for("two periodic ticks to run", DEADLINE, || async {
        db.count(
            "SELECT count(*) FROM procrastinate_jobs
              WHERE task_name = 'bouncer.tick' AND status = 'succeeded'",
        )
        .await
            >= 2
    })
    .await;
    handle.stop();
    handle.join().await.expect("the worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_would_listen_through_transaction_pooling_refuses_to_start() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Transaction).await;
    let app = app_through(bouncer, &db, false);
    let error = app
        .start_worker(WorkerConfig::default())
        .await
        .expect_err("LISTEN cannot work through transaction pooling");
    assert!(matches!(error, Error::ListenNotDelivered { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("poll-only"), "{message}");
    assert!(
        message.contains(&format!("port={}", bouncer.port())),
        "{message}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_workers").await,
        0,
        "nothing registered"
    );
    // Without LISTEN (the worker option alone) it runs, polling.
    let poll_only = app_through(bouncer, &db, true);
    let id = poll_only.defer(record("polled")).await.expect("defer");
    work_until(&poll_only, &[(id, JobStatus::Succeeded)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_refuses_asynchronous_commit_and_changes_nothing() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Transaction).await;
    let app = app_through(bouncer, &db, true);
    let error = app
        .start_worker(WorkerConfig {
            asynchronous_commit: true,
            ..WorkerConfig::default()
        })
        .await
        .expect_err("a session setting cannot work in poll-only mode");
    let message = error.to_string();
    assert!(matches!(error, Error::InvalidInput(_)), "{message}");
    assert!(
        message.contains("--asynchronous-commit") && message.contains("--poll-only"),
        "{message}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_workers").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_works_with_and_without_poll_only() {
    let db = schema_db().await;
    let bouncer = bouncer(PoolMode::Session).await;
    for poll_only in [false, true] {
        let app = app_through(bouncer, &db, poll_only);
        let ids = app
            .batch_defer((0..30).map(|i| app.configure(record(format!("{poll_only} {i}")))))
            .await
            .expect("batch defer");
        let log = Arc::new(Log::default());
        let handle = app
            .start_worker(polling_worker(&log))
            .await
            .expect("worker starts");
        let manager = app.job_manager();
        for &id in &ids {
            wait_status(&manager, id, JobStatus::Succeeded).await;
        }
        handle.stop();
        handle.join().await.expect("the worker stops");
        assert_eq!(log.events().len(), ids.len());
    }
}
