//! What the dashboard's test binaries share: a fresh database with the schema per test
//! ([`Db`]), jobs put in it in the states a test needs, and the dashboard served over real
//! HTTP on a free port of 127.0.0.1 ([`Served`]).

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use postpone::app::AppBuilder;
use postpone::store::{AttemptError, DeferJobParams, FetchJobsParams, FinishJobParams};
use postpone::{App, JobStatus};
use postpone_web::{DashboardConfig, DashboardError, DashboardSource};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a served dashboard has to stop once asked (requests in flight finish).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh database with the schema, dropped at the end of the test.
pub struct Db {
    /// An app on it (its store, manager, workers).
    pub app: App,
    // Last: dropped after the app's pool.
    database: postpone_testkit::FreshDatabase,
}

impl Db {
    /// A database and an app without tasks.
    pub async fn new() -> Self {
        Self::with_app(|builder| builder).await
    }

    /// A database and an app built by `build` (tasks, periodic schedules) on it.
    pub async fn with_app(build: impl FnOnce(AppBuilder) -> AppBuilder) -> Self {
        let server = postpone_testkit::server()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let database = server
            .fresh_database("postpone_webtest")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let builder = App::builder().database_url(database.url()).expect("url");
        let app = build(builder).build().expect("app");
        app.apply_schema(postpone::ApplyScope::All)
            .await
            .expect("schema");
        Self { app, database }
    }

    /// The dashboard's router on this database.
    pub fn router(&self, config: DashboardConfig) -> Router {
        postpone_web::router(&self.app, config)
    }

    /// The dashboard served over HTTP on a free port of 127.0.0.1.
    pub async fn serve(&self, config: DashboardConfig) -> Served {
        Served::start(DashboardSource::from(&self.app), config).await
    }

    /// Defers a job of task `tests.task` into `queue`.
    pub async fn defer(&self, queue: &str, args: serde_json::Value) -> i64 {
        self.defer_task(queue, "tests.task", args).await
    }

    /// Defers a job of `task` into `queue`.
    pub async fn defer_task(&self, queue: &str, task: &str, args: serde_json::Value) -> i64 {
        let job = DeferJobParams {
            queue_name: queue.to_owned(),
            ..DeferJobParams::resolve(task.to_owned(), args, Default::default()).expect("job")
        };
        self.app.store().defer_jobs(&[job]).await.expect("defer")[0]
    }

    /// Claims the next job of `queue` (the oldest todo one) for a new worker; returns the
    /// job's id and the worker's.
    pub async fn claim(&self, queue: &str) -> (i64, i64) {
        let worker = self.app.store().register_worker().await.expect("register");
        (self.claim_as(queue, worker).await, worker)
    }

    /// Claims the next job of `queue` (the oldest todo one) for `worker`; returns its id.
    pub async fn claim_as(&self, queue: &str, worker: i64) -> i64 {
        let queues = [queue.to_owned()];
        let jobs = self
            .app
            .store()
            .fetch_jobs(&FetchJobsParams::new(Some(&queues), worker, 1))
            .await
            .expect("fetch");
        jobs.first()
            .unwrap_or_else(|| panic!("no todo job in {queue}"))
            .id
    }

    /// Finishes a claimed job with `status`, recording `error` (kind, message) as its
    /// first attempt's, by `worker`.
    pub async fn finish(
        &self,
        id: i64,
        status: JobStatus,
        worker: i64,
        error: Option<(&str, &str)>,
    ) {
        self.app
            .store()
            .finish_jobs(&[FinishJobParams {
                id,
                status,
                delete_job: false,
                error: error.map(|(kind, message)| AttemptError {
                    attempt: 1,
                    worker_id: Some(worker),
                    kind: kind.to_owned(),
                    message: message.to_owned(),
                }),
                result: None,
            }])
            .await
            .expect("finish");
    }

    /// A failed job in queue `default`, with a recorded error.
    pub async fn failed_job(&self) -> i64 {
        self.failed_job_in("default").await
    }

    /// A failed job in `queue`, with a recorded error (`Boom`: "the <b>disk</b> is full").
    /// It is deferred, then the queue's oldest todo job is claimed and failed: call it
    /// before deferring todo jobs into the same queue.
    pub async fn failed_job_in(&self, queue: &str) -> i64 {
        let deferred = self.defer(queue, serde_json::json!({"n": 1})).await;
        let (id, worker) = self.claim(queue).await;
        assert_eq!(id, deferred, "{queue} had an older todo job");
        self.finish(
            id,
            JobStatus::Failed,
            worker,
            Some(("Boom", "the <b>disk</b> is full")),
        )
        .await;
        id
    }

    /// The job's status, read from the database.
    pub async fn status(&self, id: i64) -> JobStatus {
        self.app
            .job_manager()
            .get_job_status(id)
            .await
            .expect("status")
    }

    /// Waits until the job has `status`, up to `timeout`.
    pub async fn wait_for_status(&self, id: i64, status: JobStatus, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.status(id).await;
            if now == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} is still {now}, not {status}, after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The dashboard served by `postpone_web::serve_on` on a free port of 127.0.0.1, until
/// [`Served::stop`] (or, failing that, until dropped: the server task is aborted).
pub struct Served {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DashboardError>>>,
}

impl Served {
    /// Serves `source` with `config`.
    pub async fn start(source: DashboardSource, config: DashboardConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port of 127.0.0.1");
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(postpone_web::serve_on(
            listener,
            source,
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and returns how it ended.
    ///
    /// # Panics
    /// When it does not stop within 10 s, or its task panicked.
    pub async fn stop(mut self) -> Result<(), DashboardError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("a served dashboard's task");
        match tokio::time::timeout(STOP_TIMEOUT, task).await {
            Ok(joined) => joined.expect("the dashboard's task"),
            Err(_) => panic!("the dashboard did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
