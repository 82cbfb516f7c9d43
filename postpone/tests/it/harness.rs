//! The test harness: a fresh database per test, the Python reference, and polling.
//!
//! The server comes from `postpone-testkit` (`DATABASE_URL`, else a local server, else a
//! throwaway cluster). Every test gets its own database, so tests run in parallel:
//!
//! - [`empty_db`]: no schema at all;
//! - [`schema_db`]: a clone (`CREATE DATABASE .. TEMPLATE ..`) of a template that has every
//!   migration applied. The template is named after a hash of the embedded migrations, so a
//!   schema change makes a new one; it is built once, under an advisory lock, under a
//!   temporary name that is renamed only when complete, so no process ever clones a
//!   half-built template.
//!
//! A test never passes without a database: when no server can be found or started, the
//! harness panics with the testkit's one-line error. Databases left behind by killed runs
//! (their creating pid, encoded in the name, is gone) are dropped at first use.

// Each test module uses only some of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::StreamExt;
use postpone::schema::{ApplyScope, migrations};
use postpone::task::JobContext;
use postpone_testkit::Server;
use tokio::sync::OnceCell;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Prefix of every per-test database: `postpone_test_<pid>_<counter>_<nanos>`.
const TEST_DB_PREFIX: &str = "postpone_test_";

/// Prefix of template databases: `postpone_tpl_<hash>` (`..._tmp_<pid>` while being built).
const TEMPLATE_PREFIX: &str = "postpone_tpl_";

/// Advisory lock key serialising template creation across processes ("postpone").
const TEMPLATE_LOCK: i64 = 0x706f_7374_706f_6e65;

/// How often [`wait_for`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A fresh database for one test, dropped (`WITH (FORCE)`) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The database name (`postpone_test_<pid>_<counter>_<nanos>`).
    pub name: String,
    /// Its connection string, for `tokio_postgres` and Python psycopg alike.
    pub url: String,
}

impl TestDb {
    /// The one integer `sql` returns (a count), on a new connection.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// A new connection to this database; its connection task runs on the current runtime.
    pub async fn client(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot connect to test database {} ({}): {error}",
                    self.name, self.url
                )
            });
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("connection to test database {name} ended: {error}");
            }
        });
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not be blocked on from within:
        // drop the database on a helper thread with its own small runtime.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot build a runtime: {error}"))?;
            runtime.block_on(async {
                let server = postpone_testkit::server()
                    .await
                    .map_err(|error| error.to_string())?;
                server
                    .drop_database(&name)
                    .await
                    .map_err(|error| error.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

/// A fresh database with no schema at all.
pub async fn empty_db() -> TestDb {
    new_db(None).await
}

/// A fresh database with every migration applied (cloned from the template).
pub async fn schema_db() -> TestDb {
    let template = template().await;
    new_db(Some(template)).await
}

/// A fresh database with every migration applied, and an app on it that `build` finishes
/// (the tasks of the test module).
pub async fn pg_app_with(
    build: impl FnOnce(postpone::AppBuilder) -> postpone::App,
) -> (TestDb, postpone::App) {
    let db = schema_db().await;
    let app = build(postpone::App::builder().database_url(&db.url).expect("url"));
    (db, app)
}

/// A memory store, and an app on it that `build` finishes.
pub fn memory_app_with(
    build: impl FnOnce(postpone::AppBuilder) -> postpone::App,
) -> (postpone::MemoryStore, postpone::App) {
    let store = postpone::MemoryStore::new();
    let app = build(postpone::App::builder().store(std::sync::Arc::new(store.clone())));
    (store, app)
}

/// Job `id`'s three attempts (its policy's two retries) each failed on an app's result size
/// limit of 128 bytes: recorded with kind `ResultTooLarge` and the message that says what
/// to do.
pub async fn assert_failed_over_the_limit(app: &postpone::App, id: i64) {
    let errors = app
        .job_manager()
        .list_job_errors(&[id])
        .await
        .expect("errors");
    let kinds: Vec<(i32, &str)> = errors
        .iter()
        .map(|e| (e.attempt, e.kind.as_str()))
        .collect();
    let too_large = postpone::result::RESULT_TOO_LARGE;
    assert_eq!(kinds, [(1, too_large), (2, too_large), (3, too_large)]);
    assert_eq!(
        errors[0].message,
        format!(
            "the result of job {id} is over the size limit of 128 bytes of JSON: return less (keep large data elsewhere and return its key), or raise AppBuilder::result_size_limit"
        )
    );
}

/// Runs `script` with the venv's Python (`procrastinate` 3.10.0 installed), with
/// `DATABASE_URL` set to `db.url`; returns its stdout. Panics showing stderr on failure.
pub async fn run_python(db: &TestDb, script: &str) -> String {
    let python = tokio::task::spawn_blocking(postpone_testkit::python)
        .await
        .expect("the Python lookup task panicked")
        .unwrap_or_else(|error| panic!("{error}"));
    let output = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .env("DATABASE_URL", &db.url)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        panic!(
            "Python script failed ({}) against database {}\n--- script ---\n{script}\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
            output.status,
            db.name,
            String::from_utf8_lossy(&output.stderr),
        );
    }
    stdout
}

/// Polls `f` every few milliseconds until it returns true; panics naming `what` once
/// `deadline` has passed. Use this instead of sleeping and hoping.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if f().await {
            return;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The server, with stale databases of dead test processes dropped on first use.
pub(crate) async fn server() -> &'static Server {
    static CLEANED: OnceCell<()> = OnceCell::const_new();
    let server = postpone_testkit::server()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    CLEANED
        .get_or_init(|| async {
            eprintln!("test databases on {}", server.describe());
            if let Err(error) = drop_stale_databases(server).await {
                eprintln!("could not drop stale test databases: {error:#}");
            }
        })
        .await;
    server
}

/// Creates a uniquely named database, cloned from `template` when given.
async fn new_db(template: Option<&str>) -> TestDb {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let server = server().await;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let name = format!(
        "{TEST_DB_PREFIX}{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut attempt = 0_u32;
    loop {
        match server.create_database(&name, template).await {
            Ok(()) => break,
            // A session on the template (e.g. autovacuum) blocks cloning for a moment.
            Err(postpone_testkit::Error::Sql { source, .. })
                if attempt < 20 && is_object_in_use(&source) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50) * attempt).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
    TestDb {
        url: server.url(&name),
        name,
    }
}

/// Whether `error` is "database is being accessed by other users" (SQLSTATE 55006).
fn is_object_in_use(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
}

/// The template's name, building the template once per process (and once across processes).
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let server = server().await;
            build_template(server).await.unwrap_or_else(|error| {
                panic!(
                    "cannot build the schema template on {}: {error:#}",
                    server.describe()
                )
            })
        })
        .await
}

