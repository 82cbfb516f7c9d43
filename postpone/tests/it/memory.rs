//! The in-memory store against PostgreSQL: every scenario runs on both, and what it saw
//! (run order, statuses, attempts, event types, errors) must be equal, so the two stores
//! cannot drift apart. Each scenario also checks a few results outright, so both cannot
//! be wrong the same way unnoticed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postpone::RetryDecision;
use postpone::store::{AttemptError, DeferJobParams, FinishJobParams, RetryJob};
use postpone::store::{FetchJobsParams, RescueParams, StartMark};
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Error, JobFilter, JobStatus, MemoryStore, Periodic, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::harness::{Log, Record, TestDb, schema_db, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

/// Fails every time; retried twice at once.
#[derive(Serialize, Deserialize)]
struct Flaky;

impl Task for Flaky {
    fn name() -> std::borrow::Cow<'static, str> {
        "mem.flaky".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("attempt {}", ctx.job().attempts));
        Err(TaskError::new("Boom", "always fails"))
    }
}

/// Fails, no retry.
#[derive(Serialize, Deserialize)]
struct Fails;

impl Task for Fails {
    fn name() -> std::borrow::Cow<'static, str> {
        "mem.fails".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Err(TaskError::new("Boom", "fails"))
    }
}

/// Runs until aborted.
#[derive(Serialize, Deserialize)]
struct Forever;

impl Task for Forever {
    fn name() -> std::borrow::Cow<'static, str> {
        "mem.forever".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push("started".to_owned());
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// A periodic task: the tick's timestamp and a label from the registration's kwargs.
#[derive(Serialize, Deserialize)]
struct Tick {
    timestamp: i64,
    label: String,
}

impl Task for Tick {
    fn name() -> std::borrow::Cow<'static, str> {
        "mem.tick".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        Log::of(&ctx).push(format!("tick {} {}", self.label, self.timestamp));
        Ok(())
    }
}

/// One store under test, with what the scenarios need to look inside it.
enum Backend {
    Memory(MemoryStore),
    Pg(TestDb),
}

impl Backend {
    fn app(&self) -> App {
        let builder = App::builder()
            .task::<Record>()
            .task::<Flaky>()
            .task::<Fails>()
            .task::<Forever>();
        let builder = match self {
            Self::Memory(store) => builder.store(Arc::new(store.clone())),
            Self::Pg(db) => builder.database_url(&db.url).expect("test url parses"),
        };
        builder.build().expect("test app builds")
    }

    /// An app with two schedules of [`Tick`] every 10 minutes, `b` with a queueing lock,
    /// and ticks older than 400 s skipped.
    fn periodic_app(&self) -> App {
        let builder = App::builder()
            .task::<Tick>()
            .periodic(
                Periodic::new::<Tick>("*/10 * * * *")
                    .with_periodic_id("a")
                    .with_kwargs(serde_json::json!({"label": "a"})),
            )
            .periodic(
                Periodic::new::<Tick>("*/10 * * * *")
                    .with_periodic_id("b")
                    .with_kwargs(serde_json::json!({"label": "b"}))
                    .with_queueing_lock("tick-b")
                    .with_priority(3),
            )
            .periodic_max_delay(Duration::from_secs(400));
        let builder = match self {
            Self::Memory(store) => builder.store(Arc::new(store.clone())),
            Self::Pg(db) => builder.database_url(&db.url).expect("test url parses"),
        };
        builder.build().expect("test app builds")
    }

    /// Makes `by` pass for workers and events: the memory store's clock moves on; in
    /// PostgreSQL, whose `now()` cannot be moved, heartbeats and event times move back
    /// instead, which is the same to every query (no scenario here passes time over a
    /// scheduled job, whose schedule would not move back with them).
    async fn pass_time(&self, by: Duration) {
        match self {
            Self::Memory(store) => store.clock().advance(by),
            Self::Pg(db) => {
                let seconds = by.as_secs_f64();
                db.client()
                    .await
                    .execute(
                        "WITH shift AS (SELECT make_interval(secs => $1) AS by),
                              workers AS (UPDATE procrastinate_workers SET last_heartbeat = last_heartbeat - shift.by FROM shift)
                         UPDATE procrastinate_events SET at = at - shift.by FROM shift",
                        &[&seconds],
                    )
                    .await
                    .expect("move stored times back");
            }
        }
    }

