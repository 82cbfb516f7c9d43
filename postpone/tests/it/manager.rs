//! The job manager against a real PostgreSQL: status, lists with every filter, per-status
//! counts, cancel / abort / delete, retry of failed jobs, stalled jobs, and old-job cleanup.
//! Jobs are moved through their life with the schema's own functions, as a worker does.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use postpone::RetryDecision;
use postpone::job::Job;
use postpone::manager::DeleteOldJobsOptions;
use postpone::store::JobCounts;
use postpone::task::{JobContext, TaskError};
use postpone::{App, Error, JobFilter, JobManager, JobStatus, Task};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Client;

use crate::harness::{TestDb, schema_db};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    n: i64,
}

impl Task for Record {
    fn name() -> Cow<'static, str> {
        "tests.record".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Other {
    n: i64,
}

impl Task for Other {
    fn name() -> Cow<'static, str> {
        "tests.other".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fn app(db: &TestDb) -> App {
    App::builder()
        .database_url(&db.url)
        .expect("database url")
        .task::<Record>()
        .task::<Other>()
        .build()
        .expect("build app")
}

async fn register_worker(client: &Client) -> i64 {
    client
        .query_one("SELECT procrastinate_register_worker_v1()", &[])
        .await
        .expect("register worker")
        .get(0)
}

/// Fetches the next job of `queue` for `worker` (procrastinate_fetch_job_v2); its id.
async fn fetch(client: &Client, queue: &str, worker: i64) -> i64 {
    let id: Option<i64> = client
        .query_one(
            "SELECT id FROM procrastinate_fetch_job_v2(ARRAY[$1]::varchar[], $2)",
            &[&queue, &worker],
        )
        .await
        .expect("fetch job")
        .get(0);
    id.unwrap_or_else(|| panic!("no job to fetch in queue {queue}"))
}

/// Ends a doing job (procrastinate_finish_job_v1).
async fn finish(client: &Client, id: i64, status: &str) {
    client
        .execute(
            "SELECT procrastinate_finish_job_v1($1, $2::text::procrastinate_job_status, false)",
            &[&id, &status],
        )
        .await
        .expect("finish job");
}

async fn event_types(client: &Client, id: i64) -> Vec<String> {
    client
        .query(
            "SELECT type::text FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("select events")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn ids(jobs: &[Job]) -> Vec<i64> {
    jobs.iter().map(|j| j.id).collect()
}

fn filter() -> JobFilter {
    JobFilter::default()
}

async fn cancel(manager: &JobManager, id: i64, abort: bool, delete: bool) -> bool {
    manager
        .cancel_job_by_id(id, abort, delete)
        .await
        .expect("cancel_job_by_id")
}

fn by(set: impl FnOnce(&mut JobFilter)) -> JobFilter {
    let mut filter = JobFilter::default();
    set(&mut filter);
    filter
}

/// `name: jobs_count {status: n}` for easy comparison.
fn summary(counts: &[JobCounts]) -> Vec<(String, i64, BTreeMap<JobStatus, i64>)> {
    counts
        .iter()
        .map(|c| (c.name.clone(), c.jobs_count, c.stats.clone()))
        .collect()
}

fn stats<const N: usize>(pairs: [(JobStatus, i64); N]) -> BTreeMap<JobStatus, i64> {
    pairs.into_iter().collect()
}

/// j1 todo (alpha, lock L1, qlock Q1), j2 doing (beta, lock L1, priority 1, worker), j3 succeeded
/// (alpha, task tests.other, priority 10), j4 todo (alpha, qlock Q2).
struct Population {
    j1: i64,
    j2: i64,
    j3: i64,
    j4: i64,
    worker: i64,
}

async fn populate(app: &App, client: &Client) -> Population {
    let j1 = app
        .configure(Record { n: 1 })
        .with_queue("alpha")
        .with_lock("L1")
        .with_queueing_lock("Q1")
        .defer()
        .await
        .expect("j1");
    let j2 = app
        .configure(Record { n: 2 })
        .with_queue("beta")
        .with_lock("L1")
        .with_priority(1)
        .defer()
        .await
        .expect("j2");
    let j3 = app
        .configure(Other { n: 3 })
        .with_queue("alpha")
        .with_priority(10)
        .defer()
        .await
        .expect("j3");
    let j4 = app
        .configure(Record { n: 4 })
        .with_queue("alpha")
        .with_queueing_lock("Q2")
        .defer()
        .await
        .expect("j4");
    let worker = register_worker(client).await;
    assert_eq!(
        fetch(client, "alpha", worker).await,
        j3,
        "highest priority first"
    );
    finish(client, j3, "succeeded").await;
    assert_eq!(fetch(client, "beta", worker).await, j2);
    Population {
        j1,
        j2,
        j3,
        j4,
        worker,
    }
}

#[tokio::test]
async fn get_job_status_follows_the_job() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let id = app.defer(Record { n: 1 }).await.expect("defer");
    assert_eq!(
        manager.get_job_status(id).await.expect("status"),
        JobStatus::Todo
    );
    let worker = register_worker(&client).await;
    assert_eq!(fetch(&client, "default", worker).await, id);
    assert_eq!(
        manager.get_job_status(id).await.expect("status"),
        JobStatus::Doing
    );
    finish(&client, id, "succeeded").await;
    assert_eq!(
        manager.get_job_status(id).await.expect("status"),
        JobStatus::Succeeded
    );
    let job = manager.get_job(id).await.expect("job");
    let expected = Job {
        id,
        queue_name: "default".into(),
        task_name: "tests.record".into(),
        priority: 0,
        lock: None,
        queueing_lock: None,
        args: json!({"n": 1}),
        status: JobStatus::Succeeded,
        scheduled_at: None,
        attempts: 1,
        abort_requested: false,
        worker_id: Some(worker),
        timeout: None,
        trace_context: None,
    };
    assert_eq!(job, expected);
    let missing = id + 1000;
    let err = manager.get_job_status(missing).await.expect_err("missing");
    assert!(
        matches!(err, Error::JobNotFound { id } if id == missing),
        "{err:?}"
    );
}

#[tokio::test]
async fn list_jobs_honours_every_filter() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let Population {
        j1,
        j2,
        j3,
        j4,
        worker,
    } = populate(&app, &client).await;