/// `postpone_tpl_<hash of the embedded migrations>`.
pub(crate) fn template_name() -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for migration in migrations() {
        for part in [
            migration.version,
            migration.phase.as_str(),
            migration.name,
            migration.sql,
        ] {
            for byte in part.bytes().chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    format!("{TEMPLATE_PREFIX}{hash:016x}")
}

/// Builds the template unless it exists: under an advisory lock, as `<name>_tmp_<pid>`,
/// then closed to connections and renamed.
async fn build_template(server: &'static Server) -> anyhow::Result<String> {
    let name = template_name();
    let admin = server.admin_client().await?;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .context("taking the template lock")?;
    let built = build_template_locked(server, &admin, &name).await;
    // Closing the admin session releases the lock in any case.
    let _ = admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await;
    built.map(|()| name)
}

async fn build_template_locked(
    server: &'static Server,
    admin: &Client,
    name: &str,
) -> anyhow::Result<()> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("looking for the template")?
        .is_some();
    if exists {
        return Ok(());
    }
    let building = format!("{name}_tmp_{}", std::process::id());
    server.drop_database(&building).await?;
    server.create_database(&building, None).await?;
    {
        let mut client = server.connect(&building).await?;
        postpone::schema::apply(&mut client, ApplyScope::All)
            .await
            .context("applying the migrations to the template")?;
    }
    // Nobody may be connected while renaming, nor while cloning later.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            postpone_testkit::quote_ident(&building)?
        ))
        .await
        .context("closing the template to connections")?;
    let rename = format!(
        "ALTER DATABASE {} RENAME TO {}",
        postpone_testkit::quote_ident(&building)?,
        postpone_testkit::quote_ident(name)?
    );
    let mut attempt = 0_u32;
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&building],
            )
            .await
            .context("disconnecting from the template")?;
        match admin.batch_execute(&rename).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 50 && is_object_in_use(&error) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20) * attempt).await;
            }
            Err(error) => return Err(error).context("renaming the finished template"),
        }
    }
}

