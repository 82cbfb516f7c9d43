//! Faults under a running worker: the PostgreSQL server restarts. The worker reconnects,
//! its LISTEN resumes, a completion that could not be written is written later, and no job
//! is lost or run twice. Runs on a private cluster so the restart disturbs no other test.

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
            // The pool may hand out a connection the restart cut; the next one is new.
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