    let alpha = || Some("alpha".to_owned());
    let cases = [
        ("no filter", filter(), vec![j1, j2, j3, j4]),
        ("id", by(|f| f.id = Some(j2)), vec![j2]),
        ("queue", by(|f| f.queue_name = alpha()), vec![j1, j3, j4]),
        (
            "task",
            by(|f| f.task_name = Some("tests.other".into())),
            vec![j3],
        ),
        (
            "todo",
            by(|f| f.status = Some(JobStatus::Todo)),
            vec![j1, j4],
        ),
        ("doing", by(|f| f.status = Some(JobStatus::Doing)), vec![j2]),
        ("lock", by(|f| f.lock = Some("L1".into())), vec![j1, j2]),
        (
            "qlock",
            by(|f| f.queueing_lock = Some("Q2".into())),
            vec![j4],
        ),
        ("worker", by(|f| f.worker_id = Some(worker)), vec![j2, j3]),
        ("limit", by(|f| f.limit = Some(2)), vec![j1, j2]),
        (
            "queue and status",
            by(|f| {
                f.queue_name = alpha();
                f.status = Some(JobStatus::Todo);
            }),
            vec![j1, j4],
        ),
        (
            "no match",
            by(|f| {
                f.queue_name = Some("beta".into());
                f.status = Some(JobStatus::Todo);
            }),
            vec![],
        ),
    ];
    for (what, filter, expected) in cases {
        let listed = manager.list_jobs(&filter).await.expect("list jobs");
        assert_eq!(ids(&listed), expected, "filter by {what}");
    }