    async fn events(&self, id: i64) -> Vec<String> {
        match self {
            Self::Memory(store) => store
                .events(id)
                .iter()
                .map(|e| e.event_type.as_str().to_owned())
                .collect(),
            Self::Pg(db) => db
                .client()
                .await
                .query(
                    "SELECT type::text FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
                    &[&id],
                )
                .await
                .expect("events")
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }
}

fn config(log: &Arc<Log>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(log.clone()),
        fetch_job_polling_interval: Duration::from_millis(20),
        abort_job_polling_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

/// An error as the scenarios compare it: its kind, not the driver's wording.
fn kind(error: &Error) -> String {
    match error {
        Error::AlreadyEnqueued { queueing_lock } => format!("AlreadyEnqueued({queueing_lock})"),
        Error::InvalidJobStatus { id, action, status } => {
            format!("InvalidJobStatus({id}, {action}, {status})")
        }
        Error::JobNotFound { id } => format!("JobNotFound({id})"),
        Error::Database(_) => "Database".to_owned(),
        other => format!("other: {other}"),
    }
}

fn outcome<T: std::fmt::Debug>(result: &postpone::Result<T>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(error) => kind(error),
    }
}

fn spec(
    queue: &str,
    priority: i32,
    lock: Option<&str>,
    queueing_lock: Option<&str>,
) -> DeferJobParams {
    DeferJobParams {
        queue_name: queue.to_owned(),
        task_name: "tests.record".to_owned(),
        priority,
        lock: lock.map(str::to_owned),
        queueing_lock: queueing_lock.map(str::to_owned),
        args: serde_json::json!({"label": format!("{queue}/{priority}")}),
        scheduled_at: None,
        timeout: None,
        trace_context: None,
        flow: Vec::new(),
    }
}

/// Runs a scenario on PostgreSQL and in memory; they must see the same.
macro_rules! on_both_stores {
    ($($test:ident => $scenario:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $test() {
            let pg = $scenario(&Backend::Pg(schema_db().await)).await;
            let memory = $scenario(&Backend::Memory(MemoryStore::new())).await;
            assert_eq!(memory, pg, "the in-memory store differs from PostgreSQL");
        }
    )*};
}

on_both_stores! {
    priority_then_id => run_by_priority,
    locks_exclusive_and_ordered => lock_order,
    queueing_lock_one_todo_job => queueing_lock,
    future_jobs_wait => scheduling,
    retries_by_strategy => retries,
    abort_of_a_running_job => abort,
    cancel_and_delete => cancel,
    manual_retry_of_a_failed_job => manual_retry,
    lists_and_counts => lists,
    stalled_jobs_and_pruning => stalled,
    periodic_ticks_deduplicated => periodic_ticks,
    builtin_remove_old_jobs => remove_old_jobs,
    batch_finish_and_retry => batch_writes,
    notifications_as_the_triggers_send_them => notifications,
    rescue_of_a_dead_workers_jobs => rescue,
    timeouts_travel_with_claimed_jobs => timeouts,
    paused_queues_are_skipped_and_announced => pauses,
}

/// A paused queue's jobs are not claimed until it is resumed; every subscription hears of
/// a pause or resume (whatever its queues), and of nothing that changed nothing.
async fn pauses(backend: &Backend) -> Vec<String> {
    let store = backend.app().store().clone();
    let mut subscription = store
        .listen(Some(&["b".to_owned()]))
        .await
        .expect("listen")
        .expect("the memory store notifies");
    let mut seen = Vec::new();
    seen.push(format!("paused {:?}", store.pause_queue("a").await));
    seen.push(format!("paused again {:?}", store.pause_queue("a").await));
    let received = tokio::time::timeout(DEADLINE, subscription.recv())
        .await
        .expect("a notification within the deadline");
    seen.push(format!("{:?}", received.expect("the link holds")));
    let ids = store
        .defer_jobs(&[spec("a", 0, None, None), spec("b", 0, None, None)])
        .await
        .expect("defer");
    let worker = store.register_worker().await.expect("register");
    let claim = async || {
        store
            .fetch_jobs(&FetchJobsParams::new(None, worker, 10))
            .await
            .expect("fetch")
            .iter()
            .map(|job| job.queue_name.clone())
            .collect::<Vec<_>>()
    };
    seen.push(format!("claimed {:?}", claim().await));
    let paused: Vec<String> = store
        .list_queue_pauses()
        .await
        .expect("pauses")
        .into_iter()
        .map(|p| p.queue_name)
        .collect();
    seen.push(format!("pauses {paused:?}"));
    seen.push(format!("resumed {:?}", store.resume_queue("a").await));
    seen.push(format!("resumed again {:?}", store.resume_queue("a").await));
    seen.push(format!("claimed {:?}", claim().await));
    // Next on the link: b's insert (not a's: another queue), then the resume; the second
    // pause and resume changed nothing and announced nothing.
    for _ in 0..2 {
        let received = tokio::time::timeout(DEADLINE, subscription.recv())
            .await
            .expect("a notification within the deadline");
        seen.push(format!("{:?}", received.expect("the link holds")));
    }
    assert_eq!(seen[3], "claimed [\"b\"]");
    assert_eq!(seen[7], "claimed [\"a\"]");
    assert_eq!(
        seen[8..],
        [
            format!("JobInserted {{ job_id: {} }}", ids[1]),
            "QueuePausesChanged".to_owned()
        ]
    );
    seen
}

/// A defer call's timeout comes back with the job when it is claimed (and only then:
/// listing a job does not read it); jobs without one come back without.
async fn timeouts(backend: &Backend) -> Vec<String> {
    let store = backend.app().store().clone();
    let mut timed = spec("q", 1, None, None);
    timed.timeout = Some(Duration::from_millis(250));
    let ids = store
        .defer_jobs(&[timed, spec("q", 0, None, None)])
        .await
        .expect("defer");
    let worker = store.register_worker().await.expect("register");
    let claimed = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 2))
        .await
        .expect("fetch");
    let seen: Vec<String> = claimed
        .iter()
        .map(|job| format!("{} {:?}", job.id, job.timeout))
        .collect();
    assert_eq!(
        seen,
        [
            format!("{} Some(250ms)", ids[0]),
            format!("{} None", ids[1])
        ]
    );
    let listed = store.get_job(ids[0]).await.expect("get").expect("exists");
    assert_eq!(listed.timeout, None);
    seen
}

