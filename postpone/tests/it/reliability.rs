//! Faults under a running worker and its pool: the PostgreSQL server restarts, or ends
//! backends. The worker reconnects, its LISTEN resumes, a completion that could not be
//! written is written later, no job is lost or run twice, and no statement fails for a
//! connection the server had already closed. Restarts run on a private cluster so they
//! disturb no other test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, JobStatus, Task};
use postpone_testkit::PrivateCluster;
use serde::{Deserialize, Serialize};

use crate::harness::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Runs(Mutex<Vec<String>>);

impl Runs {
    fn push(&self, label: String) {
        self.0.lock().expect("runs lock").push(label);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("runs lock").clone()
    }
}

/// Records its label, after an optional pause.
#[derive(Serialize, Deserialize)]
struct Step {
    label: String,
    millis: u64,
}

impl Task for Step {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.step".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let runs = ctx.additional_context::<Runs>().expect("runs context");
        runs.push(format!("start {}", self.label));
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        runs.push(format!("end {}", self.label));
        Ok(())
    }
}

async fn defer_until_accepted(app: &App, label: &str, millis: u64) -> i64 {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let attempt = app
            .defer(Step {
                label: label.to_owned(),
                millis,
            })
            .await;
        match attempt {
            Ok(id) => return id,
            // While the server is down a defer fails with a connection error; once it
            // answers, the first one succeeds (the store drops the connections it cut).
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("defer {label} failed, retrying: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("defer {label} kept failing: {error}"),
        }
    }
}

async fn listening(url: &str) -> bool {
    let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return false;
    };
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .map(|row| row.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

#[tokio::test]
async fn a_server_restart_loses_no_job_and_runs_none_twice() {
    let cluster = Arc::new(PrivateCluster::start().unwrap_or_else(|e| panic!("{e}")));
    let admin_url = cluster.url("postgres");
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the private cluster");
    tokio::spawn(connection);
    admin
        .batch_execute("CREATE DATABASE restart")
        .await
        .expect("create database");
    let url = cluster.url("restart");
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    postpone::schema::apply(&mut client, postpone::schema::ApplyScope::All)
        .await
        .expect("schema");
    drop(client);

    let app = App::builder()
        .database_url(&url)
        .expect("url")
        .task::<Step>()
        .build()
        .expect("app");
    let runs = Arc::new(Runs::default());
    let handle = app
        .start_worker(WorkerConfig {
            concurrency: 2,
            additional_context: Some(runs.clone()),
            // Only NOTIFY (or the notifier's wake-up after reconnecting) can wake it.
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..WorkerConfig::default()
        })
        .await
        .expect("worker");
    wait_for("the listener", DEADLINE, || listening(&url)).await;

    let before = defer_until_accepted(&app, "before", 0).await;
    wait_for("the first job", DEADLINE, || async {
        runs.all().contains(&"end before".to_owned())
    })
    .await;
    // A job runs while the server restarts: its outcome cannot be written at first.
    let during = defer_until_accepted(&app, "during", 1500).await;
    wait_for("the long job to start", DEADLINE, || async {
        runs.all().contains(&"start during".to_owned())
    })
    .await;
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .expect("restart task")
        .expect("restart");

    // The listener comes back by itself, and then NOTIFY wakes the worker again.
    wait_for("the listener to reconnect", DEADLINE, || listening(&url)).await;
    let after = defer_until_accepted(&app, "after", 0).await;
    let manager = app.job_manager();
    wait_for("every job to succeed", DEADLINE, || async {
        let mut all = true;
        for id in [before, during, after] {
            all &= matches!(manager.get_job_status(id).await, Ok(JobStatus::Succeeded));
        }
        all
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let mut seen = runs.all();
    seen.sort();
    assert_eq!(
        seen,
        [
            "end after",
            "end before",
            "end during",
            "start after",
            "start before",
            "start during"
        ],
        "each job ran exactly once"
    );
    drop(admin);
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.stop().expect("remove the private cluster");
    }
}

/// Backends of the pool terminated (`pg_terminate_backend`, as a failover or an admin
/// does): the next defer and the next read still succeed, at the first try, because the
/// store never runs a statement on a connection the server already closed.
#[tokio::test]
async fn a_pooled_connection_the_server_killed_is_never_used() {
    let db = crate::harness::schema_db().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("url")
        .pool_size(3)
        .task::<Step>()
        .build()
        .expect("app");
    let admin = db.client().await;
    for round in 0..5 {
        // Fill the pool with live connections, then have the server end them all.
        let ids = futures_util::future::try_join_all((0..3).map(|i| {
            app.defer(Step {
                label: format!("{round}.{i}"),
                millis: 0,
            })
        }))
        .await
        .expect("defer with live connections");
        let killed: i64 = admin
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()) AS k",
                &[],
            )
            .await
            .expect("terminate")
            .get(0);
        assert!(killed >= 1, "round {round}: no backend to terminate");
        app.defer(Step {
            label: format!("{round} after"),
            millis: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: defer after the kill failed: {e}"));
        let status = app
            .job_manager()
            .get_job_status(ids[0])
            .await
            .unwrap_or_else(|e| panic!("round {round}: read after the kill failed: {e}"));
        assert_eq!(status, JobStatus::Todo);
    }
}

/// After a server restart every pooled connection is dead: the first defer, and the first
/// read, succeed all the same.
#[tokio::test]
async fn the_first_defer_after_a_server_restart_succeeds() {
    let cluster = PrivateCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.url("postgres");
    let app = App::builder()
        .database_url(&url)
        .expect("url")
        .pool_size(4)
        .task::<Step>()
        .build()
        .expect("app");
    app.apply_schema(postpone::ApplyScope::All)
        .await
        .expect("schema");
    let step = |label: &str| Step {
        label: label.to_owned(),
        millis: 0,
    };
    futures_util::future::try_join_all((0..4).map(|i| app.defer(step(&format!("before {i}")))))
        .await
        .expect("defer before the restart");
    let cluster = tokio::task::spawn_blocking(move || cluster.restart().map(|()| cluster))
        .await
        .expect("restart task")
        .expect("restart");
    let id = app
        .defer(step("after"))
        .await
        .expect("first defer after the restart");
    let job = app.job_manager().get_job(id).await.expect("first read");
    assert_eq!(job.status, JobStatus::Todo);
    cluster.stop().expect("remove the private cluster");
}
