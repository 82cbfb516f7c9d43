//! The Rust worker against the real Python package (procrastinate 3.10.0): Python-deferred
//! jobs run on the Rust worker exactly as their twins run on a Python worker (rows, retries,
//! events); a Python worker and a Rust worker share one queue without breaking locks;
//! Python aborts a job running in Rust; each side sees, and prunes, the other's dead
//! workers.
//!
//! The Python side is `python/worker_app.py` (same task names and arguments as the tasks
//! below), prepended to every script run here. Runs are recorded in `interop_runs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postpone::retry::RetryStrategy;
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, JobStatus, Periodic, Task, TaskConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::harness::{TestDb, run_python, schema_db, wait_for};

const PYTHON_APP: &str = include_str!("python/worker_app.py");

const DEADLINE: Duration = Duration::from_secs(30);

/// What the Rust tasks share: a connection to record runs, and the args they decoded.
struct Shared {
    client: Client,
    typed: Mutex<Vec<Typed>>,
}

fn shared(ctx: &JobContext) -> &Shared {
    ctx.additional_context::<Shared>()
        .expect("workers here run with Shared as additional context")
}

async fn record(ctx: &JobContext, args: Option<Value>) -> Result<(), TaskError> {
    shared(ctx)
        .client
        .execute(
            "INSERT INTO interop_runs (job_id, who, args) VALUES ($1, 'rust', $2)",
            &[&ctx.job().id, &args],
        )
        .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    a: i64,
    b: Vec<String>,
}

/// `interop.typed`: its fields are `TYPED_ARGS` of worker_app.py.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Typed {
    n: i64,
    x: f64,
    s: String,
    flag: bool,
    items: Vec<i64>,
    maybe: Option<String>,
    nested: Nested,
}

impl Typed {
    fn expected() -> Self {
        Self {
            n: 1 << 40,
            x: 1.5,
            s: "héllo ✓".to_owned(),
            flag: true,
            items: vec![1, 2, 3],
            maybe: None,
            nested: Nested {
                a: -7,
                b: vec!["x".to_owned(), "y".to_owned()],
            },
        }
    }
}

impl Task for Typed {
    fn name() -> Cow<'static, str> {
        "interop.typed".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        shared(&ctx)
            .typed
            .lock()
            .expect("typed lock")
            .push(self.clone());
        record(&ctx, Some(serde_json::to_value(&self)?)).await
    }
}

/// `interop.fail`: records, then fails (no retry).
#[derive(Serialize, Deserialize)]
struct Fail {
    n: i64,
}

impl Task for Fail {
    fn name() -> Cow<'static, str> {
        "interop.fail".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        record(&ctx, Some(json!({ "n": self.n }))).await?;
        Err(TaskError::new("ValueError", "interop.fail always fails"))
    }
}

/// `interop.flaky`: always fails; retried twice (Python's `retry=2`).
#[derive(Serialize, Deserialize)]
struct Flaky {
    n: i64,
}

impl Task for Flaky {
    fn name() -> Cow<'static, str> {
        "interop.flaky".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(2))
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Err(TaskError::new("ValueError", "interop.flaky always fails"))
    }
}

/// `interop.flaky_wait`: always fails; retried once after 1 s.
#[derive(Serialize, Deserialize)]
struct FlakyWait {
    n: i64,
}

impl Task for FlakyWait {
    fn name() -> Cow<'static, str> {
        "interop.flaky_wait".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_retry(RetryStrategy::max_attempts(1).with_wait(Duration::from_secs(1)))
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Err(TaskError::new(
            "ValueError",
            "interop.flaky_wait always fails",
        ))
    }
}

/// `interop.sleep`: records (lock, seq, start, end) with the database clock.
#[derive(Serialize, Deserialize)]
struct Sleep {
    lock: String,
    seq: i64,
    ms: u64,
}

impl Task for Sleep {
    fn name() -> Cow<'static, str> {
        "interop.sleep".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let client = &shared(&ctx).client;
        let started: DateTime<Utc> = client
            .query_one("SELECT clock_timestamp()", &[])
            .await?
            .get(0);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        client
            .execute(
                "INSERT INTO interop_runs (job_id, who, lock, seq, started, ended) \
                 VALUES ($1, 'rust', $2, $3, $4, clock_timestamp())",
                &[&ctx.job().id, &self.lock, &self.seq, &started],
            )
            .await?;
        Ok(())
    }
}