/// What a subscription to queue `q` receives: new jobs of `q` (not of other queues), and
/// the abort requests of its running jobs (not of waiting ones, which are cancelled).
async fn notifications(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let mut subscription = store
        .listen(Some(&["q".to_owned()]))
        .await
        .expect("listen")
        .expect("the memory store notifies");
    let mut seen = Vec::new();
    let mut next = async || {
        let received = tokio::time::timeout(DEADLINE, subscription.recv())
            .await
            .expect("a notification within the deadline");
        format!("{:?}", received.expect("the link holds"))
    };
    let defer = |queue: &str| spec(queue, 0, None, None);
    let a = store.defer_jobs(&[defer("q")]).await.expect("defer")[0];
    seen.push(next().await);
    // A job of another queue is not announced here: the next one is `c`'s.
    store.defer_jobs(&[defer("other")]).await.expect("defer");
    let c = store.defer_jobs(&[defer("q")]).await.expect("defer")[0];
    seen.push(next().await);
    let worker = store.register_worker().await.expect("register");
    let claimed = store
        .fetch_jobs(&FetchJobsParams::new(Some(&["q".to_owned()]), worker, 1))
        .await
        .expect("fetch");
    assert_eq!(claimed[0].id, a);
    store.cancel_job(a, true, false).await.expect("abort");
    seen.push(next().await);
    // Aborting a waiting job cancels it: nothing to announce; the next one is `d`'s.
    store.cancel_job(c, true, false).await.expect("abort");
    store.defer_jobs(&[defer("q")]).await.expect("defer");
    seen.push(next().await);
    assert_eq!(seen[0], format!("JobInserted {{ job_id: {a} }}"));
    assert_eq!(seen[2], format!("AbortJobRequested {{ job_id: {a} }}"));
    seen
}

/// A rescue pass (ADR 11): the jobs a dead worker may have started (at or before its start
/// watermark) go through `decide`, the ones it only claimed go back to `todo` with no
/// attempt counted, an aborted waiting one ends `aborted`; a live worker's job is not
/// touched; each rescue is recorded; the dead worker is removed.
async fn rescue(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let ids = store
        .defer_jobs(&(0..5).map(|_| spec("q", 0, None, None)).collect::<Vec<_>>())
        .await
        .expect("defer");
    let dead = store.register_worker().await.expect("register");
    // The claim starts two jobs at once; a mark covers a third; two only wait.
    let claimed = store
        .fetch_jobs(&FetchJobsParams {
            start: 2,
            ..FetchJobsParams::new(None, dead, 5)
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 5);
    store
        .mark_started(dead, StartMark::at(&claimed[2]))
        .await
        .expect("mark");
    // A watermark never goes back.
    store
        .mark_started(dead, StartMark::at(&claimed[0]))
        .await
        .expect("mark");
    store.cancel_job(ids[4], true, false).await.expect("abort");
    backend.pass_time(HOUR).await;
    let live = store.register_worker().await.expect("register");
    let theirs = store
        .defer_jobs(&[spec("r", 0, None, None)])
        .await
        .expect("defer")[0];
    store
        .fetch_jobs(&FetchJobsParams {
            start: 1,
            ..FetchJobsParams::new(Some(&["r".to_owned()]), live, 1)
        })
        .await
        .expect("claim");
    let retried = ids[0];
    let decide = move |job: &postpone::Job| (job.id == retried).then(RetryDecision::default);
    let params = RescueParams {
        seconds_since_heartbeat: 60.0,
    };
    let report = store
        .rescue_stalled_jobs(&params, &decide)
        .await
        .expect("rescue")
        .expect("no other pass runs");
    assert_eq!(report.handed_back, [ids[3]], "never started: back to todo");
    assert_eq!(report.retried, [ids[0]]);
    assert_eq!(report.failed, [ids[1], ids[2]]);
    assert_eq!(report.aborted, [ids[4]]);
    assert_eq!(report.pruned_workers, [dead]);
    let mut seen = vec![format!("{report:?}")];
    for id in ids.iter().chain([&theirs]) {
        let job = app.job_manager().get_job(*id).await.expect("job");
        let worker = match job.worker_id {
            Some(w) if w == live => "live",
            Some(_) => "dead",
            None => "none",
        };
        seen.push(format!("{id} {} {} {worker}", job.status, job.attempts));
    }
    assert_eq!(
        seen[4],
        format!("{} todo 0 none", ids[3]),
        "no attempt counted"
    );
    assert_eq!(
        seen[6],
        format!("{theirs} doing 0 live"),
        "a live worker's job"
    );
    seen.extend(backend.events(ids[3]).await);
    for rescue in store.list_rescues(&ids).await.expect("rescues") {
        seen.push(format!(
            "rescued {} from {:?}: started {}, {}",
            rescue.job_id,
            rescue.worker_id.map(|w| w == dead),
            rescue.started,
            rescue.outcome
        ));
    }
    let again = store
        .rescue_stalled_jobs(&params, &decide)
        .await
        .expect("rescue again")
        .expect("no other pass runs");
    assert!(again.is_empty(), "a second pass finds nothing: {again:?}");
    seen
}

async fn run_by_priority(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let mut ids = Vec::new();
    for (label, priority) in [("low", -1), ("a", 0), ("high", 5), ("b", 0), ("top", 9)] {
        let job = app.configure(Record {
            label: label.to_owned(),
        });
        ids.push(job.with_priority(priority).defer().await.expect("defer"));
    }
    assert_eq!(ids, [1, 2, 3, 4, 5], "ids increase from 1");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    assert_eq!(log.events(), ["top", "high", "a", "b", "low"]);
    let mut seen = log.events();
    for id in ids {
        let job = app.job_manager().get_job(id).await.expect("job");
        seen.push(format!("{id} {} {}", job.status, job.attempts));
        seen.extend(backend.events(id).await);
    }
    seen
}

async fn lock_order(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let ids = store
        .defer_jobs(&[
            spec("q", 0, Some("L"), None),
            spec("q", 5, Some("L"), None),
            spec("q", 0, None, None),
            spec("q", 0, Some("L"), None),
            spec("other", 9, Some("M"), None),
            spec("q", 1, Some("M"), None),
        ])
        .await
        .expect("defer");
    let worker = store.register_worker().await.expect("register");
    let mut seen = Vec::new();
    // One job per lock per batch, the first of each lock by priority then id; a todo job
    // of another queue still comes first in its lock.
    for round in 0..5 {
        let fetched = store
            .fetch_jobs(&FetchJobsParams::new(Some(&["q".to_owned()]), worker, 10))
            .await
            .expect("fetch");
        let fetched: Vec<i64> = fetched.iter().map(|j| j.id).collect();
        if round == 0 {
            assert_eq!(fetched, [ids[1], ids[2]], "priority 5 first in L; M waits");
        }
        seen.push(format!("round {round}: {fetched:?}"));
        let finish: Vec<FinishJobParams> = fetched
            .iter()
            .map(|&id| FinishJobParams {
                id,
                status: JobStatus::Succeeded,
                delete_job: false,
                error: None,
                result: None,
            })
            .collect();
        let written = store.finish_jobs(&finish).await.expect("finish");
        seen.push(format!("written {written:?}"));
    }
    let all = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 10))
        .await
        .expect("fetch all queues");
    seen.push(format!(
        "all queues: {:?}",
        all.iter().map(|j| j.id).collect::<Vec<_>>()
    ));
    seen
}

