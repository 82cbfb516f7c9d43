//! The telemetry seam: a subscriber added to the app sees every worker event (claims,
//! starts, outcomes with their error kinds, batches written, rescues, reconnections), on
//! PostgreSQL and on the memory store alike, under the worker's id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postpone::telemetry::{BatchKind, Event, Outcome, RescueAction, Subscriber};
use postpone::{App, JobStatus, MemoryStore};

use crate::harness::{
    BoomOnce, Log, Panics, Waits, abort_while_running, dead_worker_holds, polling_worker,
    schema_db, wait_for, wait_for_listener, wait_status, work_until,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// An event, copied out of its borrowed form.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Claimed {
        worker_id: i64,
        jobs: Vec<i64>,
    },
    Started {
        worker_id: i64,
        job: i64,
        attempts: i32,
    },
    Finished {
        worker_id: i64,
        job: i64,
        outcome: Outcome,
        error_kind: Option<String>,
    },
    Batch {
        worker_id: i64,
        kind: BatchKind,
        size: usize,
    },
    Rescued {
        job: i64,
        dead_worker: Option<i64>,
        action: RescueAction,
    },
    Reconnected,
    DatabaseError {
        operation: &'static str,
    },
}

/// Records every event.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Subscriber for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        let seen = match event {
            Event::Claimed {
                worker_id, jobs, ..
            } => Seen::Claimed {
                worker_id: *worker_id,
                jobs: jobs.iter().map(|j| j.id).collect(),
            },
            Event::Started { worker_id, job, .. } => Seen::Started {
                worker_id: *worker_id,
                job: job.id,
                attempts: job.attempts,
            },
            Event::Finished {
                worker_id,
                job,
                outcome,
                error_kind,
                ..
            } => Seen::Finished {
                worker_id: *worker_id,
                job: job.id,
                outcome: *outcome,
                error_kind: error_kind.map(str::to_owned),
            },
            Event::BatchWritten {
                worker_id,
                kind,
                size,
                ..
            } => Seen::Batch {
                worker_id: *worker_id,
                kind: *kind,
                size: *size,
            },
            Event::Rescued { job, action, .. } => Seen::Rescued {
                job: job.id,
                dead_worker: job.worker_id,
                action: *action,
            },
            Event::ListenerReconnected { .. } => Seen::Reconnected,
            Event::DatabaseError { operation, .. } => Seen::DatabaseError { operation },
            _ => return,
        };
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(seen);
    }
}

fn app(builder: postpone::AppBuilder, recorder: &Arc<Recorder>) -> App {
    builder
        .task::<BoomOnce>()
        .task::<Panics>()
        .task::<Waits>()
        .subscribe(recorder.clone())
        .build()
        .expect("test app builds")
}