    // Every column comes back.
    let job = manager
        .list_jobs(&by(|f| f.id = Some(j2)))
        .await
        .expect("list")
        .remove(0);
    let expected = Job {
        id: j2,
        queue_name: "beta".into(),
        task_name: "tests.record".into(),
        priority: 1,
        lock: Some("L1".into()),
        queueing_lock: None,
        args: json!({"n": 2}),
        status: JobStatus::Doing,
        scheduled_at: None,
        attempts: 0,
        abort_requested: false,
        worker_id: Some(worker),
        timeout: None,
        trace_context: None,
    };
    assert_eq!(job, expected);
}

#[tokio::test]
async fn queues_tasks_and_locks_are_counted_per_status() {
    use JobStatus::{Doing, Succeeded, Todo};
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    populate(&app, &client).await;

    let queues = manager.list_queues(&filter()).await.expect("queues");
    let expected = vec![
        ("alpha".to_owned(), 3, stats([(Todo, 2), (Succeeded, 1)])),
        ("beta".to_owned(), 1, stats([(Doing, 1)])),
    ];
    assert_eq!(summary(&queues), expected);
    assert_eq!(queues[0].count(JobStatus::Failed), 0);

    let tasks = manager.list_tasks(&filter()).await.expect("tasks");
    let expected = vec![
        ("tests.other".to_owned(), 1, stats([(Succeeded, 1)])),
        ("tests.record".to_owned(), 3, stats([(Todo, 2), (Doing, 1)])),
    ];
    assert_eq!(summary(&tasks), expected);

    let locks = manager.list_locks(&filter()).await.expect("locks");
    let expected = vec![("L1".to_owned(), 2, stats([(Todo, 1), (Doing, 1)]))];
    assert_eq!(
        summary(&locks),
        expected,
        "jobs without a lock are left out"
    );

    // Filters narrow the counts.
    let todo = JobFilter {
        status: Some(Todo),
        ..filter()
    };
    let queues = manager.list_queues(&todo).await.expect("queues");
    assert_eq!(
        summary(&queues),
        vec![("alpha".to_owned(), 2, stats([(Todo, 2)]))]
    );
    let alpha = JobFilter {
        queue_name: Some("alpha".into()),
        ..filter()
    };
    let tasks = manager.list_tasks(&alpha).await.expect("tasks");
    let expected = vec![
        ("tests.other".to_owned(), 1, stats([(Succeeded, 1)])),
        ("tests.record".to_owned(), 2, stats([(Todo, 2)])),
    ];
    assert_eq!(summary(&tasks), expected);
    let other_task = JobFilter {
        task_name: Some("tests.other".into()),
        ..filter()
    };
    let locks = manager.list_locks(&other_task).await.expect("locks");
    assert!(locks.is_empty(), "{locks:?}");
    let lock = JobFilter {
        lock: Some("L1".into()),
        ..filter()
    };
    let queues = manager.list_queues(&lock).await.expect("queues");
    let expected = vec![
        ("alpha".to_owned(), 1, stats([(Todo, 1)])),
        ("beta".to_owned(), 1, stats([(Doing, 1)])),
    ];
    assert_eq!(summary(&queues), expected);
}

#[tokio::test]
async fn cancel_cancels_deletes_or_aborts() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let todo = app.defer(Record { n: 1 }).await.expect("defer");
    let deleted = app.defer(Record { n: 2 }).await.expect("defer");

    assert!(cancel(&manager, todo, false, false).await);
    let job = manager.get_job(todo).await.expect("job");
    assert_eq!(
        (job.status, job.abort_requested),
        (JobStatus::Cancelled, false)
    );
    assert_eq!(event_types(&client, todo).await, ["deferred", "cancelled"]);
    assert!(
        !cancel(&manager, todo, false, false).await,
        "a cancelled job cannot be cancelled again"
    );