async fn queueing_lock(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let mut seen = Vec::new();
    let first = store.defer_jobs(&[spec("q", 0, None, Some("one"))]).await;
    seen.push(outcome(&first));
    let again = store.defer_jobs(&[spec("q", 0, None, Some("one"))]).await;
    assert_eq!(outcome(&again), "AlreadyEnqueued(one)");
    seen.push(outcome(&again));
    // A batch is all or nothing: "two" is not inserted either.
    let batch = store
        .defer_jobs(&[
            spec("q", 0, None, Some("two")),
            spec("q", 0, None, Some("one")),
        ])
        .await;
    seen.push(outcome(&batch));
    let doubled = store
        .defer_jobs(&[
            spec("q", 0, None, Some("three")),
            spec("q", 0, None, Some("three")),
        ])
        .await;
    seen.push(outcome(&doubled));
    let jobs = store.list_jobs(&JobFilter::default()).await.expect("list");
    assert_eq!(jobs.len(), 1, "nothing of the refused batches was written");
    // Once the job runs, the lock is free again.
    let worker = store.register_worker().await.expect("register");
    let fetched = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 1))
        .await
        .expect("fetch");
    seen.push(format!("fetched {}", fetched.len()));
    seen.push(outcome(
        &store.defer_jobs(&[spec("q", 0, None, Some("one"))]).await,
    ));
    seen
}

async fn scheduling(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let later = app
        .configure(Record {
            label: "later".to_owned(),
        })
        .schedule_in(Duration::from_secs(3600))
        .defer()
        .await
        .expect("defer");
    let now = app
        .configure(Record {
            label: "now".to_owned(),
        })
        .with_priority(-5)
        .defer()
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    assert_eq!(log.events(), ["now"], "the future job is not fetched");
    let manager = app.job_manager();
    let mut seen = log.events();
    for id in [later, now] {
        seen.push(format!(
            "{id} {}",
            manager.get_job_status(id).await.expect("status")
        ));
        seen.extend(backend.events(id).await);
    }
    seen
}

async fn retries(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let id = app.defer(Flaky).await.expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    let job = app.job_manager().get_job(id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 3));
    let mut seen = log.events();
    seen.push(format!("{} {}", job.status, job.attempts));
    seen.extend(backend.events(id).await);
    seen
}

