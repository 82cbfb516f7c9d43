//! Tasks that return their result (`TaskWithOutput`, docs/results.md, ADR 17): the value
//! `run` returns is stored as the job's result, read back typed and seen by a waiting
//! handle; one over the size limit fails the attempt with its kind and stores nothing; an
//! `Err` stores nothing and follows the retry policy; a workflow child reads a parent's
//! returned value; on both stores. Tasks of both kinds (and a generic `Task`) live in this
//! one crate beside the blanket impl, which is the coherence check.

use std::sync::Arc;
use std::time::Duration;

use postpone::retry::RetryStrategy;
use postpone::task::{JobContext, TaskError};
use postpone::workflow::{NodeStatus, Workflow};
use postpone::{App, JobStatus, MemoryStore, Task, TaskConfig, TaskWithOutput};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::harness::{
    Log, assert_failed_over_the_limit, memory_app_with, pg_app_with, polling_worker, wait_for,
    work_until,
};

/// What [`Measure`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Measured {
    label: String,
    length: usize,
    words: Vec<String>,
}

/// Returns a struct.
#[derive(Debug, Serialize, Deserialize)]
struct Measure {
    text: String,
}

impl TaskWithOutput for Measure {
    type Output = Measured;
    fn name() -> std::borrow::Cow<'static, str> {
        "output.measure".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<Measured, TaskError> {
        Ok(measured(&self.text))
    }
}

fn measured(text: &str) -> Measured {
    Measured {
        label: format!("\"{text}\""),
        length: text.len(),
        words: text.split_whitespace().map(str::to_owned).collect(),
    }
}

/// Returns a string of `len` bytes of JSON (quotes included); two retries.
#[derive(Debug, Serialize, Deserialize)]
struct Long {
    len: usize,
}

impl TaskWithOutput for Long {
    type Output = String;
    fn name() -> std::borrow::Cow<'static, str> {
        "output.long".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(2))
    }
    async fn run(self, _ctx: JobContext) -> Result<String, TaskError> {
        Ok("x".repeat(self.len - 2))
    }
}

/// Sets a result through its context, then returns `Err` on its first `failures`
/// attempts; returns its attempt number on the next. One retry.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    failures: i32,
}

impl TaskWithOutput for Flaky {
    type Output = i32;
    fn name() -> std::borrow::Cow<'static, str> {
        "output.flaky".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(1))
    }
    async fn run(self, ctx: JobContext) -> Result<i32, TaskError> {
        let attempt = ctx.job().attempts + 1;
        // What an attempt that fails set is not kept either.
        ctx.set_result("set, then failed")?;
        if attempt <= self.failures {
            return Err(TaskError::new(
                "Flaked",
                format!("attempt {attempt} fails, as asked"),
            ));
        }
        Ok(attempt)
    }
}

/// Returns `()`: stored as `null`.
#[derive(Debug, Serialize, Deserialize)]
struct Unit;

impl TaskWithOutput for Unit {
    type Output = ();
    fn name() -> std::borrow::Cow<'static, str> {
        "output.unit".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A workflow child: returns twice its parent `a`'s result (a [`Measure`]'s length).
#[derive(Debug, Serialize, Deserialize)]
struct Double;

impl TaskWithOutput for Double {
    type Output = usize;
    fn name() -> std::borrow::Cow<'static, str> {
        "output.double".into()
    }
    async fn run(self, ctx: JobContext) -> Result<usize, TaskError> {
        let parent: Option<Measured> = ctx.parent_result("a").await?;
        let parent = parent.ok_or_else(|| TaskError::msg("parent a returned nothing"))?;
        Ok(parent.length * 2)
    }
}

/// A plain [`Task`] in the same crate, generic over its payload: the blanket impl of
/// `Task` for every `TaskWithOutput` leaves room for it.
#[derive(Debug, Serialize, Deserialize)]
struct Echo<P> {
    payload: P,
}

impl<P: Serialize + DeserializeOwned + Send + Sync + 'static> Task for Echo<P> {
    fn name() -> std::borrow::Cow<'static, str> {
        "output.echo".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        ctx.set_result(&self.payload)
    }
}

fn build(builder: postpone::AppBuilder) -> App {
    builder
        .task::<Measure>()
        .task::<Long>()
        .task::<Flaky>()
        .task::<Unit>()
        .task::<Double>()
        .task::<Echo<Vec<u8>>>()
        .result_size_limit(128)
        .build()
        .expect("test app builds")
}