/// Runs a retried-then-succeeded job, a panicking one and an aborted one; checks every
/// event the subscriber saw.
async fn every_outcome_is_seen(app: &App, recorder: &Recorder) {
    let manager = app.job_manager();
    let flaky = app.defer(BoomOnce).await.expect("defer");
    let panics = app.defer(Panics).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker");
    let worker_id = handle.worker_id();
    wait_status(&manager, flaky, JobStatus::Succeeded).await;
    wait_status(&manager, panics, JobStatus::Failed).await;
    let waits = abort_while_running(app, &log).await;
    handle.stop();
    handle.join().await.expect("the worker stops");

    let seen = recorder.seen();
    let finished = |job: i64| -> Vec<(Outcome, Option<String>)> {
        seen.iter()
            .filter_map(|s| match s {
                Seen::Finished {
                    job: j,
                    outcome,
                    error_kind,
                    ..
                } if *j == job => Some((*outcome, error_kind.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        finished(flaky),
        [
            (Outcome::Retried, Some("Boom".to_owned())),
            (Outcome::Succeeded, None)
        ]
    );
    assert_eq!(
        finished(panics),
        [(Outcome::Failed, Some("Panic".to_owned()))]
    );
    assert_eq!(
        finished(waits),
        [(Outcome::Aborted, Some("JobAborted".to_owned()))]
    );
    // Each attempt started once, counting itself.
    let started: Vec<(i64, i32)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Started { job, attempts, .. } => Some((*job, *attempts)),
            _ => None,
        })
        .collect();
    let mut expected_starts = vec![(flaky, 0), (flaky, 1), (panics, 0), (waits, 0)];
    let mut sorted = started.clone();
    sorted.sort_unstable();
    expected_starts.sort_unstable();
    assert_eq!(sorted, expected_starts, "{seen:#?}");
    // Every claimed job started, and every outcome went through a written batch.
    let claimed: usize = seen
        .iter()
        .map(|s| match s {
            Seen::Claimed { jobs, .. } => jobs.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(claimed, started.len(), "{seen:#?}");
    let written: usize = seen
        .iter()
        .map(|s| match s {
            Seen::Batch {
                kind: BatchKind::Outcomes,
                size,
                ..
            } => *size,
            _ => 0,
        })
        .sum();
    assert_eq!(written, 4, "{seen:#?}");
    // In each job's order: claimed, started, finished, written.
    let at = |pred: &dyn Fn(&Seen) -> bool| seen.iter().position(pred).expect("seen");
    let claim = at(&|s| matches!(s, Seen::Claimed { jobs, .. } if jobs.contains(&panics)));
    let start = at(&|s| matches!(s, Seen::Started { job, .. } if *job == panics));
    let finish = at(&|s| matches!(s, Seen::Finished { job, .. } if *job == panics));
    let batch = seen
        .iter()
        .skip(finish)
        .position(|s| matches!(s, Seen::Batch { .. }));
    assert!(
        claim < start && start < finish && batch.is_some(),
        "{seen:#?}"
    );
    // All under this worker's id.
    for s in &seen {
        let id = match s {
            Seen::Claimed { worker_id, .. }
            | Seen::Started { worker_id, .. }
            | Seen::Finished { worker_id, .. }
            | Seen::Batch { worker_id, .. } => *worker_id,
            _ => continue,
        };
        assert_eq!(id, worker_id, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_attempt_on_postgres() {
    let db = schema_db().await;
    let recorder = Arc::new(Recorder::default());
    let app = app(
        App::builder().database_url(&db.url).expect("url"),
        &recorder,
    );
    every_outcome_is_seen(&app, &recorder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_attempt_on_the_memory_store() {
    let recorder = Arc::new(Recorder::default());
    let app = app(
        App::builder().store(Arc::new(MemoryStore::new())),
        &recorder,
    );
    every_outcome_is_seen(&app, &recorder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescue_is_seen_with_the_dead_workers_job() {
    let db = schema_db().await;
    let recorder = Arc::new(Recorder::default());
    let app = app(
        App::builder().database_url(&db.url).expect("url"),
        &recorder,
    );
    let started = app.defer(BoomOnce).await.expect("defer");
    let never_started = app.defer(BoomOnce).await.expect("defer");
    // A dead worker that held two jobs: its start watermark covers the first only.
    dead_worker_holds(&db, 4242, &[started, never_started], Some((0, started))).await;
    work_until(
        &app,
        &[
            (started, JobStatus::Succeeded),
            (never_started, JobStatus::Succeeded),
        ],
    )
    .await;
    let mut rescued: Vec<Seen> = recorder
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::Rescued { .. }))
        .collect();
    rescued.sort_by_key(|s| match s {
        Seen::Rescued { job, .. } => *job,
        _ => 0,
    });
    assert_eq!(
        rescued,
        [
            Seen::Rescued {
                job: started,
                dead_worker: Some(4242),
                action: RescueAction::Retried
            },
            Seen::Rescued {
                job: never_started,
                dead_worker: Some(4242),
                action: RescueAction::HandedBack
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_link_is_seen_when_it_comes_back() {
    let db = schema_db().await;
    let recorder = Arc::new(Recorder::default());
    let app = app(
        App::builder().database_url(&db.url).expect("url"),
        &recorder,
    );
    let log = Arc::new(Log::default());
    let handle = app
        .start_worker(postpone::worker::WorkerConfig {
            additional_context: Some(log.clone()),
            ..postpone::worker::WorkerConfig::default()
        })
        .await
        .expect("worker");
    wait_for_listener(&db).await;
    let admin = db.client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN%') AS k",
            &[],
        )
        .await
        .expect("terminate the listener")
        .get(0);
    assert_eq!(killed, 1);
    wait_for("the worker to listen again", DEADLINE, || async {
        recorder.seen().contains(&Seen::Reconnected)
    })
    .await;
    let seen = recorder.seen();
    let lost = seen.iter().position(|s| {
        *s == Seen::DatabaseError {
            operation: "listen",
        }
    });
    let back = seen.iter().position(|s| *s == Seen::Reconnected);
    assert!(lost.is_some() && lost < back, "{seen:#?}");
    // And it works again: a new job is claimed at once.
    let id = app.defer(BoomOnce).await.expect("defer");
    wait_status(&app.job_manager(), id, JobStatus::Succeeded).await;
    handle.stop();
    handle.join().await.expect("the worker stops");
}