async fn abort(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let manager = app.job_manager();
    let id = app.defer(Forever).await.expect("defer");
    let waiting = app.defer(Forever).await.expect("defer");
    let log = Arc::new(Log::default());
    let handle = app.start_worker(config(&log)).await.expect("worker");
    wait_for("the job to start", DEADLINE, || async {
        log.events() == ["started"]
    })
    .await;
    let mut seen = Vec::new();
    // The second job waits (concurrency 1): aborting it cancels it at once.
    seen.push(outcome(
        &manager.cancel_job_by_id(waiting, true, false).await,
    ));
    seen.push(outcome(&manager.cancel_job_by_id(id, true, false).await));
    wait_for("the job to be aborted", DEADLINE, || async {
        manager.get_job_status(id).await.expect("status") == JobStatus::Aborted
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    for id in [id, waiting] {
        let job = manager.get_job(id).await.expect("job");
        seen.push(format!(
            "{id} {} {} {}",
            job.status, job.attempts, job.abort_requested
        ));
        seen.extend(backend.events(id).await);
    }
    assert_eq!(
        seen[2..],
        [
            "1 aborted 1 false",
            "deferred",
            "started",
            "abort_requested",
            "aborted",
            "2 cancelled 0 true",
            "deferred",
            "abort_requested",
            "cancelled"
        ]
    );
    seen
}

async fn cancel(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let manager = app.job_manager();
    let ids = store
        .defer_jobs(&[
            spec("q", 0, None, None),
            spec("q", 0, None, None),
            spec("q", 9, None, None),
        ])
        .await
        .expect("defer");
    let mut seen = Vec::new();
    seen.push(outcome(
        &manager.cancel_job_by_id(ids[0], false, false).await,
    ));
    seen.push(outcome(
        &manager.cancel_job_by_id(ids[0], false, false).await,
    ));
    seen.push(outcome(
        &manager.cancel_job_by_id(ids[1], false, true).await,
    ));
    seen.push(outcome(&manager.get_job(ids[1]).await));
    let worker = store.register_worker().await.expect("register");
    store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 1))
        .await
        .expect("fetch");
    // A running job is not cancelled, nor deleted, without abort.
    seen.push(outcome(
        &manager.cancel_job_by_id(ids[2], false, true).await,
    ));
    seen.push(outcome(&manager.cancel_job_by_id(999, true, true).await));
    for id in [ids[0], ids[2]] {
        seen.push(format!(
            "{id} {}",
            manager.get_job_status(id).await.expect("status")
        ));
        seen.extend(backend.events(id).await);
    }
    assert_eq!(
        seen[..4],
        ["ok true", "ok false", "ok true", "JobNotFound(2)"]
    );
    seen
}

async fn manual_retry(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let manager = app.job_manager();
    let failed = app.defer(Fails).await.expect("defer");
    let ok = app
        .defer(Record {
            label: "x".to_owned(),
        })
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    let mut seen = vec![
        outcome(
            &manager
                .retry_job_by_id(
                    failed,
                    RetryDecision {
                        priority: Some(5),
                        queue: Some("elsewhere".to_owned()),
                        ..RetryDecision::default()
                    },
                )
                .await,
        ),
        outcome(&manager.retry_job_by_id(ok, RetryDecision::default()).await),
    ];
    let job = manager.get_job(failed).await.expect("job");
    seen.push(format!(
        "{} {} {} {}",
        job.status, job.attempts, job.priority, job.queue_name
    ));
    assert_eq!(job.status, JobStatus::Todo);
    seen.extend(backend.events(failed).await);
    seen
}

async fn lists(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let manager = app.job_manager();
    store
        .defer_jobs(&[
            spec("a", 0, Some("L1"), None),
            spec("a", 0, None, Some("ql")),
            spec("b", 0, Some("L2"), None),
            spec("b", 3, Some("L1"), None),
            spec("c", 0, None, None),
        ])
        .await
        .expect("defer");
    let mut flaky = spec("a", 0, None, None);
    flaky.task_name = "mem.flaky".to_owned();
    store.defer_jobs(&[flaky]).await.expect("defer");
    let worker = store.register_worker().await.expect("register");
    store
        .fetch_jobs(&FetchJobsParams::new(Some(&["b".to_owned()]), worker, 5))
        .await
        .expect("fetch");
    store.cancel_job(5, false, false).await.expect("cancel");
    let mut seen = Vec::new();
    let filters = [
        JobFilter::default(),
        JobFilter {
            queue_name: Some("a".to_owned()),
            ..JobFilter::default()
        },
        JobFilter {
            status: Some(JobStatus::Doing),
            ..JobFilter::default()
        },
        JobFilter {
            lock: Some("L1".to_owned()),
            ..JobFilter::default()
        },
        JobFilter {
            queueing_lock: Some("ql".to_owned()),
            ..JobFilter::default()
        },
        JobFilter {
            worker_id: Some(worker),
            ..JobFilter::default()
        },
        JobFilter {
            task_name: Some("mem.flaky".to_owned()),
            ..JobFilter::default()
        },
        JobFilter {
            limit: Some(2),
            ..JobFilter::default()
        },
        JobFilter {
            id: Some(3),
            ..JobFilter::default()
        },
    ];
    for filter in &filters {
        let jobs = manager.list_jobs(filter).await.expect("list");
        seen.push(format!(
            "{:?}",
            jobs.iter().map(|j| (j.id, j.status)).collect::<Vec<_>>()
        ));
        seen.push(format!(
            "queues {:?}",
            manager.list_queues(filter).await.expect("queues")
        ));
        seen.push(format!(
            "tasks {:?}",
            manager.list_tasks(filter).await.expect("tasks")
        ));
        seen.push(format!(
            "locks {:?}",
            manager.list_locks(filter).await.expect("locks")
        ));
    }
    assert_eq!(
        seen[0],
        "[(1, Todo), (2, Todo), (3, Doing), (4, Doing), (5, Cancelled), (6, Todo)]"
    );
    seen.push(outcome(
        &manager
            .list_jobs(&JobFilter {
                limit: Some(-1),
                ..JobFilter::default()
            })
            .await
            .map(|j| j.len()),
    ));
    seen
}

