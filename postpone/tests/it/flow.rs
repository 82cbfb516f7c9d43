//! Flow control (ADR 18) against a real database, and in memory: concurrency limits per key
//! across several workers (from the tasks' own high-water marks and from the events table),
//! global caps per queue and per task, slots released by every way a job leaves `doing`,
//! limits stored by one process honoured by a worker whose app has none, rate limits
//! measured from the 'started' events, and every bad input refused with nothing written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postpone::flow::FlowLimit;
use postpone::retry::RetryStrategy;
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, AppBuilder, Error, JobStatus, MemoryStore, Task, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::harness::{
    TestDb, dead_worker_holds, schema_db, wait_for, wait_for_listener, wait_status,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Per key: jobs running now and the most ever running at once, as the tasks saw them;
/// and whether [`Held`] jobs may end.
#[derive(Debug, Default)]
struct Gauge(
    Mutex<HashMap<String, (u32, u32)>>,
    std::sync::atomic::AtomicBool,
);

impl Gauge {
    fn of(ctx: &JobContext) -> &Self {
        ctx.additional_context::<Self>()
            .expect("workers here run with a Gauge as additional context")
    }

    fn enter(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(key.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
    }

    fn leave(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(key) {
            entry.0 -= 1;
        }
    }

    fn high(&self, key: &str) -> u32 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map_or(0, |entry| entry.1)
    }
}

/// Runs a little while inside the gauge of its tenant (and of its queue and task).
#[derive(Serialize, Deserialize)]
struct Tenant {
    tenant: String,
}

async fn gauged(ctx: &JobContext, keys: &[String]) {
    let gauge = Gauge::of(ctx);
    for key in keys {
        gauge.enter(key);
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    for key in keys {
        gauge.leave(key);
    }
}

impl Task for Tenant {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.tenant".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_flow_limit(FlowLimit::concurrency(2).per_key("tenant"))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let keys = [
            format!("tenant:{}", self.tenant),
            format!("queue:{}", ctx.job().queue_name),
        ];
        gauged(&ctx, &keys).await;
        Ok(())
    }
}

/// One running at a time per key; runs until the gauge releases it.
#[derive(Serialize, Deserialize)]
struct Held {
    key: String,
}

impl Task for Held {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.held".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_flow_limit(FlowLimit::concurrency(1).per_key("key"))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let gauge = Gauge::of(&ctx);
        while !gauge.1.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// At most 2 of its jobs running at once, whatever their args.
#[derive(Serialize, Deserialize)]
struct Capped {
    n: u32,
}

impl Task for Capped {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.capped".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_concurrency_limit(2)
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        gauged(&ctx, &["task:flow.capped".to_owned()]).await;
        Ok(())
    }
}

/// At most 5 starts per 200 ms.
#[derive(Serialize, Deserialize)]
struct Paced {
    n: u32,
}

const RATE: u32 = 5;
const PERIOD: Duration = Duration::from_millis(200);