    assert!(cancel(&manager, deleted, false, true).await);
    let err = manager.get_job(deleted).await.expect_err("deleted");
    assert!(matches!(err, Error::JobNotFound { .. }), "{err:?}");

    // A running job is only stopped with abort.
    let running = app
        .configure(Record { n: 3 })
        .with_queue("run")
        .defer()
        .await
        .expect("defer");
    let worker = register_worker(&client).await;
    assert_eq!(fetch(&client, "run", worker).await, running);
    assert!(!cancel(&manager, running, false, false).await);
    assert!(
        !cancel(&manager, running, false, true).await,
        "a running job is never deleted"
    );
    let job = manager.get_job(running).await.expect("job");
    assert_eq!((job.status, job.abort_requested), (JobStatus::Doing, false));
    assert!(cancel(&manager, running, true, false).await);
    let job = manager.get_job(running).await.expect("job");
    assert_eq!((job.status, job.abort_requested), (JobStatus::Doing, true));
    assert_eq!(
        event_types(&client, running).await,
        ["deferred", "started", "abort_requested"]
    );

    // A finished job, or no job: nothing to do.
    let done = app
        .configure(Record { n: 4 })
        .with_queue("done")
        .defer()
        .await
        .expect("defer");
    assert_eq!(fetch(&client, "done", worker).await, done);
    finish(&client, done, "succeeded").await;
    for (abort, delete) in [(false, false), (true, false), (false, true), (true, true)] {
        let cancelled = cancel(&manager, done, abort, delete).await;
        assert!(!cancelled, "abort {abort} delete {delete}");
    }
    assert_eq!(
        manager.get_job_status(done).await.expect("status"),
        JobStatus::Succeeded
    );
    assert!(!cancel(&manager, done + 1000, true, true).await);
}