async fn stalled(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let manager = app.job_manager();
    store
        .defer_jobs(&[
            spec("q", 0, None, None),
            spec("r", 0, None, None),
            spec("q", 0, None, None),
        ])
        .await
        .expect("defer");
    let old = store.register_worker().await.expect("register");
    let fetched = store
        .fetch_jobs(&FetchJobsParams::new(None, old, 2))
        .await
        .expect("fetch");
    // An hour passes without a heartbeat from `old`; `live` registers after it.
    backend.pass_time(HOUR).await;
    let live = store.register_worker().await.expect("register");
    let ids = |jobs: Vec<postpone::Job>| {
        format!(
            "{:?}",
            jobs.iter().map(|j| (j.id, j.worker_id)).collect::<Vec<_>>()
        )
    };
    // Silent for 3 hours: nobody; for a minute: `old`, never `live`.
    let (long, short) = (3.0 * 3600.0, 60.0);
    let mut seen = vec![
        format!("fetched {}", fetched.len()),
        ids(manager
            .list_stalled_jobs(long, None, None)
            .await
            .expect("stalled")),
        ids(manager
            .list_stalled_jobs(short, None, None)
            .await
            .expect("stalled")),
        ids(manager
            .list_stalled_jobs(short, Some("r"), None)
            .await
            .expect("stalled")),
        ids(manager
            .list_stalled_jobs(short, None, Some("mem.nothing"))
            .await
            .expect("stalled")),
        format!(
            "pruned {:?}",
            store.prune_stalled_workers(long).await.expect("prune")
        ),
        format!(
            "pruned {:?}",
            store.prune_stalled_workers(short).await.expect("prune")
        ),
    ];
    assert_eq!(
        seen[6],
        format!("pruned [{old}]"),
        "only the silent worker is pruned"
    );
    assert_eq!(
        seen[2],
        format!("[(1, Some({old})), (2, Some({old}))]"),
        "the silent worker's jobs are stalled"
    );
    // Its jobs lose their worker, and stay stalled whatever the delay.
    seen.push(ids(manager
        .list_stalled_jobs(long, None, None)
        .await
        .expect("stalled")));
    // The pruned worker cannot claim a job any more; the live one can.
    seen.push(outcome(
        &store
            .fetch_jobs(&FetchJobsParams::new(None, old, 1))
            .await
            .map(|j| j.len()),
    ));
    seen.push(outcome(
        &store
            .fetch_jobs(&FetchJobsParams::new(None, live, 1))
            .await
            .map(|j| j.len()),
    ));
    store.update_heartbeat(live).await.expect("heartbeat");
    // Old finished jobs go by their latest event.
    let finish: Vec<FinishJobParams> = [1, 2, 3]
        .into_iter()
        .map(|id| FinishJobParams {
            id,
            status: JobStatus::Succeeded,
            delete_job: false,
            error: None,
            result: None,
        })
        .collect();
    seen.push(format!(
        "finished {:?}",
        store.finish_jobs(&finish).await.expect("finish")
    ));
    seen.push(format!(
        "deleted {}",
        manager
            .delete_old_jobs(&postpone::manager::DeleteOldJobsOptions {
                nb_hours: 1,
                ..Default::default()
            })
            .await
            .expect("delete")
    ));
    backend.pass_time(2 * HOUR).await;
    seen.push(format!(
        "deleted {}",
        manager
            .delete_old_jobs(&postpone::manager::DeleteOldJobsOptions {
                nb_hours: 1,
                ..Default::default()
            })
            .await
            .expect("delete")
    ));
    seen.push(format!(
        "left {}",
        manager
            .list_jobs(&JobFilter::default())
            .await
            .expect("list")
            .len()
    ));
    seen.extend(backend.events(1).await);
    store.unregister_worker(live).await.expect("unregister");
    seen
}

/// The test helpers, in memory only: `run_all`, `job_inserted`, `reset`, and a waiting
/// worker that finds new jobs by polling.
#[tokio::test]
async fn memory_store_helpers() {
    let store = MemoryStore::new();
    let app = Backend::Memory(store.clone()).app();
    let log = Arc::new(Log::default());

    // job_inserted is signalled by every defer.
    let inserted = store.job_inserted().notified();
    let id = app
        .defer(Record {
            label: "one".to_owned(),
        })
        .await
        .expect("defer");
    tokio::time::timeout(Duration::from_secs(5), inserted)
        .await
        .expect("job_inserted signalled");
    assert_eq!(store.deferred_jobs("tests.record")[0].id, id);
    assert!(store.deferred_jobs("mem.flaky").is_empty());

    let stats = store
        .run_all_with(&app, config(&log))
        .await
        .expect("run_all");
    assert_eq!((stats.succeeded(), stats.completed()), (1, 1));
    assert_eq!(log.events(), ["one"]);
    assert!(
        store.workers().is_empty(),
        "the one-shot worker unregistered"
    );

    // run_all refuses an app on another store, before starting anything.
    let other = Backend::Memory(MemoryStore::new()).app();
    let err = store.run_all(&other).await.expect_err("another store");
    assert!(
        err.to_string().contains("does not run on this MemoryStore"),
        "{err}"
    );

    // A waiting worker without NOTIFY finds new jobs at its polling interval.
    let handle = app.start_worker(config(&log)).await.expect("worker");
    app.defer(Record {
        label: "two".to_owned(),
    })
    .await
    .expect("defer");
    wait_for("the polling worker to run the job", DEADLINE, || async {
        log.events() == ["one", "two"]
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");

    store.reset();
    assert!(store.jobs().is_empty() && store.events(id).is_empty());
    let again = app
        .defer(Record {
            label: "x".to_owned(),
        })
        .await
        .expect("defer");
    assert_eq!(again, 1, "ids start again at 1 after reset");
}

#[tokio::test]
async fn a_worker_on_the_memory_store_wakes_on_inserts_and_survives_pruning() {
    use std::time::Duration;

    use postpone::store::Store as _;
    use postpone::task::{JobContext, TaskError};
    use postpone::worker::WorkerConfig;
    use postpone::{App, JobStatus, MemoryStore, Task};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping;

    impl Task for Ping {
        fn name() -> std::borrow::Cow<'static, str> {
            "tests.ping".into()
        }
        async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
            Ok(())
        }
    }

    let store = MemoryStore::new();
    let app = App::builder()
        .store(std::sync::Arc::new(store.clone()))
        .task::<Ping>()
        .build()
        .expect("app");
    let handle = app
        .start_worker(WorkerConfig {
            // Polling alone would take an hour: only the store's insert signal can wake it.
            fetch_job_polling_interval: Duration::from_secs(3600),
            ..WorkerConfig::default()
        })
        .await
        .expect("worker");
    let first_id = handle.worker_id();
    let manager = app.job_manager();
    let one = app.defer(Ping).await.expect("defer");
    crate::harness::wait_for("the first job to run", Duration::from_secs(20), || async {
        manager.get_job_status(one).await.expect("status") == JobStatus::Succeeded
    })
    .await;
    // Another worker prunes this one as stalled.
    store
        .prune_stalled_workers(-1.0)
        .await
        .expect("prune everyone");
    let two = app.defer(Ping).await.expect("defer");
    crate::harness::wait_for("the second job to run", Duration::from_secs(20), || async {
        manager.get_job_status(two).await.expect("status") == JobStatus::Succeeded
    })
    .await;
    assert_ne!(
        handle.worker_id(),
        first_id,
        "registered again after the prune"
    );
    handle.stop();
    handle.join().await.expect("worker stops");
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test time parses")
        .with_timezone(&Utc)
}

