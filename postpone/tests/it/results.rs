//! Job results (`postpone_job_results`, docs/results.md): a task's value stored with its
//! `succeeded` outcome and read back typed, on both stores; only the successful attempt's;
//! gone with the job; refused (and the attempt failed, with its kind) when too large or not
//! serialisable; and a handle that waits for a job's end, woken by the worker's
//! notification, with a deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use postpone::manager::DeleteOldJobsOptions;
use postpone::result::RESULT_NOT_SERIALIZABLE;
use postpone::task::{JobContext, TaskError};
use postpone::worker::{DeleteJobs, WorkerConfig};
use postpone::{App, Error, JobStatus, MemoryStore, Task, TaskConfig, WorkerHandle};
use serde::{Deserialize, Serialize};

use crate::harness::{
    Log, TestDb, assert_failed_over_the_limit, memory_app_with, pg_app_with, polling_worker,
    schema_db, wait_for, wait_status, work_until,
};

/// Returns the sum of its arguments.
#[derive(Debug, Serialize, Deserialize)]
struct Sum {
    a: i64,
    b: i64,
}

impl Task for Sum {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.sum".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        ctx.set_result(&(self.a + self.b))
    }
}

/// A struct result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    label: String,
    sizes: Vec<u32>,
    note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Summarise {
    label: String,
}

impl Task for Summarise {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.summarise".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        ctx.set_result(&summary(&self.label))
    }
}

fn summary(label: &str) -> Summary {
    Summary {
        label: label.to_owned(),
        sizes: vec![1, 2, 3],
        // A NUL and quotes survive: the column is `json`, kept as written.
        note: Some("a \"quoted\"\u{0} note".to_owned()),
    }
}

/// Sets no result.
#[derive(Debug, Serialize, Deserialize)]
struct Nothing;

impl Task for Nothing {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.nothing".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Sets `attempt-1` and fails on its first attempt; sets `attempt-2` and succeeds on the
/// second (its retry).
#[derive(Debug, Serialize, Deserialize)]
struct SecondTime;

impl Task for SecondTime {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.second_time".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let attempt = ctx.job().attempts + 1;
        ctx.set_result(&format!("attempt-{attempt}"))?;
        if attempt == 1 {
            return Err(TaskError::new("Boom", "the first attempt fails"));
        }
        Ok(())
    }
}

/// Returns a string of `len` bytes of JSON (quotes included), ignoring the refusal as a
/// careless task would; two retries.
#[derive(Debug, Serialize, Deserialize)]
struct Big {
    len: usize,
}

impl Task for Big {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.big".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let _ignored = ctx.set_result(&"x".repeat(self.len - 2));
        Ok(())
    }
}

/// Returns a map with non-string keys, which JSON cannot hold.
#[derive(Debug, Serialize, Deserialize)]
struct Unserialisable;

impl Task for Unserialisable {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.unserialisable".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let map: BTreeMap<(i32, i32), i32> = [((1, 2), 3)].into();
        ctx.set_result(&map)
    }
}

/// Waits until its worker's [`Gate`] opens, then returns `opened`.
#[derive(Debug, Serialize, Deserialize)]
struct Gated;

/// A gate for [`Gated`] jobs, the worker's additional context.
#[derive(Debug, Default)]
struct Gate(tokio::sync::watch::Sender<bool>);

/// A worker started on `app` as `config` says, with a closed [`Gate`] as its additional
/// context.
async fn gated_worker(app: &App, config: WorkerConfig) -> (Arc<Gate>, WorkerHandle) {
    let gate = Arc::new(Gate::default());
    let config = WorkerConfig {
        additional_context: Some(gate.clone()),
        ..config
    };
    let worker = app.start_worker(config).await.expect("worker");
    (gate, worker)
}

impl Task for Gated {
    fn name() -> std::borrow::Cow<'static, str> {
        "results.gated".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let gate = ctx
            .additional_context::<Gate>()
            .ok_or_else(|| TaskError::msg("no gate"))?;
        let mut open = gate.0.subscribe();
        open.wait_for(|open| *open)
            .await
            .map_err(|_| TaskError::msg("gate dropped"))?;
        ctx.set_result("opened")
    }
}

fn build(builder: postpone::AppBuilder) -> App {
    builder
        .task::<Sum>()
        .task::<Summarise>()
        .task::<Nothing>()
        .task::<SecondTime>()
        .task::<Big>()
        .task::<Unserialisable>()
        .task::<Gated>()
        .result_size_limit(128)
        .build()
        .expect("test app builds")
}