#[tokio::test]
async fn retry_puts_a_failed_job_back_with_new_options() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let worker = register_worker(&client).await;
    let failed = app
        .configure(Record { n: 1 })
        .with_queue("first")
        .with_lock("old-lock")
        .defer()
        .await
        .expect("defer");
    assert_eq!(fetch(&client, "first", worker).await, failed);
    finish(&client, failed, "failed").await;

    let at = (Utc::now() + chrono::Duration::hours(1))
        .with_nanosecond(0)
        .expect("valid");
    let options = RetryDecision {
        retry_at: Some(at),
        priority: Some(7),
        queue: Some("second".into()),
        lock: Some("new-lock".into()),
    };
    manager
        .retry_job_by_id(failed, options)
        .await
        .expect("retry");
    let job = manager.get_job(failed).await.expect("job");
    assert_eq!(job.status, JobStatus::Todo);
    assert_eq!(job.priority, 7);
    assert_eq!(job.queue_name, "second");
    assert_eq!(job.lock.as_deref(), Some("new-lock"));
    assert_eq!(job.scheduled_at, Some(at));
    assert_eq!(job.attempts, 2, "one run, plus the retry");
    let events = event_types(&client, failed).await;
    assert_eq!(&events[..3], ["deferred", "started", "failed"]);
    let mut rest = events[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["retried", "scheduled"], "{events:?}");

    // Without options: now, same priority, queue and lock.
    let failed2 = app
        .configure(Record { n: 2 })
        .with_queue("third")
        .with_priority(3)
        .defer()
        .await
        .expect("defer");
    assert_eq!(fetch(&client, "third", worker).await, failed2);
    finish(&client, failed2, "failed").await;
    let before: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .expect("now")
        .get(0);
    manager
        .retry_job_by_id(failed2, RetryDecision::default())
        .await
        .expect("retry");
    let after: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .expect("now")
        .get(0);
    let job = manager.get_job(failed2).await.expect("job");
    assert_eq!(
        (job.status, job.priority, job.queue_name.as_str(), job.lock),
        (JobStatus::Todo, 3, "third", None)
    );
    let scheduled = job.scheduled_at.expect("scheduled now");
    assert!(before <= scheduled && scheduled <= after, "{scheduled}");
    assert!(
        event_types(&client, failed2)
            .await
            .contains(&"retried".to_owned())
    );

    // Only failed jobs are retried; nothing changes otherwise.
    let todo_before = manager.get_job(failed).await.expect("job");
    let err = manager
        .retry_job_by_id(failed, RetryDecision::default())
        .await
        .expect_err("todo job");
    assert!(
        matches!(err, Error::InvalidJobStatus { id, action: "retried", ref status } if id == failed && status == "todo"),
        "{err:?}"
    );
    assert_eq!(manager.get_job(failed).await.expect("job"), todo_before);
    let running = app
        .configure(Record { n: 3 })
        .with_queue("run")
        .defer()
        .await
        .expect("defer");
    assert_eq!(fetch(&client, "run", worker).await, running);
    // A doing job (stalled, say) goes back in line, as with Python's retry_job_by_id.
    manager
        .retry_job_by_id(running, RetryDecision::default())
        .await
        .expect("a doing job is retried");
    let job = manager.get_job(running).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Todo, 1));
    let missing = running + 1000;
    let err = manager
        .retry_job_by_id(missing, RetryDecision::default())
        .await
        .expect_err("missing job");
    assert!(
        matches!(err, Error::JobNotFound { id } if id == missing),
        "{err:?}"
    );
    let options = RetryDecision {
        queue: Some("q".repeat(129)),
        ..RetryDecision::default()
    };
    let err = manager
        .retry_job_by_id(failed2, options)
        .await
        .expect_err("bad queue");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn stalled_jobs_are_those_of_silent_or_pruned_workers() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let stale_worker = register_worker(&client).await;
    let fresh_worker = register_worker(&client).await;
    let pruned_worker = register_worker(&client).await;
    let mut jobs = Vec::new();
    for (queue, worker) in [
        ("stale", stale_worker),
        ("fresh", fresh_worker),
        ("pruned", pruned_worker),
    ] {
        let id = app
            .configure(Other { n: 0 })
            .with_queue(queue)
            .defer()
            .await
            .expect("defer");
        assert_eq!(fetch(&client, queue, worker).await, id);
        jobs.push(id);
    }
    let [stale, _fresh, pruned] = jobs[..] else {
        unreachable!()
    };
    // A waiting job has no worker, yet is not stalled.
    app.defer(Record { n: 1 }).await.expect("todo job");
    client
        .execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' \
             WHERE id = $1",
            &[&stale_worker],
        )
        .await
        .expect("age the stale worker");
    client
        .execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '2 hours' \
             WHERE id = $1",
            &[&pruned_worker],
        )
        .await
        .expect("age the pruned worker");
    // Prune workers silent for 90 minutes: only the pruned one.
    let pruned_ids: Vec<i64> = client
        .query(
            "SELECT worker_id FROM procrastinate_prune_stalled_workers_v1(5400)",
            &[],
        )
        .await
        .expect("prune")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pruned_ids, [pruned_worker]);
    let job = manager.get_job(pruned).await.expect("job");
    assert_eq!(
        job.worker_id, None,
        "a pruned worker's job loses its worker_id"
    );

    let stalled = manager
        .list_stalled_jobs(30.0, None, None)
        .await
        .expect("stalled");
    assert_eq!(ids(&stalled), [stale, pruned]);
    assert_eq!(stalled[0].status, JobStatus::Doing);
    assert_eq!(stalled[0].worker_id, Some(stale_worker));
    // A worker silent for one hour is not stalled at a two-hour threshold; a pruned one is.
    let stalled = manager
        .list_stalled_jobs(7200.0, None, None)
        .await
        .expect("stalled");
    assert_eq!(ids(&stalled), [pruned]);
    let stalled = manager
        .list_stalled_jobs(30.0, Some("stale"), None)
        .await
        .expect("stalled");
    assert_eq!(ids(&stalled), [stale]);
    let stalled = manager
        .list_stalled_jobs(30.0, None, Some("tests.record"))
        .await
        .expect("stalled");
    assert_eq!(ids(&stalled), [] as [i64; 0]);
    let stalled = manager
        .list_stalled_jobs(30.0, None, Some("tests.other"))
        .await
        .expect("stalled");
    assert_eq!(ids(&stalled), [stale, pruned]);
    let err = manager
        .list_stalled_jobs(-1.0, None, None)
        .await
        .expect_err("negative");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn delete_old_jobs_honours_age_statuses_and_queue() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let worker = register_worker(&client).await;
    // (queue, how it ends); each job gets its own queue so it can be fetched precisely.
    let plan = [
        ("succeeded-old", Some("succeeded")),
        ("succeeded-new", Some("succeeded")),
        ("failed-old", Some("failed")),
        ("cancelled-old", None),
        ("aborted-old", Some("aborted")),
        ("todo-old", None),
        ("other-queue-old", Some("succeeded")),
    ];
    let mut id_of = BTreeMap::new();
    for (queue, end) in plan {
        let id = app
            .configure(Record { n: 0 })
            .with_queue(queue)
            .defer()
            .await
            .expect("defer");
        if let Some(end) = end {
            assert_eq!(fetch(&client, queue, worker).await, id);
            if end == "aborted" {
                assert!(cancel(&app.job_manager(), id, true, false).await);
            }
            finish(&client, id, end).await;
        }
        id_of.insert(queue, id);
    }
    assert!(cancel(&manager, id_of["cancelled-old"], false, false).await);
    let old: Vec<i64> = id_of
        .iter()
        .filter(|(queue, _)| queue.ends_with("-old"))
        .map(|(_, id)| *id)
        .collect();
    client
        .execute(
            "UPDATE procrastinate_events SET at = now() - interval '5 hours' WHERE job_id = ANY($1)",
            &[&old],
        )
        .await
        .expect("age events");
    let remaining = || {
        let manager = manager.clone();
        let id_of = id_of.clone();
        async move {
            let left = ids(&manager.list_jobs(&filter()).await.expect("list"));
            id_of
                .iter()
                .filter(|(_, id)| left.contains(id))
                .map(|(queue, _)| *queue)
                .collect::<Vec<_>>()
        }
    };
    let delete = |options: DeleteOldJobsOptions| {
        let manager = manager.clone();
        async move { manager.delete_old_jobs(&options).await.expect("delete") }
    };
    let all = [
        "aborted-old",
        "cancelled-old",
        "failed-old",
        "other-queue-old",
        "succeeded-new",
        "succeeded-old",
        "todo-old",
    ];
    assert_eq!(remaining().await, all);

    // Younger than the threshold: nothing, whatever the flags.
    let everything_younger = DeleteOldJobsOptions {
        nb_hours: 6,
        include_failed: true,
        include_cancelled: true,
        include_aborted: true,
        ..DeleteOldJobsOptions::default()
    };
    assert_eq!(delete(everything_younger).await, 0);
    let queue = DeleteOldJobsOptions {
        nb_hours: 4,
        queue: Some("other-queue-old".into()),
        ..DeleteOldJobsOptions::default()
    };
    assert_eq!(delete(queue).await, 1);
    assert!(!remaining().await.contains(&"other-queue-old"));
    let succeeded = DeleteOldJobsOptions {
        nb_hours: 4,
        ..DeleteOldJobsOptions::default()
    };
    assert_eq!(delete(succeeded.clone()).await, 1);
    let expected = [
        "aborted-old",
        "cancelled-old",
        "failed-old",
        "succeeded-new",
        "todo-old",
    ];
    assert_eq!(remaining().await, expected);
    let failed = DeleteOldJobsOptions {
        include_failed: true,
        ..succeeded.clone()
    };
    assert_eq!(delete(failed).await, 1);
    let cancelled = DeleteOldJobsOptions {
        include_cancelled: true,
        ..succeeded.clone()
    };
    assert_eq!(delete(cancelled).await, 1);
    assert_eq!(
        remaining().await,
        ["aborted-old", "succeeded-new", "todo-old"]
    );
    let aborted = DeleteOldJobsOptions {
        include_aborted: true,
        ..succeeded
    };
    assert_eq!(delete(aborted).await, 1);
    // Unfinished and recent jobs are never deleted.
    assert_eq!(remaining().await, ["succeeded-new", "todo-old"]);
}