/// A returned struct, a returned `()` and a plain task's result, read back typed; a
/// handle sees the struct.
async fn returned(app: &App) {
    let handle = app
        .defer_and_track(Measure {
            text: "two words".to_owned(),
        })
        .await
        .expect("defer");
    let unit = app.defer(Unit).await.expect("defer");
    let echo = app
        .defer(Echo {
            payload: vec![1_u8, 2],
        })
        .await
        .expect("defer");
    // The handle waits while the worker runs.
    let waiting = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.wait(Duration::from_secs(60)).await })
    };
    work_until(
        app,
        &[
            (handle.id(), JobStatus::Succeeded),
            (unit, JobStatus::Succeeded),
            (echo, JobStatus::Succeeded),
        ],
    )
    .await;
    let outcome = waiting.await.expect("joined").expect("the job ended");
    assert_eq!(outcome.status, JobStatus::Succeeded);
    assert_eq!(
        outcome.result::<Measured>().expect("decode"),
        Some(measured("two words"))
    );
    assert_eq!(
        app.job_result::<Measured>(handle.id()).await.expect("read"),
        Some(measured("two words"))
    );
    let manager = app.job_manager();
    let row = manager
        .get_job_result(handle.id())
        .await
        .expect("read")
        .expect("a result");
    assert_eq!(
        (row.attempt, row.json.as_str()),
        (
            1,
            r#"{"label":"\"two words\"","length":9,"words":["two","words"]}"#
        )
    );
    // `()` is a value: stored as null, a row that reads back as `Some(())`.
    let row = manager
        .get_job_result(unit)
        .await
        .expect("read")
        .expect("a result");
    assert_eq!(row.json, "null");
    assert_eq!(app.job_result::<()>(unit).await.expect("read"), Some(()));
    assert_eq!(
        app.job_result::<Vec<u8>>(echo).await.expect("read"),
        Some(vec![1, 2])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_value_is_the_jobs_result_on_postgres() {
    let (db, app) = pg_app_with(build).await;
    returned(&app).await;
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_value_is_the_jobs_result_in_memory() {
    returned(&memory_app_with(build).1).await;
}

/// Over the limit: each attempt fails with `ResultTooLarge`, retried by the policy, then
/// failed, nothing stored; 128 bytes fit.
async fn too_large(app: &App) {
    let over = app.defer(Long { len: 129 }).await.expect("defer");
    let fits = app.defer(Long { len: 128 }).await.expect("defer");
    work_until(
        app,
        &[(over, JobStatus::Failed), (fits, JobStatus::Succeeded)],
    )
    .await;
    assert_eq!(app.job_result::<String>(over).await.expect("read"), None);
    assert_eq!(
        app.job_result::<String>(fits).await.expect("read"),
        Some("x".repeat(126))
    );
    assert_failed_over_the_limit(app, over).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_value_over_the_limit_fails_its_attempts_on_both_stores() {
    let (db, app) = pg_app_with(build).await;
    too_large(&app).await;
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_results").await,
        1
    );
    too_large(&memory_app_with(build).1).await;
}

/// `Err` stores nothing (not even what the attempt set) and is retried by the policy: one
/// job fails twice and ends failed; one fails once and succeeds on its retry.
async fn errors(app: &App) {
    let failed = app.defer(Flaky { failures: 5 }).await.expect("defer");
    let retried = app.defer(Flaky { failures: 1 }).await.expect("defer");
    work_until(
        app,
        &[(failed, JobStatus::Failed), (retried, JobStatus::Succeeded)],
    )
    .await;
    let manager = app.job_manager();
    assert_eq!(manager.get_job_result(failed).await.expect("read"), None);
    let kinds = |errors: Vec<postpone::store::FailedAttempt>| -> Vec<(i32, String)> {
        errors.into_iter().map(|e| (e.attempt, e.kind)).collect()
    };
    assert_eq!(
        kinds(manager.list_job_errors(&[failed]).await.expect("errors")),
        [(1, "Flaked".to_owned()), (2, "Flaked".to_owned())]
    );
    let row = manager
        .get_job_result(retried)
        .await
        .expect("read")
        .expect("a result");
    assert_eq!((row.attempt, row.json.as_str()), (2, "2"));
    assert_eq!(
        kinds(manager.list_job_errors(&[retried]).await.expect("errors")),
        [(1, "Flaked".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_err_stores_nothing_and_follows_the_retry_policy_on_both_stores() {
    let (_db, app) = pg_app_with(build).await;
    errors(&app).await;
    errors(&memory_app_with(build).1).await;
}

/// a (a `Measure`) -> b (a `Double` reading a's returned value).
async fn workflow(app: &App, memory: Option<&MemoryStore>) {
    let workflow = Workflow::new("output")
        .node(
            "a",
            app.configure(Measure {
                text: "four".to_owned(),
            }),
            &[],
        )
        .node("b", app.configure(Double), &["a"]);
    let id = app.defer_workflow(workflow).await.expect("submitted");
    let finished = || async {
        app.workflow_status(id)
            .await
            .expect("status")
            .expect("the workflow exists")
            .is_finished()
    };
    if let Some(store) = memory {
        // One-shot runs: each releases the next node.
        for _ in 0..10 {
            store.run_all(app).await.expect("run_all");
            if finished().await {
                break;
            }
        }
    } else {
        let log = Arc::new(Log::default());
        let handle = app
            .start_worker(polling_worker(&log))
            .await
            .expect("worker starts");
        wait_for("the workflow to end", Duration::from_secs(60), finished).await;
        handle.stop();
        handle.join().await.expect("the worker stops");
    }
    let row = app
        .workflow_status(id)
        .await
        .expect("status")
        .expect("the workflow exists");
    assert!(
        row.nodes.iter().all(|n| n.status == NodeStatus::Succeeded),
        "{row:?}"
    );
    let b = row
        .nodes
        .iter()
        .find(|n| n.name == "b")
        .and_then(|n| n.job_id)
        .expect("b ran");
    assert_eq!(app.job_result::<usize>(b).await.expect("read"), Some(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_child_reads_its_parents_returned_value_on_both_stores() {
    let (_db, app) = pg_app_with(build).await;
    workflow(&app, None).await;
    let (store, app) = memory_app_with(build);
    workflow(&app, Some(&store)).await;
}
