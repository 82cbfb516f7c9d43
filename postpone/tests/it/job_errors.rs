//! Failed attempts leave their reason in the database (`postpone_job_errors`), written by
//! the statement that writes the outcome: a task's error (retried, then failed), a panic,
//! a timeout, an unknown task, an abort, a rescue from a dead worker; deleted with the job.

use std::sync::Arc;
use std::time::Duration;

use postpone::manager::DeleteOldJobsOptions;
use postpone::store::FailedAttempt;
use postpone::{App, JobStatus, MemoryStore};

use crate::harness::{
    BoomOnce, Log, Panics, Waits, abort_while_running, dead_worker_holds, polling_worker,
    schema_db, wait_status, work_until,
};

fn app(builder: postpone::AppBuilder) -> App {
    builder
        .task::<BoomOnce>()
        .task::<Panics>()
        .task::<Waits>()
        .build()
        .expect("test app builds")
}

fn lines(errors: &[FailedAttempt]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{} {}: {}", e.attempt, e.kind, e.message))
        .collect()
}

/// Every kind of end an attempt can have, on `app`'s store; the errors by job.
async fn every_failure(app: &App) -> Vec<(i64, Vec<String>)> {
    let manager = app.job_manager();
    let boom = app.defer(BoomOnce).await.expect("defer");
    let panics = app.defer(Panics).await.expect("defer");
    let timed = app
        .configure(Waits { timeout: true })
        .with_timeout(Duration::from_millis(50))
        .defer()
        .await
        .expect("defer");
    let unknown = app
        .configure_by_name("errors.nobody", serde_json::json!({}))
        .allow_unknown()
        .defer()
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker");
    for (id, status) in [
        (boom, JobStatus::Succeeded),
        (panics, JobStatus::Failed),
        (timed, JobStatus::Failed),
        (unknown, JobStatus::Failed),
    ] {
        wait_status(&manager, id, status).await;
    }
    // A person aborts a running job.
    let aborted = abort_while_running(app, &log).await;
    handle.stop();
    handle.join().await.expect("the worker stops");
    let ids = [boom, panics, timed, unknown, aborted];
    let errors = manager.list_job_errors(&ids).await.expect("errors");
    ids.iter()
        .map(|&id| {
            let of: Vec<FailedAttempt> =
                errors.iter().filter(|e| e.job_id == id).cloned().collect();
            (id, lines(&of))
        })
        .collect()
}

fn expected() -> Vec<Vec<String>> {
    [
        vec!["1 Boom: the first attempt blows up"],
        vec!["1 Panic: task panicked: the task panicked on purpose"],
        vec!["1 Timeout: ran longer than its timeout of 50ms"],
        vec![
            "1 TaskNotFound: no task named \"errors.nobody\" is registered in this worker (known: builtin:procrastinate.builtin_tasks.remove_old_jobs, errors.boom_once, errors.panics, errors.waits)",
        ],
        vec!["1 JobAborted: aborted: UserRequest"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_owned).collect())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_attempt_leaves_its_reason_and_goes_with_its_job() {
    let db = schema_db().await;
    let app = app(App::builder().database_url(&db.url).expect("url"));
    let found = every_failure(&app).await;
    let errors: Vec<Vec<String>> = found.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(errors, expected());
    // The worker that ran each attempt is named.
    let manager = app.job_manager();
    let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
    let rows = manager.list_job_errors(&ids).await.expect("errors");
    assert!(rows.iter().all(|e| e.worker_id.is_some()), "{rows:?}");
    // Deleted with their jobs.
    let deleted = manager
        .delete_old_jobs(&DeleteOldJobsOptions {
            nb_hours: 0,
            queue: None,
            include_failed: true,
            include_cancelled: true,
            include_aborted: true,
        })
        .await
        .expect("delete old jobs");
    assert_eq!(deleted, 5);
    assert!(
        manager
            .list_job_errors(&ids)
            .await
            .expect("errors")
            .is_empty()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_job_errors").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_the_same_reasons() {
    let app = app(App::builder().store(Arc::new(MemoryStore::new())));
    let found = every_failure(&app).await;
    let errors: Vec<Vec<String>> = found.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(errors, expected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescued_attempt_says_its_worker_stopped() {
    let db = schema_db().await;
    let app = app(App::builder().database_url(&db.url).expect("url"));
    let id = app.defer(BoomOnce).await.expect("defer");
    // A dead worker (no start watermark: the job may have started).
    dead_worker_holds(&db, 4242, &[id], None).await;
    work_until(&app, &[(id, JobStatus::Succeeded)]).await;
    let manager = app.job_manager();
    let errors = manager.list_job_errors(&[id]).await.expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].attempt, errors[0].kind.as_str()), (1, "Stalled"));
    assert_eq!(errors[0].worker_id, Some(4242));
    assert!(
        errors[0]
            .message
            .starts_with("rescued: its worker 4242 stopped heartbeating"),
        "{errors:?}"
    );
}