async fn pg_app() -> (TestDb, App) {
    pg_app_with(build).await
}

fn memory_app() -> App {
    memory_app_with(build).1
}

/// A number, a struct and no result, run by a worker on `app`'s store, read back typed.
async fn round_trip(app: &App) -> Vec<i64> {
    let sum = app.defer(Sum { a: 2, b: 40 }).await.expect("defer");
    let summarised = app
        .defer(Summarise {
            label: "report".to_owned(),
        })
        .await
        .expect("defer");
    let nothing = app.defer(Nothing).await.expect("defer");
    work_until(
        app,
        &[
            (sum, JobStatus::Succeeded),
            (summarised, JobStatus::Succeeded),
            (nothing, JobStatus::Succeeded),
        ],
    )
    .await;
    assert_eq!(app.job_result::<i64>(sum).await.expect("read"), Some(42));
    assert_eq!(
        app.job_result::<Summary>(summarised).await.expect("read"),
        Some(summary("report"))
    );
    assert_eq!(app.job_result::<()>(nothing).await.expect("read"), None);
    // The stored row names its attempt and worker.
    let row = app
        .job_manager()
        .get_job_result(sum)
        .await
        .expect("read")
        .expect("a result");
    assert_eq!((row.attempt, row.json.as_str()), (1, "42"));
    assert!(row.worker_id.is_some());
    // Read as the wrong type: a clear error naming the job, the type and the field.
    let error = app
        .job_result::<Sum>(summarised)
        .await
        .expect_err("a Summary is not a Sum");
    assert!(matches!(error, Error::InvalidResult { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("the result of job {summarised} does not fit "))
            && message.contains("missing field `a`"),
        "{message}"
    );
    vec![sum, summarised, nothing]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_round_trip_typed_on_postgres() {
    let (db, app) = pg_app().await;
    round_trip(&app).await;
    // A task that sets no result stores no row.
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_round_trip_typed_in_memory() {
    let app = memory_app();
    round_trip(&app).await;
}

/// The failed first attempt's result is dropped; the second's is kept, with its number.
async fn only_the_successful_attempt(app: &App) {
    let id = app.defer(SecondTime).await.expect("defer");
    work_until(app, &[(id, JobStatus::Succeeded)]).await;
    let manager = app.job_manager();
    let row = manager
        .get_job_result(id)
        .await
        .expect("read")
        .expect("a result");
    assert_eq!((row.attempt, row.json.as_str()), (2, "\"attempt-2\""));
    let errors = manager.list_job_errors(&[id]).await.expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, "Boom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_successful_attempts_result_is_kept_on_both_stores() {
    let (_db, app) = pg_app().await;
    only_the_successful_attempt(&app).await;
    only_the_successful_attempt(&memory_app()).await;
}

/// A worker deleting its successful jobs keeps no result; `delete_old_jobs` takes the
/// result with the job.
async fn results_go_with_their_jobs(app: &App) {
    let manager = app.job_manager();
    let kept = app.defer(Sum { a: 1, b: 1 }).await.expect("defer");
    work_until(app, &[(kept, JobStatus::Succeeded)]).await;
    assert_eq!(app.job_result::<i64>(kept).await.expect("read"), Some(2));

    let log = Arc::new(Log::default());
    let deleting = WorkerConfig {
        delete_jobs: DeleteJobs::Successful,
        ..polling_worker(&log)
    };
    let handle = app.start_worker(deleting).await.expect("worker");
    let deleted = app.defer(Sum { a: 2, b: 2 }).await.expect("defer");
    wait_for("the job to be deleted", Duration::from_secs(20), || async {
        app.store().get_job(deleted).await.expect("read").is_none()
    })
    .await;
    handle.stop();
    handle.join().await.expect("the worker stops");
    assert_eq!(app.job_result::<i64>(deleted).await.expect("read"), None);

    let count = manager
        .delete_old_jobs(&DeleteOldJobsOptions {
            nb_hours: 0,
            queue: None,
            include_failed: false,
            include_cancelled: false,
            include_aborted: false,
        })
        .await
        .expect("delete old jobs");
    assert_eq!(count, 1);
    assert_eq!(app.job_result::<i64>(kept).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_go_with_their_jobs_on_postgres() {
    let (db, app) = pg_app().await;
    results_go_with_their_jobs(&app).await;
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_go_with_their_jobs_in_memory() {
    results_go_with_their_jobs(&memory_app()).await;
}

/// Too large (retried by its policy, then failed) and not serialisable: each attempt
/// failed with its kind, a one-line message, and no result stored.
async fn refused_results(app: &App) {
    let manager = app.job_manager();
    // 129 bytes of JSON against a limit of 128; 128 fit.
    let too_large = app.defer(Big { len: 129 }).await.expect("defer");
    let fits = app.defer(Big { len: 128 }).await.expect("defer");
    let unserialisable = app.defer(Unserialisable).await.expect("defer");
    work_until(
        app,
        &[
            (too_large, JobStatus::Failed),
            (fits, JobStatus::Succeeded),
            (unserialisable, JobStatus::Failed),
        ],
    )
    .await;
    assert_eq!(
        app.job_result::<String>(fits).await.expect("read"),
        Some("x".repeat(126))
    );
    for id in [too_large, unserialisable] {
        assert_eq!(app.job_result::<String>(id).await.expect("read"), None);
    }
    // Retried by its policy (two retries), then failed.
    assert_failed_over_the_limit(app, too_large).await;
    let errors = manager
        .list_job_errors(&[unserialisable])
        .await
        .expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, RESULT_NOT_SERIALIZABLE);
    assert_eq!(
        errors[0].message,
        format!(
            "the result of job {unserialisable} cannot be serialised to JSON: key must be a string; return a value serde_json accepts (maps need string keys)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_too_large_or_not_serialisable_fails_its_attempt_with_its_kind() {
    let (db, app) = pg_app().await;
    refused_results(&app).await;
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        1
    );
    refused_results(&memory_app()).await;
}

#[test]
fn a_result_size_limit_out_of_range_is_refused_at_build() {
    for bytes in [0, (1 << 30) + 1] {
        let error = App::builder()
            .store(Arc::new(MemoryStore::new()))
            .result_size_limit(bytes)
            .build()
            .expect_err("out of range");
        assert_eq!(
            error.to_string(),
            format!(
                "result_size_limit of {bytes} bytes is out of range: give 1 to 1073741824 bytes (PostgreSQL keeps at most 1 GiB in a value)"
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_handle_is_woken_by_the_workers_notification() {
    let (db, app) = pg_app().await;
    let (gate, worker) = gated_worker(
        &app,
        WorkerConfig {
            concurrency: 2,
            ..WorkerConfig::default()
        },
    )
    .await;
    let handle = app.defer_and_track(Gated).await.expect("defer");
    let manager = app.job_manager();
    wait_status(&manager, handle.id(), JobStatus::Doing).await;
    // It reads the job once, then only a notification wakes it: its poll interval is an
    // hour, past the deadline.
    let waiting = {
        let handle = handle
            .clone()
            .with_poll_interval(Duration::from_secs(3600))
            .expect("interval");
        tokio::spawn(async move { handle.wait(Duration::from_secs(60)).await })
    };
    wait_for(
        "the wait to be registered",
        Duration::from_secs(20),
        || async { db.count("SELECT count(*) FROM postpone_job_waiters").await == 1 },
    )
    .await;
    gate.0.send_replace(true);
    let outcome = waiting.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.status, JobStatus::Succeeded);
    assert!(outcome.succeeded());
    assert_eq!(
        outcome.result::<String>().expect("decode"),
        Some("opened".to_owned())
    );
    // The finish that announced it took its waiter row.
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_waiters").await,
        0
    );
    worker.stop();
    worker.join().await.expect("the worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_handle_sees_a_failure_with_its_error() {
    let app = memory_app();
    let handle = app.defer_and_track(Unserialisable).await.expect("defer");
    let waiting = {
        let handle = handle
            .clone()
            .with_poll_interval(Duration::from_secs(3600))
            .expect("interval");
        tokio::spawn(async move { handle.wait(Duration::from_secs(60)).await })
    };
    work_until(&app, &[(handle.id(), JobStatus::Failed)]).await;
    let outcome = waiting.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.status, JobStatus::Failed);
    assert_eq!(outcome.result::<i64>().expect("decode"), None);
    let error = outcome.error.expect("its error");
    assert_eq!(error.kind, RESULT_NOT_SERIALIZABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_its_deadline_or_on_a_missing_job_says_so() {
    for app in [pg_app().await.1, memory_app()] {
        // No worker: the job stays todo.
        let handle = app.defer_and_track(Nothing).await.expect("defer");
        let error = handle
            .wait(Duration::from_millis(50))
            .await
            .expect_err("no worker runs it");
        assert!(matches!(error, Error::WaitTimedOut { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "job {id} did not end within 50ms (its status then: todo); wait longer, or look at it with `postpone jobs show {id}`",
                id = handle.id()
            )
        );
        let error = app
            .wait_for_job(handle.id() + 1000, Duration::from_secs(5))
            .await
            .expect_err("no such job");
        assert!(matches!(error, Error::JobNotFound { .. }), "{error:?}");
        let error = app
            .job_handle(handle.id())
            .with_poll_interval(Duration::ZERO)
            .expect_err("a zero interval");
        assert_eq!(
            error.to_string(),
            "a wait's poll interval of 0 would read the job without pause: give at least 1 ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_only_app_waits_by_polling() {
    let db = schema_db().await;
    let app = build(
        App::builder()
            .database_url(&db.url)
            .expect("url")
            .poll_only(true),
    );
    let handle = app
        .defer_and_track(Sum { a: 3, b: 4 })
        .await
        .expect("defer");
    let waiting = {
        let handle = handle
            .clone()
            .with_poll_interval(Duration::from_millis(20))
            .expect("interval");
        tokio::spawn(async move { handle.wait(Duration::from_secs(60)).await })
    };
    work_until(&app, &[(handle.id(), JobStatus::Succeeded)]).await;
    let outcome = waiting.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.result::<i64>().expect("decode"), Some(7));
    // Nothing registered: a poll-only app listens to nothing.
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_waiters").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_job_the_delete_policy_removes_is_reported_gone() {
    let (db, app) = pg_app().await;
    let (gate, worker) = gated_worker(
        &app,
        WorkerConfig {
            delete_jobs: DeleteJobs::Successful,
            ..WorkerConfig::default()
        },
    )
    .await;
    let handle = app
        .defer_and_track(Gated)
        .await
        .expect("defer")
        // Only the finish's notification wakes it: its poll interval is past the deadline.
        .with_poll_interval(Duration::from_secs(3600))
        .expect("interval");
    let waiting = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.wait(Duration::from_secs(60)).await })
    };
    wait_for(
        "the wait to be registered",
        Duration::from_secs(20),
        || async { db.count("SELECT count(*) FROM postpone_job_waiters").await == 1 },
    )
    .await;
    gate.0.send_replace(true);
    // The finish announces the job, then deletes it (no result kept), in one statement.
    let error = waiting.await.expect("joined").expect_err("the job is gone");
    assert!(
        matches!(error, Error::JobNotFound { id } if id == handle.id()),
        "{error:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_waiters").await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        0
    );
    worker.stop();
    worker.join().await.expect("the worker stops");
}

/// Backends of this database (this one aside) whose last statement LISTENed for job ends.
const FINISH_LISTENERS: &str = "SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid()
       AND query LIKE '%LISTEN \"postpone_job_finished_v1\"%'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_handles_share_one_link_closed_after_the_last() {
    let (db, app) = pg_app().await;
    let (gate, worker) = gated_worker(
        &app,
        WorkerConfig {
            concurrency: 20,
            ..WorkerConfig::default()
        },
    )
    .await;
    let mut waits = Vec::new();
    for _ in 0..20 {
        let handle = app
            .defer_and_track(Gated)
            .await
            .expect("defer")
            .with_poll_interval(Duration::from_secs(3600))
            .expect("interval");
        waits.push(tokio::spawn(async move {
            handle.wait(Duration::from_secs(60)).await
        }));
    }
    wait_for(
        "the waits to be registered",
        Duration::from_secs(20),
        || async { db.count("SELECT count(*) FROM postpone_job_waiters").await == 20 },
    )
    .await;
    assert_eq!(db.count(FINISH_LISTENERS).await, 1);
    gate.0.send_replace(true);
    for wait in waits {
        let outcome = wait.await.expect("joined").expect("the job ended");
        assert_eq!(
            outcome.result::<String>().expect("decode"),
            Some("opened".to_owned())
        );
    }
    // Nobody waits any more: the link is closed.
    wait_for("the link to close", Duration::from_secs(20), || async {
        db.count(FINISH_LISTENERS).await == 0
    })
    .await;
    worker.stop();
    worker.join().await.expect("the worker stops");
}