impl Task for Paced {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.paced".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_rate_limit(RATE, PERIOD)
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// One job per way an attempt ends, all on one key limited to 1 running job: a slot that
/// an outcome did not free stops every later job of the key.
#[derive(Serialize, Deserialize)]
struct Ends {
    key: String,
    how: String,
}

impl Task for Ends {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.ends".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_flow_limit(FlowLimit::concurrency(1).per_key("key"))
            .with_retry(RetryStrategy::max_attempts(1))
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        match self.how.as_str() {
            "fail" => Err(TaskError::msg("fails every time")),
            "retry" if ctx.job().attempts == 0 => Err(TaskError::msg("fails once")),
            "timeout" | "abort" => {
                // Ended by its timeout, or by an abort, at an await.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn builder() -> AppBuilder {
    App::builder()
        .task::<Tenant>()
        .task::<Capped>()
        .task::<Paced>()
        .task::<Ends>()
        .task::<Held>()
        .queue_flow_limit("narrow", FlowLimit::concurrency(3))
}

fn pg_app(db: &TestDb) -> App {
    builder()
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("test app builds")
}

fn memory_app() -> App {
    builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .expect("test app builds")
}

/// A worker of four slots polling every 50 ms, its tasks gauged by `gauge`.
fn worker(gauge: &Arc<Gauge>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(gauge.clone()),
        concurrency: 4,
        fetch_job_polling_interval: Duration::from_millis(50),
        abort_job_polling_interval: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

/// Runs `workers` workers until every job in `ids` has succeeded.
async fn drain(apps: &[&App], workers: usize, gauge: &Arc<Gauge>, ids: &[i64]) {
    let mut handles = Vec::new();
    for n in 0..workers {
        let app = apps[n % apps.len()];
        handles.push(
            app.start_worker(worker(gauge))
                .await
                .expect("worker starts"),
        );
    }
    let manager = apps[0].job_manager();
    wait_for("every job to succeed", DEADLINE, || async {
        let mut done = true;
        for &id in ids {
            done &= manager.get_job_status(id).await.expect("status") == JobStatus::Succeeded;
        }
        done
    })
    .await;
    for handle in &handles {
        handle.stop();
    }
    for handle in handles {
        handle.join().await.expect("the worker stops");
    }
}

/// Defers `per_tenant` jobs of each tenant, interleaved (into `queue`).
async fn defer_tenants(app: &App, tenants: &[&str], per_tenant: usize, queue: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..per_tenant {
        for tenant in tenants {
            let id = app
                .configure(Tenant {
                    tenant: (*tenant).to_owned(),
                })
                .with_queue(queue)
                .defer()
                .await
                .expect("defer");
            ids.push(id);
        }
    }
    ids
}

/// The most jobs of each args value of `field` ever `doing` at once, replaying the
/// 'started' and end events in id order (an event id is taken inside the statement that
/// writes the status, after the claim's flow lock, so the order is the database's).
async fn events_high_water(db: &TestDb, field: &str) -> HashMap<String, i64> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT job.args ->> $1::text, event.type::text
               FROM procrastinate_events AS event
               JOIN procrastinate_jobs AS job ON job.id = event.job_id
              WHERE event.type IN ('started', 'succeeded', 'failed', 'aborted', 'deferred_for_retry')
              ORDER BY event.id",
            &[&field],
        )
        .await
        .expect("events");
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut high: HashMap<String, i64> = HashMap::new();
    for row in rows {
        let key: Option<String> = row.get(0);
        let kind: String = row.get(1);
        let key = key.unwrap_or_default();
        let now = running.entry(key.clone()).or_default();
        if kind == "started" {
            *now += 1;
        } else {
            *now -= 1;
        }
        let now = *now;
        let top = high.entry(key).or_default();
        *top = (*top).max(now);
    }
    high
}

#[tokio::test]
async fn per_key_concurrency_holds_across_three_workers_while_other_keys_proceed() {
    let db = schema_db().await;
    let app = pg_app(&db);
    let ids = defer_tenants(&app, &["a", "b", "c"], 12, "default").await;
    let gauge = Arc::new(Gauge::default());
    drain(&[&app], 3, &gauge, &ids).await;
    for tenant in ["a", "b", "c"] {
        let high = gauge.high(&format!("tenant:{tenant}"));
        assert!((1..=2).contains(&high), "tenant {tenant}: {high} at once");
    }
    let from_events = events_high_water(&db, "tenant").await;
    for tenant in ["a", "b", "c"] {
        let high = from_events.get(tenant).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&high),
            "tenant {tenant} in the events: {from_events:?}"
        );
    }
    // Every slot is free again: no doing job left.
    assert_eq!(
        db.count("SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
            .await,
        0
    );
}

#[tokio::test]
async fn per_key_concurrency_holds_in_memory() {
    let app = memory_app();
    let ids = defer_tenants(&app, &["a", "b"], 10, "default").await;
    let gauge = Arc::new(Gauge::default());
    drain(&[&app], 3, &gauge, &ids).await;
    for tenant in ["a", "b"] {
        let high = gauge.high(&format!("tenant:{tenant}"));
        assert!((1..=2).contains(&high), "tenant {tenant}: {high} at once");
    }
}

#[tokio::test]
async fn a_queue_cap_and_a_task_cap_hold_across_workers() {
    for app in [None, Some(memory_app())] {
        let db = match app {
            None => Some(schema_db().await),
            Some(_) => None,
        };
        let app = app.unwrap_or_else(|| pg_app(db.as_ref().expect("a database")));
        // Six tenants, so only the queue's cap of 3 holds them back.
        let mut ids = defer_tenants(&app, &["a", "b", "c", "d", "e", "f"], 3, "narrow").await;
        for n in 0..12 {
            ids.push(app.defer(Capped { n }).await.expect("defer"));
        }
        let gauge = Arc::new(Gauge::default());
        drain(&[&app], 3, &gauge, &ids).await;
        let queue = gauge.high("queue:narrow");
        assert!((1..=3).contains(&queue), "queue narrow: {queue} at once");
        let task = gauge.high("task:flow.capped");
        assert!((1..=2).contains(&task), "task flow.capped: {task} at once");
    }
}

#[tokio::test]
async fn limits_stored_by_another_process_hold_for_a_worker_without_them() {
    let db = schema_db().await;
    let deferring = pg_app(&db);
    let ids = defer_tenants(&deferring, &["a", "b"], 10, "default").await;
    // The workers' app registers the task without its limit.
    #[derive(Serialize, Deserialize)]
    struct Plain {
        tenant: String,
    }
    impl Task for Plain {
        fn name() -> std::borrow::Cow<'static, str> {
            "flow.tenant".into()
        }
        async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
            gauged(&ctx, &[format!("tenant:{}", self.tenant)]).await;
            Ok(())
        }
    }
    let running = App::builder()
        .database_url(&db.url)
        .expect("test url parses")
        .task::<Plain>()
        .build()
        .expect("app builds");
    assert!(!running.has_flow_limits());
    let gauge = Arc::new(Gauge::default());
    drain(&[&running], 3, &gauge, &ids).await;
    for tenant in ["a", "b"] {
        let high = gauge.high(&format!("tenant:{tenant}"));
        assert!((1..=2).contains(&high), "tenant {tenant}: {high} at once");
    }
}