/// Drops `postpone_test_<pid>_*` and `postpone_tpl_*_tmp_<pid>` databases whose pid is no
/// longer alive. Without `FORCE`: a database someone is still connected to is left alone.
async fn drop_stale_databases(server: &'static Server) -> anyhow::Result<()> {
    let admin = server.admin_client().await?;
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'postpone\\_test\\_%' \
             OR datname LIKE 'postpone\\_tpl\\_%\\_tmp\\_%'",
            &[],
        )
        .await
        .context("listing test databases")?;
    for row in rows {
        let name: String = row.try_get(0)?;
        let pid = if let Some(rest) = name.strip_prefix(TEST_DB_PREFIX) {
            rest.split('_').next()
        } else {
            name.rsplit('_').next()
        };
        let Some(pid) = pid.and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || postpone_testkit::pid_alive(pid) {
            continue;
        }
        let sql = format!(
            "DROP DATABASE IF EXISTS {}",
            postpone_testkit::quote_ident(&name)?
        );
        if let Err(error) = admin.batch_execute(&sql).await {
            eprintln!("could not drop stale test database {name}: {error}");
        }
    }
    Ok(())
}

/// `(jobs, events)` rows in the database.
pub async fn counts(client: &Client) -> (i64, i64) {
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM procrastinate_jobs), (SELECT count(*) FROM procrastinate_events)",
            &[],
        )
        .await
        .expect("count rows");
    (r.get(0), r.get(1))
}

/// Waits until a worker's LISTEN connection to `db` is up (so a NOTIFY reaches it).
pub async fn wait_for_listener(db: &TestDb) {
    let client = db.client().await;
    wait_for("a worker to LISTEN", Duration::from_secs(20), || async {
        let listening: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        listening > 0
    })
    .await;
}

/// Runs a [`polling_worker`] until each job has its status, then stops it; what its
/// tasks logged.
pub async fn work_until(
    app: &postpone::App,
    jobs: &[(i64, postpone::JobStatus)],
) -> std::sync::Arc<Log> {
    let log = std::sync::Arc::new(Log::default());
    let handle = app
        .start_worker(polling_worker(&log))
        .await
        .expect("worker starts");
    let manager = app.job_manager();
    for &(id, status) in jobs {
        wait_status(&manager, id, status).await;
    }
    handle.stop();
    handle.join().await.expect("the worker stops");
    log
}

/// A dead worker `worker` (no heartbeat for an hour) holding `jobs` as `doing`; with
/// `mark`, its start watermark (priority, job id): the held jobs at or before it may have
/// started, the others never did.
pub async fn dead_worker_holds(db: &TestDb, worker: i64, jobs: &[i64], mark: Option<(i32, i64)>) {
    let ids = jobs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "INSERT INTO procrastinate_workers (id, last_heartbeat) OVERRIDING SYSTEM VALUE
              VALUES ({worker}, now() - interval '1 hour');
         UPDATE procrastinate_jobs SET status = 'doing', worker_id = {worker} WHERE id IN ({ids});"
    );
    if let Some((priority, job_id)) = mark {
        sql.push_str(&format!(
            "INSERT INTO postpone_worker_starts (worker_id, priority, job_id)
                  VALUES ({worker}, {priority}, {job_id});"
        ));
    }
    db.client()
        .await
        .batch_execute(&sql)
        .await
        .expect("a dead worker's jobs");
}

/// Waits until job `id` has `status` (20 s at most).
pub async fn wait_status(
    manager: &postpone::manager::JobManager,
    id: i64,
    status: postpone::JobStatus,
) {
    wait_for(
        &format!("job {id} to be {status}"),
        Duration::from_secs(20),
        || async { manager.get_job_status(id).await.expect("job status") == status },
    )
    .await;
}

/// A worker of four slots that polls every 50 ms for jobs and abort requests (tests that
/// have no notification to wait for), its tasks logging to `log`.
pub fn polling_worker(log: &std::sync::Arc<Log>) -> postpone::worker::WorkerConfig {
    postpone::worker::WorkerConfig {
        additional_context: Some(log.clone()),
        concurrency: 4,
        fetch_job_polling_interval: Duration::from_millis(50),
        abort_job_polling_interval: Duration::from_millis(50),
        ..postpone::worker::WorkerConfig::default()
    }
}

/// The tests' plainest task: records its label in the worker's [`Log`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub label: String,
}

impl postpone::Task for Record {
    fn name() -> std::borrow::Cow<'static, str> {
        "tests.record".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), postpone::task::TaskError> {
        Log::of(&ctx).push(self.label);
        Ok(())
    }
}

/// A [`Record`] of `label`.
pub fn record(label: impl Into<String>) -> Record {
    Record {
        label: label.into(),
    }
}

