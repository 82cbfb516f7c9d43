//! Paused queues against a real database: claims skip them, deferring goes on, waiting
//! jobs go back to `todo` while the running one finishes, a resume wakes the workers (by
//! notification, or by polling without one), and bad names are refused.

use std::sync::Arc;
use std::time::Duration;

use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Error, JobStatus, Task};
use serde::{Deserialize, Serialize};

use crate::harness::{Log, Record, TestDb, record, schema_db, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);
/// Long enough that only a notification can wake an idle worker within a test.
const HOUR: Duration = Duration::from_secs(3600);

/// Logs `start <label>`, then runs until the log holds `release`.
#[derive(Serialize, Deserialize)]
struct Gate {
    label: String,
}

impl Task for Gate {
    fn name() -> std::borrow::Cow<'static, str> {
        "pauses.gate".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let log = Log::of(&ctx);
        log.push(format!("start {}", self.label));
        while !log.events().iter().any(|e| e == "release") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Record>()
        .task::<Gate>()
        .build()
        .expect("test app builds")
}

#[tokio::test]
async fn a_paused_queue_is_skipped_and_a_resume_wakes_the_worker() {
    let db = schema_db().await;
    let app = app(&db);
    let manager = app.job_manager();
    assert!(manager.pause_queue("a").await.expect("pause"));
    assert!(!manager.pause_queue("a").await.expect("pause again"));
    // Deferring into a paused queue goes on.
    let a = app
        .configure(record("a"))
        .with_queue("a")
        .defer()
        .await
        .expect("defer");
    let b = app
        .configure(record("b"))
        .with_queue("b")
        .defer()
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            additional_context: Some(log.clone()),
            fetch_job_polling_interval: HOUR,
            ..WorkerConfig::default()
        })
        .await
        .expect("worker");
    wait_for("b to succeed", DEADLINE, || async {
        manager.get_job_status(b).await.expect("status") == JobStatus::Succeeded
    })
    .await;
    // One claim would have taken both: `a` was skipped.
    assert_eq!(
        manager.get_job_status(a).await.expect("status"),
        JobStatus::Todo
    );
    let paused = manager.list_queue_pauses().await.expect("pauses");
    assert_eq!(
        paused
            .iter()
            .map(|p| p.queue_name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert!(manager.resume_queue("a").await.expect("resume"));
    assert!(!manager.resume_queue("a").await.expect("resume again"));
    // The worker polls once an hour: only the resume's notification wakes it.
    wait_for("a to succeed after the resume", DEADLINE, || async {
        manager.get_job_status(a).await.expect("status") == JobStatus::Succeeded
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    assert_eq!(log.events(), ["b", "a"]);
    assert!(
        manager
            .list_queue_pauses()
            .await
            .expect("pauses")
            .is_empty()
    );
}

/// A worker holding a running job and waiting ones of a queue that gets paused: the
/// waiting ones go back to `todo` (no worker, no attempt), the running one finishes, and
/// nothing of the queue runs until it is resumed.
async fn pausing_hands_back_the_waiting_jobs(listen_notify: bool) {
    let db = schema_db().await;
    let app = app(&db);
    let manager = app.job_manager();
    // Quick jobs first: the worker claims ahead only at the pace of ended attempts.
    let warm: Vec<_> = (0..20)
        .map(|n| {
            app.configure(record(format!("warm {n}")))
                .with_queue("warm")
                .with_priority(1)
        })
        .collect();
    app.batch_defer(warm).await.expect("defer");
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = app
            .configure(Gate {
                label: n.to_string(),
            })
            .with_queue("q")
            .defer()
            .await
            .expect("defer");
        ids.push(id);
    }
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(WorkerConfig {
            additional_context: Some(log.clone()),
            concurrency: 1,
            listen_notify,
            // Without notifications, the pause is seen at the next poll.
            fetch_job_polling_interval: if listen_notify {
                HOUR
            } else {
                Duration::from_millis(100)
            },
            ..WorkerConfig::default()
        })
        .await
        .expect("worker");
    wait_for("the first gate to start", DEADLINE, || async {
        log.events().contains(&"start 0".to_owned())
    })
    .await;
    let doing = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'";
    wait_for(
        "jobs to wait in the worker's local queue",
        DEADLINE,
        || async { db.count(doing).await > 1 },
    )
    .await;
    assert!(manager.pause_queue("q").await.expect("pause"));
    wait_for("the waiting jobs to go back", DEADLINE, || async {
        db.count(doing).await == 1
    })
    .await;
    let back = db
        .count(
            "SELECT count(*) FROM procrastinate_jobs
          WHERE status = 'todo' AND worker_id IS NULL AND attempts = 0",
        )
        .await;
    assert_eq!(
        back, 4,
        "every waiting job is todo again, no attempt counted"
    );
    log.push("release".to_owned());
    wait_for("the running job to finish", DEADLINE, || async {
        manager.get_job_status(ids[0]).await.expect("status") == JobStatus::Succeeded
    })
    .await;
    assert_eq!(db.count(doing).await, 0, "nothing of a paused queue starts");
    assert_eq!(
        log.events()
            .iter()
            .filter(|e| e.starts_with("start"))
            .count(),
        1
    );
    assert!(manager.resume_queue("q").await.expect("resume"));
    wait_for(
        "every job to succeed after the resume",
        DEADLINE,
        || async {
            db.count("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
                .await
                == 25
        },
    )
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
}

#[tokio::test]
async fn pausing_hands_back_the_waiting_jobs_through_notify() {
    pausing_hands_back_the_waiting_jobs(true).await;
}

#[tokio::test]
async fn pausing_hands_back_the_waiting_jobs_by_polling() {
    pausing_hands_back_the_waiting_jobs(false).await;
}

#[tokio::test]
async fn a_one_shot_worker_leaves_a_paused_queue_alone() {
    let db = schema_db().await;
    let app = app(&db);
    let manager = app.job_manager();
    manager.pause_queue("a").await.expect("pause");
    let a = app
        .configure(record("a"))
        .with_queue("a")
        .defer()
        .await
        .expect("defer");
    let b = app.defer(record("b")).await.expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(WorkerConfig {
        additional_context: Some(log.clone()),
        ..WorkerConfig::default().one_shot()
    })
    .await
    .expect("one-shot worker");
    assert_eq!(log.events(), ["b"]);
    assert_eq!(
        manager.get_job_status(a).await.expect("status"),
        JobStatus::Todo
    );
    assert_eq!(
        manager.get_job_status(b).await.expect("status"),
        JobStatus::Succeeded
    );
}

#[tokio::test]
async fn bad_queue_names_are_refused_and_change_nothing() {
    let db = schema_db().await;
    let manager = app(&db).job_manager();
    for bad in ["", &"q".repeat(41)] {
        let error = manager.pause_queue(bad).await.expect_err("refused");
        assert!(matches!(error, Error::InvalidInput(_)), "{error}");
        let error = manager.resume_queue(bad).await.expect_err("refused");
        assert!(matches!(error, Error::InvalidInput(_)), "{error}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_queue_pauses").await,
        0
    );
}