/// `interop.forever`: records, then awaits forever (cancelled at its await point).
#[derive(Serialize, Deserialize)]
struct Forever;

impl Task for Forever {
    fn name() -> Cow<'static, str> {
        "interop.forever".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        record(&ctx, None).await?;
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// `interop.polling` (Rust only): blocking work that polls `should_abort`.
#[derive(Serialize, Deserialize)]
struct Polling;

impl Task for Polling {
    fn name() -> Cow<'static, str> {
        "interop.polling".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        record(&ctx, None).await?;
        tokio::task::spawn_blocking(move || {
            while !ctx.should_abort() {
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await
        .map_err(TaskError::msg)
    }
}

async fn setup() -> (TestDb, Client, App, Arc<Shared>) {
    let db = schema_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE interop_runs (run bigserial PRIMARY KEY, job_id bigint NOT NULL, \
             who text NOT NULL, args jsonb, info jsonb, lock text, seq bigint, \
             started timestamptz, ended timestamptz)",
        )
        .await
        .expect("create interop_runs");
    let app = App::builder()
        .database_url(&db.url)
        .expect("database url")
        .task::<Typed>()
        .task::<Fail>()
        .task::<Flaky>()
        .task::<FlakyWait>()
        .task::<Sleep>()
        .task::<Forever>()
        .task::<Polling>()
        .build()
        .expect("build app");
    let shared = Arc::new(Shared {
        client: db.client().await,
        typed: Mutex::default(),
    });
    (db, client, app, shared)
}

fn config(shared: &Arc<Shared>) -> WorkerConfig {
    WorkerConfig {
        additional_context: Some(shared.clone()),
        fetch_job_polling_interval: Duration::from_millis(50),
        abort_job_polling_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

/// Runs `body` after worker_app.py; returns the JSON its `show(...)` printed last.
async fn python(db: &TestDb, body: &str) -> Value {
    let stdout = run_python(db, &format!("{PYTHON_APP}\n# --- test body ---\n{body}\n")).await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("Python printed no JSON result ({e}); stdout:\n{stdout}"))
}

/// A Python process running concurrently with the test (worker_app.py's `serve`).
struct PythonProcess {
    child: Child,
}

impl PythonProcess {
    async fn spawn(db: &TestDb, body: &str) -> Self {
        let python = tokio::task::spawn_blocking(postpone_testkit::python)
            .await
            .expect("the Python lookup task panicked")
            .unwrap_or_else(|error| panic!("{error}"));
        let child = Command::new(&python)
            .arg("-c")
            .arg(format!("{PYTHON_APP}\n# --- test body ---\n{body}\n"))
            .env("DATABASE_URL", &db.url)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
        Self { child }
    }

    /// Panics with its output if the process has exited.
    async fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await;
            }
            panic!("the Python worker exited early ({status}):\n{stderr}");
        }
    }