/// What a test's tasks saw, in order: handed to workers as their additional context.
#[derive(Debug, Default)]
pub struct Log(Mutex<Vec<String>>);

impl Log {
    /// The log of the worker running this job.
    pub fn of(ctx: &JobContext) -> &Self {
        ctx.additional_context::<Self>()
            .expect("workers here run with a Log as additional context")
    }

    pub fn push(&self, event: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }

    pub fn events(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

const PYTHON_APPLY_SCHEMA: &str = "\
import os, procrastinate
app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=os.environ['DATABASE_URL']))
with app.open():
    app.schema_manager.apply_schema()
";

/// A fresh database set up by `procrastinate schema --apply` (the Python package).
pub async fn python_db() -> TestDb {
    let db = empty_db().await;
    run_python(&db, PYTHON_APPLY_SCHEMA).await;
    db
}

/// A second connection LISTENing on channels; notifications arrive on `rx`.
pub struct Listener {
    /// The listening connection (it may send too).
    pub client: Client,
    rx: mpsc::UnboundedReceiver<(String, String)>,
}

const MARKER: &str = "postpone_test_marker";

impl Listener {
    /// Connects and LISTENs on `channels` (and the marker channel).
    pub async fn new(db: &TestDb, channels: &[&str]) -> Self {
        let (client, mut connection) = tokio_postgres::connect(&db.url, NoTls)
            .await
            .expect("listener connection");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
                }
            }
        });
        for channel in channels.iter().chain([&MARKER]) {
            client
                .batch_execute(&format!("LISTEN \"{channel}\""))
                .await
                .expect("LISTEN");
        }
        Self { client, rx }
    }

    /// The next notification, `(channel, payload)`; panics after the deadline.
    pub async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("a notification within the deadline")
            .expect("listener alive")
    }

    /// Everything that was committed before now has been received once this returns:
    /// notifications arrive in commit order, and the marker is committed now.
    pub async fn drain_until_marker(&mut self, sender: &Client) -> Vec<(String, String)> {
        sender
            .batch_execute(&format!("NOTIFY {MARKER}"))
            .await
            .expect("NOTIFY marker");
        let mut seen = Vec::new();
        loop {
            let message = self.next().await;
            if message.0 == MARKER {
                return seen;
            }
            seen.push(message);
        }
    }
}

// Tasks that end every way an attempt can: `errors.*` (job_errors.rs, telemetry.rs).

/// Fails with kind `Boom` on its first attempt, then succeeds; one retry.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BoomOnce;

impl postpone::Task for BoomOnce {
    fn name() -> std::borrow::Cow<'static, str> {
        "errors.boom_once".into()
    }
    fn config() -> postpone::TaskConfig {
        postpone::TaskConfig::default().with_retry(postpone::retry::RetryStrategy::max_attempts(2))
    }
    async fn run(self, ctx: JobContext) -> Result<(), postpone::task::TaskError> {
        if ctx.job().attempts == 0 {
            return Err(postpone::task::TaskError::new(
                "Boom",
                "the first attempt blows up",
            ));
        }
        Ok(())
    }
}

/// Panics.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Panics;

impl postpone::Task for Panics {
    fn name() -> std::borrow::Cow<'static, str> {
        "errors.panics".into()
    }
    async fn run(self, _ctx: JobContext) -> Result<(), postpone::task::TaskError> {
        panic!("the task panicked on purpose")
    }
}

/// Logs `start`, then waits until aborted, or past its 50-ms timeout.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Waits {
    pub timeout: bool,
}

impl postpone::Task for Waits {
    fn name() -> std::borrow::Cow<'static, str> {
        "errors.waits".into()
    }
    async fn run(self, ctx: JobContext) -> Result<(), postpone::task::TaskError> {
        Log::of(&ctx).push("start".to_owned());
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Defers a [`Waits`] job, waits until it runs (a new `start` in `log`), has a person
/// abort it, and waits until it is `aborted`; its id.
pub async fn abort_while_running(app: &postpone::App, log: &Log) -> i64 {
    let manager = app.job_manager();
    let starts = |log: &Log| log.events().iter().filter(|e| *e == "start").count();
    let before = starts(log);
    let id = app.defer(Waits { timeout: false }).await.expect("defer");
    wait_for("the job to start", Duration::from_secs(20), || async {
        starts(log) > before
    })
    .await;
    assert!(
        manager
            .cancel_job_by_id(id, true, false)
            .await
            .expect("abort")
    );
    wait_status(&manager, id, postpone::JobStatus::Aborted).await;
    id
}