/// What a dashboard's retry button does: only a job still failed goes back, so two people
/// retrying at once (and a worker claiming the job in between) never run it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_job_retries_only_a_job_still_failed() {
    let db = schema_db().await;
    let client = db.client().await;
    let app = app(&db);
    let manager = app.job_manager();
    let worker = register_worker(&client).await;
    let id = app.defer(Record { n: 1 }).await.expect("defer");
    assert_eq!(fetch(&client, "default", worker).await, id);
    // Doing: not failed, nothing done.
    assert!(
        !manager
            .retry_failed_job(id, RetryDecision::default())
            .await
            .expect("retry")
    );
    assert_eq!(
        manager.get_job_status(id).await.expect("status"),
        JobStatus::Doing
    );
    finish(&client, id, "failed").await;
    // Two at once: exactly one retries it.
    let (a, b) = tokio::join!(
        manager.retry_failed_job(id, RetryDecision::default()),
        manager.retry_failed_job(id, RetryDecision::default()),
    );
    let retried = [a.expect("retry a"), b.expect("retry b")];
    assert_eq!(retried.iter().filter(|r| **r).count(), 1, "{retried:?}");
    let job = manager.get_job(id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Todo, 2));
    // Claimed again: a late retry finds it doing and leaves it.
    assert_eq!(fetch(&client, "default", worker).await, id);
    assert!(
        !manager
            .retry_failed_job(id, RetryDecision::default())
            .await
            .expect("retry")
    );
    assert_eq!(
        manager.get_job_status(id).await.expect("status"),
        JobStatus::Doing
    );
    assert_eq!(
        event_types(&client, id).await,
        [
            "deferred",
            "started",
            "failed",
            "scheduled",
            "retried",
            "started"
        ]
    );
    // No such job: nothing done, no error.
    assert!(
        !manager
            .retry_failed_job(id + 1000, RetryDecision::default())
            .await
            .expect("retry")
    );
}

#[tokio::test]
async fn the_memory_store_retries_only_a_job_still_failed_too() {
    use postpone::store::{FetchJobsParams, FinishJobParams};
    let app = App::builder()
        .store(std::sync::Arc::new(postpone::MemoryStore::new()))
        .task::<Record>()
        .build()
        .expect("app");
    let store = app.store();
    let manager = app.job_manager();
    let id = app.defer(Record { n: 1 }).await.expect("defer");
    let worker = store.register_worker().await.expect("register");
    store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 1))
        .await
        .expect("fetch");
    assert!(
        !manager
            .retry_failed_job(id, RetryDecision::default())
            .await
            .expect("retry")
    );
    store
        .finish_jobs(&[FinishJobParams {
            id,
            status: JobStatus::Failed,
            delete_job: false,
            error: None,
            result: None,
        }])
        .await
        .expect("finish");
    assert!(
        manager
            .retry_failed_job(id, RetryDecision::default())
            .await
            .expect("retry")
    );
    assert!(
        !manager
            .retry_failed_job(id, RetryDecision::default())
            .await
            .expect("retry")
    );
    let job = manager.get_job(id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Todo, 2));
}