    /// Polls `sql` (one boolean) until true, checking that the process lives.
    async fn wait_until(&mut self, client: &Client, sql: &str) {
        let started = std::time::Instant::now();
        loop {
            self.assert_alive().await;
            let row = client.query_one(sql, &[]).await;
            if row
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, bool>(0)
            {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "timed out waiting for {sql}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes its stdin (a graceful stop) and checks that it stopped cleanly.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let output = tokio::time::timeout(DEADLINE, self.child.wait_with_output())
            .await
            .expect("the Python worker stops within the deadline")
            .expect("waiting for the Python worker");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.lines().last() == Some("stopped"),
            "the Python worker failed ({})\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
    }

    /// SIGKILL: the worker dies without unregistering or finishing its jobs.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill the Python worker");
    }
}

/// The first column of the first row, an i64 (a count, an id).
async fn count(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    let row = client.query_one(sql, params).await;
    row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The sessions that LISTEN (the workers' listeners), after `SELECT count(*)`.
const LISTENERS: &str =
    "FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'";

/// `(status, worker_id)` of a job.
async fn job_row(client: &Client, id: i64) -> (String, Option<i64>) {
    let sql = "SELECT status::text, worker_id FROM procrastinate_jobs WHERE id = $1";
    let row = client.query_one(sql, &[&id]).await.expect("select job");
    (row.get(0), row.get(1))
}

async fn age_heartbeat(client: &Client, worker: i64) {
    let sql =
        "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = $1";
    client
        .execute(sql, &[&worker])
        .await
        .expect("age the heartbeat");
}

/// `(type, at)` of a job's events, in order.
async fn events(client: &Client, id: i64) -> Vec<(String, DateTime<Utc>)> {
    client
        .query(
            "SELECT type::text, at FROM procrastinate_events WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("select events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn event_types(client: &Client, id: i64) -> Vec<String> {
    events(client, id)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// When the event of `kind` happened (the `nth` one, from 0).
fn at(events: &[(String, DateTime<Utc>)], kind: &str, nth: usize) -> DateTime<Utc> {
    events
        .iter()
        .filter(|(t, _)| t == kind)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {kind} event #{nth} in {events:?}"))
        .1
}

/// Twin job ids, `{"rs": {key: id}, "py": {key: id}}`, deferred by worker_app.py's
/// `defer_twins(make)`: the same jobs on queue `rs` (for the Rust worker) and `py`.
type Twins = BTreeMap<String, BTreeMap<String, i64>>;

async fn defer_twins(db: &TestDb, make: &str) -> Twins {
    let value = python(db, &format!("defer_twins({make})")).await;
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("twin ids ({e}): {value}"))
}

/// Asserts that the Rust twin `key` ended as the Python one, and as expected: status,
/// attempts, event types. Returns both jobs' events (Rust's first).
async fn assert_twins(
    client: &Client,
    ids: &Twins,
    key: &str,
    (status, attempts): (&str, i32),
    expected_events: &[&str],
) -> [Vec<(String, DateTime<Utc>)>; 2] {
    let mut all = Vec::new();
    for (who, queue) in [("Rust", "rs"), ("Python", "py")] {
        let id = ids[queue][key];
        let sql = "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = $1";
        let row = client.query_one(sql, &[&id]).await.expect("select job");
        let outcome: (String, i32) = (row.get(0), row.get(1));
        assert_eq!(
            outcome,
            (status.to_owned(), attempts),
            "{who} {key}: status, attempts"
        );
        let events = events(client, id).await;
        let kinds: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(kinds, expected_events, "{who} {key}: events");
        all.push(events);
    }
    all.try_into().expect("two twins")
}

/// Runs a Rust worker on queue `rs` until none of its jobs is todo or doing.
async fn run_rust_until_idle(app: &App, client: &Client, shared: &Arc<Shared>) {
    let handle = app
        .start_worker(config(shared).with_queues(["rs"]))
        .await
        .expect("start worker");
    let pending = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'rs' AND status IN ('todo', 'doing')";
    wait_for("the Rust worker to finish queue rs", DEADLINE, || async {
        count(client, pending, &[]).await == 0
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
}

#[tokio::test]
async fn python_deferred_jobs_run_on_the_rust_worker_as_on_a_python_worker() {
    let (db, client, app, shared) = setup().await;
    let ids = defer_twins(
        &db,
        r#"lambda q: {
    "priority": typed.configure(queue=q, priority=5).defer(**TYPED_ARGS),
    "plain": typed.configure(queue=q).defer(**TYPED_ARGS),
    "lock1": typed.configure(queue=q, lock="lk-" + q).defer(**TYPED_ARGS),
    "lock2": typed.configure(queue=q, lock="lk-" + q).defer(**TYPED_ARGS),
    "qlock": typed.configure(queue=q, queueing_lock="ql-" + q).defer(**TYPED_ARGS),
    "later": typed.configure(queue=q, schedule_in={"seconds": 1}).defer(**TYPED_ARGS),
    "fail": fail.configure(queue=q).defer(n=7),
}"#,
    )
    .await;
    run_rust_until_idle(&app, &client, &shared).await;
    python(&db, "run_until_idle(['py'])\nshow('done')").await;

    // The args arrived typed, and re-encode to what Python's twin received.
    let seen = shared.typed.lock().expect("typed lock").clone();
    assert_eq!(seen, vec![Typed::expected(); 6]);
    let sql = "SELECT who, args, info FROM interop_runs WHERE args ? 'nested'";
    let rows = client.query(sql, &[]).await.expect("runs");
    assert_eq!(rows.len(), 12, "six typed jobs per worker");
    let python_types = json!({"n": "int", "x": "float", "s": "str", "flag": "bool",
                              "items": "list", "maybe": "NoneType", "nested": "dict"});
    for row in &rows {
        let (who, args, info): (String, Value, Option<Value>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            args,
            serde_json::to_value(Typed::expected()).expect("json"),
            "{who}"
        );
        if who == "python" {
            assert_eq!(info, Some(python_types.clone()));
        }
    }

    // Each Rust job ended as its Python twin: status, attempts, events.
    for key in ["priority", "plain", "lock1", "lock2", "qlock"] {
        let ran = &["deferred", "started", "succeeded"];
        assert_twins(&client, &ids, key, ("succeeded", 1), ran).await;
    }
    let failed = &["deferred", "started", "failed"];
    assert_twins(&client, &ids, "fail", ("failed", 1), failed).await;
    let later = &["scheduled", "deferred", "started", "succeeded"];
    for events in assert_twins(&client, &ids, "later", ("succeeded", 1), later).await {
        let early = at(&events, "started", 0) < at(&events, "scheduled", 0);
        assert!(!early, "ran before its schedule: {events:?}");
    }

    // Both ran the jobs due at once in the same order (`later` may or may not be due yet
    // when the Python worker starts, so it is left out).
    let mut orders = Vec::new();
    for (who, queue) in [("rust", "rs"), ("python", "py")] {
        let key: BTreeMap<i64, &str> = ids[queue].iter().map(|(k, v)| (*v, k.as_str())).collect();
        let sql = "SELECT job_id FROM interop_runs WHERE who = $1 ORDER BY run";
        let rows = client.query(sql, &[&who]).await.expect("runs");
        let order = rows.iter().map(|r| key[&r.get::<_, i64>(0)]);
        orders.push(order.filter(|k| *k != "later").collect::<Vec<_>>());
    }
    let expected = ["priority", "plain", "lock1", "lock2", "qlock", "fail"];
    assert_eq!(orders, [expected, expected], "run order: Rust, Python");
}

#[tokio::test]
async fn one_shot_workers_run_every_job_of_a_lock_as_python_does() {
    let (db, client, app, shared) = setup().await;
    let make = r#"lambda q: {str(i): typed.configure(queue=q, lock="lk-" + q).defer(**TYPED_ARGS)
                    for i in range(3)}"#;
    let ids = defer_twins(&db, make).await;
    let config = config(&shared).with_queues(["rs"]).one_shot();
    app.run_worker(config).await.expect("Rust worker");
    let one_shot = "app.run_worker(wait=False, queues=['py'], install_signal_handlers=False)";
    python(&db, &format!("{one_shot}\nshow('done')")).await;
    for key in ["0", "1", "2"] {
        let ran = &["deferred", "started", "succeeded"];
        assert_twins(&client, &ids, key, ("succeeded", 1), ran).await;
    }
}

#[tokio::test]
async fn retries_end_as_pythons_with_the_same_events_and_waits() {
    let (db, client, app, shared) = setup().await;
    let make = r#"lambda q: {"flaky": flaky.configure(queue=q).defer(n=1),
                   "wait": flaky_wait.configure(queue=q).defer(n=2)}"#;
    let ids = defer_twins(&db, make).await;
    run_rust_until_idle(&app, &client, &shared).await;
    python(&db, "run_until_idle(['py'])\nshow('done')").await;

    let retry = ["scheduled", "deferred_for_retry", "started"];
    let flaky = [&["deferred", "started"][..], &retry, &retry, &["failed"]].concat();
    assert_twins(&client, &ids, "flaky", ("failed", 3), &flaky).await;

    let wait = [&["deferred", "started"][..], &retry, &["failed"]].concat();
    let twins = assert_twins(&client, &ids, "wait", ("failed", 2), &wait).await;
    for (who, events) in ["Rust", "Python"].into_iter().zip(twins) {
        // The `scheduled` event is at the new scheduled_at; `deferred_for_retry` at now().
        let scheduled = at(&events, "scheduled", 0);
        // The 1 s wait is counted from when the failure was handled: after the attempt
        // started (the `started` event, at the claim's now()), and before the retry was
        // written (`deferred_for_retry`, at the write's now()). Both bounds hold however
        // slow the machine is; the slack covers the microsecond rounding of timestamps.
        let slack = chrono::TimeDelta::milliseconds(1);
        let wait = chrono::TimeDelta::seconds(1);
        let from_start = scheduled - at(&events, "started", 0);
        assert!(
            from_start >= wait - slack,
            "{who}: scheduled only {from_start} after the attempt started, not 1 s: {events:?}"
        );
        let from_write = scheduled - at(&events, "deferred_for_retry", 0);
        assert!(
            from_write <= wait + slack,
            "{who}: scheduled {from_write} after the retry was written, more than 1 s: {events:?}"
        );
        let early = at(&events, "started", 1) < scheduled;
        assert!(!early, "{who}: retried before its schedule: {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_and_a_rust_worker_share_a_queue_and_its_locks() {
    let (db, client, app, shared) = setup().await;
    let fleet = "serve(queues=['fleet'], concurrency=3, fetch_job_polling_interval=0.1)";
    let mut python = PythonProcess::spawn(&db, fleet).await;
    python
        .wait_until(&client, "SELECT count(*) = 1 FROM procrastinate_workers")
        .await;
    let handle = app
        .start_worker(config(&shared).with_queues(["fleet"]).with_concurrency(3))
        .await
        .expect("start worker");
    // Both listen before the jobs come, so both are woken by the inserts; each worker runs
    // at most three of the six locks at once, so the other always finds some to run.
    python
        .wait_until(&client, &format!("SELECT count(*) = 2 {LISTENERS}"))
        .await;
    let locks = ["red", "green", "blue", "cyan", "magenta", "yellow"];
    let jobs = (0..5_u64).flat_map(|seq| {
        locks.iter().zip(0_u64..).map(move |(lock, l)| Sleep {
            lock: (*lock).to_owned(),
            seq: seq as i64,
            ms: 20 + (seq * 7 + l * 13) % 31,
        })
    });
    let ids = app
        .batch_defer(jobs.map(|job| {
            let lock = job.lock.clone();
            app.configure(job).with_queue("fleet").with_lock(lock)
        }))
        .await
        .expect("defer");
    python
        .wait_until(
            &client,
            "SELECT count(*) = 30 FROM procrastinate_jobs WHERE status = 'succeeded'",
        )
        .await;
    handle.stop();
    handle.join().await.expect("Rust worker stops");
    python.stop().await;

    let rows = client
        .query(
            "SELECT job_id, who, lock, seq, started, ended FROM interop_runs ORDER BY started",
            &[],
        )
        .await
        .expect("runs");
    let mut ran: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ran.sort_unstable();
    assert_eq!(ran, ids, "every job ran exactly once");
    let by = |who: &str| rows.iter().filter(|r| r.get::<_, &str>(1) == who).count();
    let (rust_runs, python_runs) = (by("rust"), by("python"));
    assert!(
        rust_runs > 0 && python_runs > 0,
        "rust ran {rust_runs}, python {python_runs}"
    );
    // (job id, who, seq, started, ended) of one lock's runs, by start.
    type Run = (i64, String, i64, DateTime<Utc>, DateTime<Utc>);
    for lock in locks {
        let runs: Vec<Run> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(2) == lock)
            .map(|r| (r.get(0), r.get(1), r.get(3), r.get(4), r.get(5)))
            .collect();
        for pair in runs.windows(2) {
            let ((id0, who0, _, _, end0), (id1, who1, _, start1, _)) = (&pair[0], &pair[1]);
            assert!(
                start1 > end0,
                "{lock}: job {id1} ({who1}) started before job {id0} ({who0}) ended"
            );
            assert!(
                id1 > id0,
                "{lock}: job {id1} ({who1}) ran after job {id0} ({who0})"
            );
        }
        let seqs: Vec<i64> = runs.iter().map(|r| r.2).collect();
        assert_eq!(
            seqs,
            [0, 1, 2, 3, 4],
            "{lock}: every job once, in defer order"
        );
    }
    let attempts: i64 = count(
        &client,
        "SELECT count(*) FROM procrastinate_jobs WHERE attempts <> 1",
        &[],
    )
    .await;
    assert_eq!(attempts, 0, "no job ran twice");
    let workers = count(&client, "SELECT count(*) FROM procrastinate_workers", &[]).await;
    assert_eq!(workers, 0, "both workers unregistered");
}

async fn python_aborts_a_job_running_in_rust(listen_notify: bool) {
    let (db, client, app, shared) = setup().await;
    // Async work is cancelled at its await point; blocking work polls should_abort.
    let id = if listen_notify {
        app.defer(Forever).await
    } else {
        app.defer(Polling).await
    };
    let id = id.expect("defer");
    // With NOTIFY on, an abort found only by polling would come an hour late.
    let polling = Duration::from_millis(if listen_notify { 3_600_000 } else { 100 });
    let handle = app
        .start_worker(WorkerConfig {
            listen_notify,
            abort_job_polling_interval: polling,
            ..config(&shared)
        })
        .await
        .expect("start worker");
    let (runs, listeners) = (
        "SELECT count(*) FROM interop_runs",
        format!("SELECT count(*) {LISTENERS}"),
    );
    wait_for("the job to start, and the listener", DEADLINE, || async {
        count(&client, runs, &[]).await == 1
            && count(&client, &listeners, &[]).await == i64::from(listen_notify)
    })
    .await;
    let script =
        format!("with app.open():\n    show(app.job_manager.cancel_job_by_id({id}, abort=True))");
    assert_eq!(python(&db, &script).await, json!(true));
    wait_for("the job to be aborted", Duration::from_secs(10), || async {
        app.job_manager().get_job_status(id).await.expect("status") == JobStatus::Aborted
    })
    .await;
    handle.stop();
    handle.join().await.expect("worker stops");
    let job = app.job_manager().get_job(id).await.expect("job");
    assert_eq!((job.abort_requested, job.attempts), (false, 1));
    let events = event_types(&client, id).await;
    assert_eq!(
        events,
        ["deferred", "started", "abort_requested", "aborted"]
    );
}

#[tokio::test]
async fn python_abort_reaches_the_rust_worker_through_notify() {
    python_aborts_a_job_running_in_rust(true).await;
}

#[tokio::test]
async fn python_abort_reaches_the_rust_worker_by_polling() {
    python_aborts_a_job_running_in_rust(false).await;
}

#[tokio::test]
async fn python_finds_and_prunes_a_rust_worker_that_stopped_heartbeating() {
    let (db, client, app, shared) = setup().await;
    let id = app.defer(Forever).await.expect("defer");
    let handle = app
        .start_worker(WorkerConfig {
            // No heartbeat during the test: only age_heartbeat changes the row.
            heartbeat_interval: Duration::from_secs(3600),
            stalled_worker_timeout: Duration::from_secs(7200),
            ..config(&shared)
        })
        .await
        .expect("start worker");
    let worker = handle.worker_id();
    wait_for("the job to start", DEADLINE, || async {
        count(&client, "SELECT count(*) FROM interop_runs", &[]).await == 1
    })
    .await;
    let python_stalled = "show(stalled_jobs(60))";
    assert_eq!(
        python(&db, python_stalled).await,
        json!([]),
        "a live worker"
    );
    age_heartbeat(&client, worker).await;
    let stalled = json!([{"id": id, "status": "doing", "worker_id": worker}]);
    assert_eq!(python(&db, python_stalled).await, stalled);

    // A Python worker starting up prunes it (stalled_worker_timeout 30 s by default).
    let one_shot = "app.run_worker(wait=False, queues=['none'], install_signal_handlers=False)";
    python(&db, &format!("{one_shot}\nshow('done')")).await;
    let workers = count(&client, "SELECT count(*) FROM procrastinate_workers", &[]).await;
    assert_eq!(workers, 0, "Python pruned the Rust worker");
    assert_eq!(job_row(&client, id).await, ("doing".to_owned(), None));
    let stalled = json!([{"id": id, "status": "doing", "worker_id": null}]);
    assert_eq!(python(&db, python_stalled).await, stalled);

    // The pruned worker still ends its job, and stops cleanly.
    handle.abort();
    handle.join().await.expect("worker stops");
    assert_eq!(job_row(&client, id).await, ("aborted".to_owned(), None));
}

#[tokio::test]
async fn rust_finds_and_prunes_a_dead_python_worker() {
    let (db, client, app, shared) = setup().await;
    let manager = app.job_manager();
    let stalled = |seconds: f64| {
        let manager = manager.clone();
        async move {
            let jobs = manager.list_stalled_jobs(seconds, None, None).await;
            let jobs = jobs.expect("list stalled jobs");
            jobs.iter()
                .map(|j| (j.id, j.status, j.worker_id))
                .collect::<Vec<_>>()
        }
    };
    let mut python = PythonProcess::spawn(&db, "serve(queues=['py'])").await;
    let id = app
        .configure(Forever)
        .with_queue("py")
        .defer()
        .await
        .expect("defer");
    python
        .wait_until(
            &client,
            "SELECT count(*) = 1 FROM interop_runs WHERE who = 'python'",
        )
        .await;
    let worker = job_row(&client, id)
        .await
        .1
        .expect("the job has its worker");
    assert_eq!(stalled(60.0).await, [], "a live worker");

    python.kill().await;
    let doing = ("doing".to_owned(), Some(worker));
    assert_eq!(
        job_row(&client, id).await,
        doing,
        "a killed worker leaves its job"
    );
    assert_eq!(stalled(60.0).await, [], "its heartbeat is recent");
    age_heartbeat(&client, worker).await;
    assert_eq!(stalled(60.0).await, [(id, JobStatus::Doing, Some(worker))]);
    assert_eq!(stalled(7200.0).await, []);

    // A Rust worker starting up prunes it (stalled_worker_timeout 30 s by default); with
    // the rescue off, as a Procrastinate worker, it leaves the job to a person.
    let handle = app
        .start_worker(WorkerConfig {
            rescue: false,
            ..config(&shared).with_queues(["rs"])
        })
        .await
        .expect("start worker");
    let workers = count(
        &client,
        "SELECT count(*) FROM procrastinate_workers WHERE id <> $1",
        &[&handle.worker_id()],
    )
    .await;
    assert_eq!(workers, 0, "the dead Python worker is pruned");
    assert_eq!(job_row(&client, id).await, ("doing".to_owned(), None));
    assert_eq!(stalled(60.0).await, [(id, JobStatus::Doing, None)]);
    handle.stop();
    handle.join().await.expect("worker stops");
}

/// The rescue takes Python workers' jobs too: a killed Python worker's running job (a
/// Python worker starts every job it claims, so it may have started) is a failed attempt
/// (`interop.forever` has no retry: `failed`), recorded with its dead worker; the running
/// job of a live Python worker is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_worker_rescues_the_job_of_a_dead_python_worker_only() {
    let (db, client, app, shared) = setup().await;
    let mut dead = PythonProcess::spawn(&db, "serve(queues=['py'])").await;
    let mut live = PythonProcess::spawn(&db, "serve(queues=['py2'])").await;
    let mut ids = Vec::new();
    for queue in ["py", "py2"] {
        ids.push(
            app.configure(Forever)
                .with_queue(queue)
                .defer()
                .await
                .expect("defer"),
        );
    }
    let running = "SELECT count(*) = 2 FROM interop_runs WHERE who = 'python'";
    dead.wait_until(&client, running).await;
    let (dead_job, live_job) = (ids[0], ids[1]);
    let dead_worker = job_row(&client, dead_job).await.1.expect("its worker");
    dead.kill().await;
    age_heartbeat(&client, dead_worker).await;

    let handle = app
        .start_worker(config(&shared).with_queues(["rs"]))
        .await
        .expect("start worker");
    // The first rescue pass runs before the worker starts.
    assert_eq!(
        job_row(&client, dead_job).await,
        ("failed".to_owned(), None)
    );
    let live_row = job_row(&client, live_job).await;
    assert_eq!(
        live_row.0, "doing",
        "a live Python worker's job is not touched"
    );
    assert!(live_row.1.is_some());
    let rescues = app
        .store()
        .list_rescues(&ids)
        .await
        .expect("rescues")
        .into_iter()
        .map(|r| (r.job_id, r.worker_id, r.started, r.outcome))
        .collect::<Vec<_>>();
    assert_eq!(
        rescues,
        [(dead_job, Some(dead_worker), true, "failed".to_owned())]
    );
    live.assert_alive().await;
    handle.stop();
    handle.join().await.expect("worker stops");
}

/// `interop.tick`: the per-second periodic task of the fleet test below.
#[derive(Serialize, Deserialize)]
struct Tick {
    timestamp: i64,
}

impl Task for Tick {
    fn name() -> Cow<'static, str> {
        "interop.tick".into()
    }
    fn config() -> TaskConfig {
        TaskConfig::default().with_queue("ticks")
    }
    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Ticks deferred so far: (timestamp, jobs) by timestamp.
async fn ticks(client: &Client) -> Vec<(i64, i64)> {
    client
        .query(
            "SELECT (args->>'timestamp')::bigint, count(*) FROM procrastinate_jobs \
             WHERE task_name = 'interop.tick' GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("ticks")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until `n` more ticks than `after` are deferred, checking the Python process
/// lives when there is one.
async fn wait_for_ticks(
    client: &Client,
    python: Option<&mut PythonProcess>,
    after: usize,
    n: usize,
) {
    let started = std::time::Instant::now();
    let mut python = python;
    loop {
        if let Some(python) = python.as_deref_mut() {
            python.assert_alive().await;
        }
        if ticks(client).await.len() >= after + n {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for {n} more ticks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 4's check: two Rust workers and a Python worker run the same per-second
/// periodic task (same name, same periodic_id): exactly one job per tick, none missed,
/// first with Python alone, then all three, then the Rust workers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_and_python_workers_defer_each_periodic_tick_once() {
    let db = schema_db().await;
    let client = db.client().await;
    let body = r#"
@app.periodic(cron="* * * * * *", periodic_id="fleet")
@app.task(name="interop.tick", queue="ticks")
async def tick(timestamp):
    pass

serve(queues=["ticks"], fetch_job_polling_interval=0.1)
"#;
    let mut python = PythonProcess::spawn(&db, body).await;
    wait_for_ticks(&client, Some(&mut python), 0, 2).await;

    let app = App::builder()
        .database_url(&db.url)
        .expect("database url")
        .task::<Tick>()
        .periodic(Periodic::new::<Tick>("* * * * * *").with_periodic_id("fleet"))
        .build()
        .expect("build app");
    let config = WorkerConfig {
        fetch_job_polling_interval: Duration::from_millis(100),
        ..WorkerConfig::default().with_queues(["ticks"])
    };
    let rust = [
        app.start_worker(config.clone())
            .await
            .expect("first Rust worker"),
        app.start_worker(config).await.expect("second Rust worker"),
    ];
    let together = ticks(&client).await.len();
    wait_for_ticks(&client, Some(&mut python), together, 5).await;
    python.stop().await;
    let alone = ticks(&client).await.len();
    wait_for_ticks(&client, None, alone, 2).await;
    for worker in rust {
        worker.stop();
        worker.join().await.expect("Rust worker stops");
    }

    let ticks = ticks(&client).await;
    assert!(
        ticks.iter().all(|&(_, jobs)| jobs == 1),
        "one job per tick: {ticks:?}"
    );
    let first = ticks[0].0;
    let seconds: Vec<i64> = ticks.iter().map(|&(t, _)| t).collect();
    assert_eq!(
        seconds,
        (first..).take(seconds.len()).collect::<Vec<_>>(),
        "no tick missed while workers came and went"
    );
    let recorded: Vec<(String, String)> = client
        .query(
            "SELECT DISTINCT task_name, periodic_id FROM procrastinate_periodic_defers",
            &[],
        )
        .await
        .expect("periodic defers")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(recorded, [("interop.tick".to_owned(), "fleet".to_owned())]);
}

/// A `remove_old_jobs` deferred by Python (under its namespaced name) runs on a Rust
/// worker and removes the finished jobs.
#[tokio::test]
async fn a_python_deferred_remove_old_jobs_runs_in_rust() {
    let (db, client, app, shared) = setup().await;
    let result = python(
        &db,
        r#"
with app.open():
    ids = [typed.configure(queue="old").defer(**TYPED_ARGS) for _ in range(2)]
run_until_idle(["old"])
with app.open():
    task = app.tasks["builtin:procrastinate.builtin_tasks.remove_old_jobs"]
    cleanup = task.defer(max_hours=0, queue="old")
show({"ids": ids, "cleanup": cleanup})
"#,
    )
    .await;
    let cleanup = result["cleanup"].as_i64().expect("cleanup id");
    let row = client
        .query_one(
            "SELECT task_name, queue_name FROM procrastinate_jobs WHERE id = $1",
            &[&cleanup],
        )
        .await
        .expect("cleanup job");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (
            "builtin:procrastinate.builtin_tasks.remove_old_jobs".to_owned(),
            "builtin".to_owned()
        )
    );
    app.run_worker(config(&shared).with_queues(["builtin"]).one_shot())
        .await
        .expect("worker");
    let left: Vec<(i64, String)> = client
        .query(
            "SELECT id, status::text FROM procrastinate_jobs ORDER BY id",
            &[],
        )
        .await
        .expect("jobs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        left,
        [(cleanup, "succeeded".to_owned())],
        "the old jobs are gone"
    );
}