async fn periodic_ticks(backend: &Backend) -> Vec<String> {
    let app = backend.periodic_app();
    let mut seen = Vec::new();
    let ten = at("2026-01-01T10:00:00Z").timestamp();
    // Both schedules defer the 10:00 tick once, however often they are asked.
    let first = app.defer_periodic_jobs(at("2026-01-01T10:05:00Z")).await;
    assert_eq!(outcome(&first), "ok [1, 2]");
    seen.push(outcome(&first));
    let again = app.defer_periodic_jobs(at("2026-01-01T10:06:00Z")).await;
    assert_eq!(outcome(&again), "ok []", "a tick is deferred once");
    seen.push(outcome(&again));
    // Another app (another worker) asking for the same tick gets nothing either.
    let other = backend.periodic_app();
    seen.push(outcome(
        &other.defer_periodic_jobs(at("2026-01-01T10:07:00Z")).await,
    ));
    // 10:10: `a` again; `b` is skipped, its queueing lock still held by its todo job.
    let next = app.defer_periodic_jobs(at("2026-01-01T10:12:00Z")).await;
    seen.push(outcome(&next));
    // 10:20 asked at 10:27: older than the max delay, skipped.
    let late = app.defer_periodic_jobs(at("2026-01-01T10:27:00Z")).await;
    assert_eq!(
        outcome(&late),
        "ok []",
        "ticks older than max_delay are skipped"
    );
    seen.push(outcome(&late));
    for job in app
        .job_manager()
        .list_jobs(&JobFilter::default())
        .await
        .expect("list")
    {
        seen.push(format!(
            "job {} {} p{} {:?} {}",
            job.id, job.task_name, job.priority, job.queueing_lock, job.args
        ));
        if job.id == 1 {
            assert_eq!(
                job.args,
                serde_json::json!({"label": "a", "timestamp": ten})
            );
        }
    }
    let log = Arc::new(Log::default());
    let config = WorkerConfig {
        periodic: false,
        ..config(&log).one_shot()
    };
    app.run_worker(config).await.expect("worker");
    let mut ran = log.events();
    ran.sort();
    assert_eq!(
        ran,
        [
            format!("tick a {ten}"),
            format!("tick a {}", ten + 600),
            format!("tick b {ten}"),
        ]
    );
    seen.extend(ran);
    seen
}

async fn remove_old_jobs(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let mut seen = Vec::new();
    let ids = app
        .batch_defer((0..3).map(|i| {
            app.configure(Record {
                label: i.to_string(),
            })
        }))
        .await
        .expect("defer");
    let log = Arc::new(Log::default());
    app.run_worker(config(&log).one_shot())
        .await
        .expect("worker");
    assert_eq!(ids.len(), 3);
    // Deferred by Procrastinate's old name (its alias), as a Python service would.
    let cleanup = app
        .configure_by_name(
            "procrastinate.builtin_tasks.remove_old_jobs",
            serde_json::json!({"max_hours": 0}),
        )
        .defer()
        .await
        .expect("defer remove_old_jobs");
    let job = app.job_manager().get_job(cleanup).await.expect("job");
    seen.push(format!("{} {}", job.queue_name, job.task_name));
    assert_eq!(job.queue_name, "builtin");
    app.run_worker(config(&log).with_queues(["builtin"]).one_shot())
        .await
        .expect("worker");
    let left: Vec<String> = app
        .job_manager()
        .list_jobs(&JobFilter::default())
        .await
        .expect("list")
        .iter()
        .map(|job| format!("{} {} {}", job.id, job.task_name, job.status))
        .collect();
    assert_eq!(
        left,
        [format!(
            "{cleanup} procrastinate.builtin_tasks.remove_old_jobs succeeded"
        )],
        "the three finished jobs were removed"
    );
    seen.extend(left);
    seen
}