/// Every way a job leaves `doing` frees its slot: success, failure, retry, timeout, abort,
/// and the rescue of a dead worker's job. With one slot for the key, a leak would stop
/// every later job.
async fn every_outcome_frees_the_slot(app: &App, db: Option<&TestDb>) {
    let ends = |how: &str| Ends {
        key: "k".to_owned(),
        how: how.to_owned(),
    };
    let manager = app.job_manager();
    let mut expected = Vec::new();
    if let Some(db) = db {
        // A job of the key held by a dead worker: rescued when the worker starts.
        let held = app.defer(ends("ok")).await.expect("defer");
        dead_worker_holds(db, 4242, &[held], None).await;
        expected.push((held, JobStatus::Succeeded));
    }
    for how in ["ok", "fail", "retry"] {
        let id = app.defer(ends(how)).await.expect("defer");
        let status = if how == "fail" {
            JobStatus::Failed
        } else {
            JobStatus::Succeeded
        };
        expected.push((id, status));
    }
    let timeout = app
        .configure(ends("timeout"))
        .with_timeout(Duration::from_millis(100))
        .defer()
        .await
        .expect("defer");
    expected.push((timeout, JobStatus::Failed));
    let abort = app.defer(ends("abort")).await.expect("defer");
    let last = app.defer(ends("ok")).await.expect("defer");
    let gauge = Arc::new(Gauge::default());
    let handle = app.start_worker(worker(&gauge)).await.expect("worker");
    for &(id, status) in &expected {
        wait_status(&manager, id, status).await;
    }
    wait_status(&manager, abort, JobStatus::Doing).await;
    assert!(
        manager
            .cancel_job_by_id(abort, true, false)
            .await
            .expect("abort")
    );
    wait_status(&manager, abort, JobStatus::Aborted).await;
    wait_status(&manager, last, JobStatus::Succeeded).await;
    handle.stop();
    handle.join().await.expect("the worker stops");
}

#[tokio::test]
async fn every_outcome_frees_the_slot_on_postgres() {
    let db = schema_db().await;
    every_outcome_frees_the_slot(&pg_app(&db), Some(&db)).await;
}

#[tokio::test]
async fn every_outcome_frees_the_slot_in_memory() {
    every_outcome_frees_the_slot(&memory_app(), None).await;
}