/// The completer's batch writes: each job of a mixed batch, given out of id order, gets its
/// own outcome; a job not in a writable status is left alone and not reported written.
async fn batch_writes(backend: &Backend) -> Vec<String> {
    let app = backend.app();
    let store = app.store();
    let manager = app.job_manager();
    let ids = store
        .defer_jobs(&(0..8).map(|_| spec("q", 0, None, None)).collect::<Vec<_>>())
        .await
        .expect("defer");
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8]);
    let worker = store.register_worker().await.expect("register");
    let fetched = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 7))
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 7, "jobs 1 to 7 doing, 8 todo");
    assert!(
        manager
            .cancel_job_by_id(6, true, false)
            .await
            .expect("abort")
    );
    // Each write may carry its attempt's error, recorded with it unless the job is
    // deleted or not written.
    let error = |kind: &str| {
        Some(AttemptError {
            attempt: 1,
            worker_id: Some(1),
            kind: kind.to_owned(),
            message: format!("{kind} happened"),
        })
    };
    let finish = |id, status, delete_job, error| FinishJobParams {
        id,
        status,
        delete_job,
        error,
        result: None,
    };
    let mut finished = store
        .finish_jobs(&[
            finish(3, JobStatus::Failed, false, error("Boom")),
            finish(1, JobStatus::Succeeded, false, None),
            finish(2, JobStatus::Aborted, false, error("JobAborted")),
            finish(4, JobStatus::Failed, true, error("Deleted")),
            finish(8, JobStatus::Cancelled, false, None),
        ])
        .await
        .expect("finish");
    finished.sort_unstable();
    assert_eq!(finished, [1, 2, 3, 4, 8]);
    let retry = |retry_at, priority, queue: Option<&str>, lock: Option<&str>| RetryDecision {
        retry_at,
        priority,
        queue: queue.map(str::to_owned),
        lock: lock.map(str::to_owned),
    };
    let retry_job = |id, decision, error| RetryJob {
        id,
        decision,
        error,
    };
    let mut retried = store
        .retry_jobs(&[
            retry_job(
                7,
                retry(None, Some(4), Some("other"), Some("L")),
                error("Flaky"),
            ),
            retry_job(
                5,
                retry(Some(at("2030-01-01T00:00:00Z")), None, None, None),
                None,
            ),
            retry_job(6, retry(None, Some(9), None, None), error("Aborting")),
            retry_job(1, retry(None, None, None, None), error("Late")),
        ])
        .await
        .expect("retry");
    retried.sort_unstable();
    assert_eq!(retried, [5, 6, 7], "job 1 is not doing any more");
    let errors: Vec<String> = manager
        .list_job_errors(&ids)
        .await
        .expect("errors")
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?} {}: {}",
                e.job_id, e.attempt, e.worker_id, e.kind, e.message
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            "2 1 Some(1) JobAborted: JobAborted happened",
            "3 1 Some(1) Boom: Boom happened",
            "6 1 Some(1) Aborting: Aborting happened",
            "7 1 Some(1) Flaky: Flaky happened",
        ],
        "recorded for the jobs written and kept only"
    );
    let mut seen = vec![
        format!("finished {finished:?}"),
        format!("retried {retried:?}"),
    ];
    for id in ids {
        let Ok(job) = manager.get_job(id).await else {
            seen.push(format!("{id} gone"));
            continue;
        };
        seen.push(format!(
            "{id} {} attempts {} queue {} priority {} lock {:?} scheduled {:?}",
            job.status, job.attempts, job.queue_name, job.priority, job.lock, job.scheduled_at
        ));
        seen.extend(backend.events(id).await);
    }
    for expected in [
        "1 succeeded attempts 1 queue q priority 0 lock None scheduled None",
        "2 aborted attempts 1 queue q priority 0 lock None scheduled None",
        "3 failed attempts 1 queue q priority 0 lock None scheduled None",
        "4 gone",
        "5 todo attempts 1 queue q priority 0 lock None scheduled Some(2030-01-01T00:00:00Z)",
        // An abort-requested job fails instead of going back to todo, unchanged.
        "6 failed attempts 0 queue q priority 0 lock None scheduled None",
        "8 cancelled attempts 0 queue q priority 0 lock None scheduled None",
    ] {
        assert!(
            seen.iter().any(|line| line == expected),
            "{expected}: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|line| line.starts_with(
            "7 todo attempts 1 queue other priority 4 lock Some(\"L\") scheduled Some("
        )),
        "{seen:?}"
    );
    // Retried "now": the time differs between runs and stores.
    for line in &mut seen {
        if line.starts_with("7 ") {
            if let Some(at) = line.find(" scheduled ") {
                line.truncate(at);
            }
        }
    }
    seen
}

/// An app runs on one store: given a memory store and a database as well, it refuses to
/// build rather than split its writes between them.
#[test]
fn an_app_is_given_one_store() {
    let err = App::builder()
        .store(Arc::new(MemoryStore::new()))
        .database_url("postgres://u@db.example/app")
        .expect("url parses")
        .build()
        .expect_err("two stores");
    let message = err.to_string();
    assert!(
        message.contains("both a store and a database") && message.contains("db.example"),
        "{message}"
    );
}