/// The most starts in any window `[t, t + PERIOD)` of the given start times.
fn most_in_a_window(starts: &[chrono::DateTime<chrono::Utc>]) -> usize {
    let mut starts = starts.to_vec();
    starts.sort_unstable();
    let period = chrono::Duration::from_std(PERIOD).expect("period");
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|at| **at < starts[i] + period)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rate_limit_holds_in_every_window_across_two_workers() {
    let db = schema_db().await;
    let app = pg_app(&db);
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(app.defer(Paced { n }).await.expect("defer"));
    }
    let gauge = Arc::new(Gauge::default());
    drain(&[&app], 2, &gauge, &ids).await;
    let starts: Vec<chrono::DateTime<chrono::Utc>> = db
        .client()
        .await
        .query(
            "SELECT event.at FROM procrastinate_events AS event
               JOIN procrastinate_jobs AS job ON job.id = event.job_id
              WHERE event.type = 'started' AND job.task_name = 'flow.paced'",
            &[],
        )
        .await
        .expect("starts")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(starts.len(), 30);
    let most = most_in_a_window(&starts);
    assert!(most <= RATE as usize, "{most} starts within one period");
}

/// Periodic jobs carry their task's buckets too: ticks of 15 schedules of a rate-limited
/// task, deferred at once, start at most `RATE` per period; on both stores.
async fn periodic_ticks_keep_the_rate(app: App) {
    let at = chrono::Utc::now();
    let ids = app.defer_periodic_jobs(at).await.expect("ticks deferred");
    assert_eq!(ids.len(), 15, "one job per schedule");
    let gauge = Arc::new(Gauge::default());
    drain(&[&app], 2, &gauge, &ids).await;
    let manager = app.job_manager();
    let mut starts = Vec::new();
    for id in &ids {
        let events = manager.list_events(*id, 100).await.expect("events");
        starts.extend(
            events
                .iter()
                .filter(|event| event.event_type == postpone::store::EventType::Started)
                .map(|event| event.at),
        );
    }
    assert_eq!(starts.len(), 15);
    let most = most_in_a_window(&starts);
    assert!(most <= RATE as usize, "{most} starts within one period");
}

/// 15 schedules of the rate-limited task, each a tick every minute.
fn with_paced_schedules(builder: AppBuilder) -> AppBuilder {
    (0..15).fold(builder, |builder, n| {
        builder.periodic(
            postpone::Periodic::new::<Paced>("* * * * *")
                .with_periodic_id(format!("p{n}"))
                .with_kwargs(serde_json::json!({ "n": n })),
        )
    })
}

#[tokio::test]
async fn periodic_jobs_keep_their_tasks_rate_on_postgres() {
    let db = schema_db().await;
    let app = with_paced_schedules(builder())
        .database_url(&db.url)
        .expect("test url parses")
        .build()
        .expect("test app builds");
    periodic_ticks_keep_the_rate(app).await;
}

#[tokio::test]
async fn periodic_jobs_keep_their_tasks_rate_in_memory() {
    let app = with_paced_schedules(builder())
        .store(Arc::new(MemoryStore::new()))
        .build()
        .expect("test app builds");
    periodic_ticks_keep_the_rate(app).await;
}

#[tokio::test]
async fn a_rate_limit_holds_in_memory() {
    let app = memory_app();
    let mut ids = Vec::new();
    for n in 0..15 {
        ids.push(app.defer(Paced { n }).await.expect("defer"));
    }
    let gauge = Arc::new(Gauge::default());
    drain(&[&app], 2, &gauge, &ids).await;
    let store: &dyn std::any::Any = app.store().as_ref();
    let store = store.downcast_ref::<MemoryStore>().expect("a memory store");
    let starts: Vec<chrono::DateTime<chrono::Utc>> = ids
        .iter()
        .flat_map(|id| store.events(*id))
        .filter(|event| event.event_type == postpone::store::EventType::Started)
        .map(|event| event.at)
        .collect();
    assert_eq!(starts.len(), 15);
    let most = most_in_a_window(&starts);
    assert!(most <= RATE as usize, "{most} starts within one period");
}

/// A task whose own config has a concurrency limit of 0.
#[derive(Serialize, Deserialize)]
struct NeverRuns;

impl Task for NeverRuns {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.never_runs".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_concurrency_limit(0)
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A limit that lets nothing run is refused when the app is built, saying whose it is.
#[test]
fn zero_limits_are_refused_at_registration() {
    let refused = |builder: AppBuilder| match builder.store(Arc::new(MemoryStore::new())).build() {
        Err(Error::InvalidInput(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let on_task = refused(App::builder().task::<NeverRuns>());
    assert!(
        on_task.starts_with("task \"flow.never_runs\"")
            && on_task.contains("concurrency limit of 0"),
        "{on_task}"
    );
    let on_queue = |limit| refused(App::builder().queue_flow_limit("q", limit));
    let zero_concurrency = on_queue(FlowLimit::concurrency(0));
    assert!(
        zero_concurrency.starts_with("queue \"q\"")
            && zero_concurrency.contains("concurrency limit of 0"),
        "{zero_concurrency}"
    );
    let zero_rate = on_queue(FlowLimit::rate(0, Duration::from_secs(1)));
    assert!(zero_rate.contains("rate limit of 0"), "{zero_rate}");
    let zero_period = on_queue(FlowLimit::rate(10, Duration::ZERO));
    assert!(zero_period.contains("too short"), "{zero_period}");
}

/// Keyed on a field its args do not have (a typo).
#[derive(Serialize, Deserialize)]
struct Misnamed {
    tenant: String,
}

impl Task for Misnamed {
    fn name() -> std::borrow::Cow<'static, str> {
        "flow.misnamed".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_flow_limit(FlowLimit::concurrency(1).per_key("tenat"))
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Args without the key's field are refused at defer, naming the task and the field, and
/// nothing is written (a batch neither).
#[tokio::test]
async fn args_without_the_key_field_are_refused_with_nothing_written() {
    let db = schema_db().await;
    let app = App::builder()
        .database_url(&db.url)
        .expect("url")
        .task::<Misnamed>()
        .build()
        .expect("app");
    let error = app
        .defer(Misnamed {
            tenant: "a".to_owned(),
        })
        .await
        .expect_err("no key field");
    let message = error.to_string();
    assert!(matches!(error, Error::InvalidArgs { .. }), "{error:?}");
    assert!(
        message.contains("\"flow.misnamed\"") && message.contains("\"tenat\""),
        "{message}"
    );
    // A queue keyed on a field one job of the batch lacks: the batch is refused whole.
    let keyed = builder()
        .queue_flow_limit("keyed", FlowLimit::concurrency(1).per_key("tenant"))
        .database_url(&db.url)
        .expect("url")
        .build()
        .expect("app");
    let error = keyed
        .batch_defer([
            keyed
                .configure(Tenant {
                    tenant: "a".to_owned(),
                })
                .with_queue("keyed"),
            keyed.configure(Capped { n: 1 }).with_queue("keyed"),
        ])
        .await
        .expect_err("one job lacks the key");
    assert!(error.to_string().contains("\"tenant\""), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM procrastinate_jobs").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM postpone_job_flow").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM postpone_flow_limits").await,
        0
    );
}

/// A limited job deferred inside the caller's transaction keeps its buckets, and leaves
/// nothing behind when the transaction rolls back: tokio-postgres, and sqlx.
#[tokio::test]
async fn limited_jobs_deferred_in_a_transaction_keep_their_buckets() {
    let db = schema_db().await;
    let app = pg_app(&db);
    let flow_rows = || async { db.count("SELECT count(*) FROM postpone_job_flow").await };
    let mut client = db.client().await;
    for commit in [false, true] {
        let tx = client.transaction().await.expect("begin");
        let mut tx = tx;
        app.configure(Tenant {
            tenant: "a".to_owned(),
        })
        .defer_in(&mut tx)
        .await
        .expect("defer in tx");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
    }
    assert_eq!(flow_rows().await, 1);
    #[cfg(feature = "sqlx")]
    {
        let pool = sqlx::PgPool::connect(&sqlx_url(&db))
            .await
            .expect("sqlx pool");
        let mut tx = pool.begin().await.expect("begin");
        app.configure(Tenant {
            tenant: "b".to_owned(),
        })
        .defer_in(&mut tx)
        .await
        .expect("defer in sqlx tx");
        tx.commit().await.expect("commit");
        assert_eq!(flow_rows().await, 2);
    }
    assert_eq!(
        db.count(
            "SELECT count(*) FROM postpone_flow_limits
              WHERE bucket LIKE 'task:flow.tenant|tenant=%' AND max_running = 2"
        )
        .await,
        if cfg!(feature = "sqlx") { 2 } else { 1 }
    );
}

/// The test database's URL for sqlx, which takes URLs only.
#[cfg(feature = "sqlx")]
fn sqlx_url(db: &TestDb) -> String {
    let config: tokio_postgres::Config = db.url.parse().expect("test database conninfo");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().expect("dbname");
    format!("postgres://{user}@{host}:{port}/{dbname}")
}

/// A job waiting for a key's slot held by another worker starts when that worker's job
/// ends, woken by the notification its outcome sends: both workers poll only hourly.
#[tokio::test]
async fn a_freed_slot_wakes_the_workers_waiting_for_it() {
    let db = schema_db().await;
    let app = pg_app(&db);
    let manager = app.job_manager();
    let hourly = |gauge: &Arc<Gauge>| WorkerConfig {
        concurrency: 1,
        fetch_job_polling_interval: Duration::from_secs(3600),
        ..worker(gauge)
    };
    let first_gauge = Arc::new(Gauge::default());
    let first = app
        .start_worker(hourly(&first_gauge))
        .await
        .expect("worker");
    let held = app
        .defer(Held {
            key: "k".to_owned(),
        })
        .await
        .expect("defer");
    wait_status(&manager, held, JobStatus::Doing).await;
    let second_gauge = Arc::new(Gauge::default());
    second_gauge
        .1
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let second = app
        .start_worker(hourly(&second_gauge))
        .await
        .expect("worker");
    wait_for_listener(&db).await;
    let waiting = app
        .defer(Held {
            key: "k".to_owned(),
        })
        .await
        .expect("defer");
    // Both workers were told of it; neither may start it while the key's slot is taken.
    let claims = || async {
        db.count(&format!(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = {waiting} AND status = 'todo'"
        ))
        .await
    };
    assert_eq!(claims().await, 1);
    // The first worker stops (it takes nothing more) once its job ends.
    first.stop();
    first_gauge
        .1
        .store(true, std::sync::atomic::Ordering::SeqCst);
    first.join().await.expect("the first worker stops");
    wait_status(&manager, held, JobStatus::Succeeded).await;
    wait_status(&manager, waiting, JobStatus::Succeeded).await;
    second.stop();
    second.join().await.expect("the second worker stops");
}

/// The store's flow reads, on both stores: no limit stored, none in use and nothing due;
/// a claim under flow control takes no more than a rate allows, then the next start is
/// due within the period (and never sooner than now).
async fn the_store_reports_flow_state(store: &dyn postpone::store::Store) {
    use postpone::store::{DeferJobParams, FetchJobsParams, FlowBucket};
    assert!(!store.flow_in_use().await.expect("in use"));
    assert_eq!(store.flow_next_start().await.expect("next start"), None);
    let period = Duration::from_secs(10);
    let job = DeferJobParams {
        flow: vec![FlowBucket {
            name: "queue:default".to_owned(),
            max_running: None,
            rate: Some((2, period)),
        }],
        ..DeferJobParams::resolve("t".to_owned(), serde_json::json!({}), Default::default())
            .expect("job")
    };
    store
        .defer_jobs(&[job.clone(), job.clone(), job])
        .await
        .expect("defer");
    assert!(store.flow_in_use().await.expect("in use"));
    assert_eq!(store.flow_next_start().await.expect("next start"), None);
    let worker = store.register_worker().await.expect("register");
    let claimed = store
        .fetch_jobs(&FetchJobsParams {
            flow: true,
            ..FetchJobsParams::new(None, worker, 10)
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "the rate allows 2");
    let due = store
        .flow_next_start()
        .await
        .expect("next start")
        .expect("a full bucket");
    assert!(due <= period, "{due:?}");
    // Today's claim, for a worker that does not honour limits, takes the third.
    let claimed = store
        .fetch_jobs(&FetchJobsParams::new(None, worker, 10))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
}

#[tokio::test]
async fn the_store_reports_flow_state_on_postgres() {
    let db = schema_db().await;
    the_store_reports_flow_state(pg_app(&db).store().as_ref()).await;
}

#[tokio::test]
async fn the_store_reports_flow_state_in_memory() {
    the_store_reports_flow_state(&MemoryStore::new()).await;
}
