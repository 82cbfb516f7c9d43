//! `postpone chaos`: kills things under a draining fleet and counts every job afterwards.
//!
//! Each scenario runs on a private cluster of its own (the server is restarted, its
//! backends terminated), with worker *processes* (`postpone chaos-worker`, children of
//! this binary). Every job's task records its run first (`chaos_runs`: a counter per job,
//! when, which process, which worker), so nothing is taken on trust:
//!
//! - **kill -9**: one of 2 worker processes killed mid-drain, again and again, each
//!   restarted at once; the time to recover is from the kill until none of the killed
//!   worker's jobs is `doing` any more (rescued, or handed back).
//! - **restart**: `pg_ctl restart -m fast` mid-drain; the workers recover by themselves;
//!   the time to recover is from the new server's start (`pg_postmaster_start_time`) to
//!   the next job started.
//! - **terminate**: every worker backend ended by `pg_terminate_backend` mid-drain; the
//!   time to recover is to the next job started.
//! - **sigterm**: 2-second jobs; SIGTERM to one worker lets its running jobs finish and
//!   hands its waiting ones back, exit 0 (the time to recover is its time to exit); a
//!   second SIGTERM to the other aborts its running jobs (reason shutdown: their retry
//!   strategy runs them again, or they end `aborted`), exit 0; a third worker ends it.
//!
//! Then the account: **lost** are jobs missing, in a final state other than `succeeded`
//! (save the ones the second signal stopped on purpose), or `succeeded` with no recorded
//! run; **stuck** are jobs still `todo` or `doing` once the fleet had time to heal; **run
//! twice** are jobs with more than one recorded run. At-least-once allows a second run only
//! after an attempt that did not succeed, and the worker records each one with its reason
//! (`postpone_job_errors`: a rescue after a kill, a forced stop, the task's own failure):
//! a job that ran twice with none recorded is **unexplained**, and must not exist. **Running
//! at a kill** counts the attempts a kill or a forced stop interrupted.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use postpone::connect::ConnectConfig;
use postpone::retry::RetryStrategy;
use postpone::schema::ApplyScope;
use postpone::task::{JobContext, TaskConfig, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Task};
use postpone_testkit::PrivateCluster;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::flags::{ChaosFlags, ChaosWorkerFlags};
use crate::sql;

/// The scenarios, in the order they run.
pub const SCENARIOS: [&str; 4] = ["kill", "restart", "terminate", "sigterm"];

/// Jobs per `batch_defer` call when filling the backlog.
const FILL_BATCH: usize = 1000;
/// Concurrency of each worker process of the drains.
const CONCURRENCY: usize = 10;
/// How often the suite looks at the database.
const POLL: Duration = Duration::from_millis(50);

/// The chaos suite's task: records its run, then takes `ms` milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChaosJob {
    ms: u64,
}

impl Task for ChaosJob {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.chaos.job".into()
    }

    fn config() -> TaskConfig {
        // A job may be running at several kills; every rescue of it is a failed attempt.
        TaskConfig::default().with_retry(RetryStrategy::max_attempts(50))
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let store = ctx
            .app()
            .pg()
            .ok_or_else(|| TaskError::msg("the chaos suite runs on PostgreSQL"))?;
        let client = store
            .get()
            .await
            .map_err(|e| TaskError::new("Database", e))?;
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        client
            .execute(
                sql::CHAOS_RECORD_RUN,
                &[&ctx.job().id, &pid, &ctx.job().worker_id],
            )
            .await
            .map_err(|e| TaskError::new("Database", e))?;
        drop(client);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// `postpone chaos-worker`: a worker process of the suite, stopped by signals (first
/// SIGTERM graceful, second forced) or killed.
///
/// # Errors
/// No database URL, or the worker's.
pub async fn chaos_worker(
    flags: ChaosWorkerFlags,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let url = database_url
        .filter(|u| !u.is_empty())
        .context("chaos-worker needs --database-url or DATABASE_URL")?;
    let app = App::builder()
        .task::<ChaosJob>()
        .connect(ConnectConfig::parse(url)?)
        .pool_size(flags.concurrency + 8)
        .build()?;
    app.run_worker(WorkerConfig {
        name: Some(format!("chaos-{}", std::process::id())),
        concurrency: flags.concurrency,
        fetch_job_polling_interval: Duration::from_millis(200),
        abort_job_polling_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_secs_f64(flags.heartbeat_interval),
        stalled_worker_timeout: Duration::from_secs_f64(flags.stalled_worker_timeout),
        rescue_interval: Duration::from_secs_f64(flags.rescue_interval),
        install_signal_handlers: true,
        ..WorkerConfig::default()
    })
    .await?;
    Ok(())
}

/// One scenario's account.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosRow {
    /// Which scenario, with its number of disruptions.
    pub scenario: String,
    /// Jobs deferred.
    pub jobs: i64,
    /// Jobs missing, ended other than `succeeded` (save the ones a forced stop aborted), or
    /// `succeeded` without a recorded run.
    pub lost: i64,
    /// Jobs with more than one recorded run.
    pub run_twice: i64,
    /// Of those, the ones with no attempt that did not succeed recorded before: no kill,
    /// forced stop or failure explains their second run. Must be 0.
    pub run_twice_unexplained: i64,
    /// Jobs whose attempt was interrupted by a kill (rescued as may have started) or a
    /// forced stop: the ones at-least-once may run twice.
    pub running_at_kill: i64,
    /// Jobs still `todo` or `doing` at the end.
    pub stuck: i64,
    /// The longest time to recover of the scenario's disruptions, milliseconds.
    pub recover_ms: Option<u64>,
    /// What else was seen (exit codes, hand-backs, aborts).
    pub notes: String,
    /// Every figure is as it must be: nothing lost or stuck, no job run twice without a
    /// failed attempt to explain it, every worker exited as expected.
    pub ok: bool,
}

/// What `postpone chaos` found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The workers' settings, for the reader.
    pub settings: String,
    /// One row per scenario.
    pub rows: Vec<ChaosRow>,
}

impl ChaosReport {
    /// Every scenario ended as it must.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }
}

/// The sizes, resolved from the flags.
#[derive(Debug, Clone)]
struct Sizes {
    scenarios: Vec<&'static str>,
    jobs: usize,
    job_ms: u64,
    kills: usize,
    restarts: usize,
    terminations: usize,
    worker: ChaosWorkerFlags,
}

impl Sizes {
    fn resolve(flags: &ChaosFlags) -> anyhow::Result<Self> {
        let q = flags.quick;
        let mut scenarios = Vec::new();
        for name in &flags.only {
            let name = name.trim().to_ascii_lowercase();
            let Some(found) = SCENARIOS.iter().find(|s| **s == name) else {
                bail!(
                    "--only names {name:?}: choose among {}",
                    SCENARIOS.join(", ")
                );
            };
            scenarios.push(*found);
        }
        if scenarios.is_empty() {
            scenarios = SCENARIOS.to_vec();
        }
        let worker = ChaosWorkerFlags {
            concurrency: CONCURRENCY,
            heartbeat_interval: flags.stalled_worker_timeout / 4.0,
            stalled_worker_timeout: flags.stalled_worker_timeout,
            rescue_interval: flags.rescue_interval,
        };
        if !(worker.stalled_worker_timeout > 0.0 && worker.rescue_interval > 0.0) {
            bail!("--stalled-worker-timeout and --rescue-interval must be positive seconds");
        }
        Ok(Self {
            scenarios,
            jobs: flags.jobs.unwrap_or(if q { 2_000 } else { 20_000 }),
            job_ms: 5,
            kills: flags.kills.unwrap_or(if q { 3 } else { 20 }),
            restarts: if q { 1 } else { 2 },
            terminations: if q { 2 } else { 5 },
            worker,
        })
    }

    /// How long a fleet may take to heal after the last disruption.
    fn heal(&self) -> Duration {
        Duration::from_secs_f64(
            self.worker.stalled_worker_timeout + self.worker.rescue_interval + 60.0,
        )
    }
}

/// Runs the scenarios; progress goes to stderr.
///
/// # Errors
/// A cluster that does not start, a worker process that cannot run, a database error of
/// the suite itself. What the scenarios find is in the report, not an error.
pub async fn chaos(flags: &ChaosFlags) -> anyhow::Result<ChaosReport> {
    let sizes = Sizes::resolve(flags)?;
    let w = &sizes.worker;
    let settings = format!(
        "workers: 2 processes x {} slots, --heartbeat-interval {} --stalled-worker-timeout {} --rescue-interval {}; {}-ms jobs, 2-s jobs for sigterm",
        w.concurrency,
        w.heartbeat_interval,
        w.stalled_worker_timeout,
        w.rescue_interval,
        sizes.job_ms
    );
    eprintln!("chaos: {settings}");
    let mut rows = Vec::new();
    for scenario in &sizes.scenarios {
        eprintln!("chaos: {scenario} ...");
        let row = match *scenario {
            "kill" => drain_through(&sizes, Disruption::Kill).await?,
            "restart" => drain_through(&sizes, Disruption::Restart).await?,
            "terminate" => drain_through(&sizes, Disruption::Terminate).await?,
            _ => sigterm(&sizes).await?,
        };
        eprintln!(
            "chaos: {}: lost {}, stuck {}, run twice {} (unexplained {}, running at a kill {}){}",
            row.scenario,
            row.lost,
            row.stuck,
            row.run_twice,
            row.run_twice_unexplained,
            row.running_at_kill,
            if row.ok { "" } else { "  NOT OK" }
        );
        rows.push(row);
    }
    Ok(ChaosReport { settings, rows })
}

/// A private cluster with the schema, `chaos_runs` and a backlog of jobs.
struct Stage {
    cluster: PrivateCluster,
    url: String,
    monitor: Monitor,
    worker: ChaosWorkerFlags,
    /// Worker processes started so far (names them).
    spawned: usize,
}

impl Stage {
    async fn new(sizes: &Sizes, backlog: &[(usize, u64)]) -> anyhow::Result<Self> {
        let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .context("the cluster start panicked")??;
        let admin = connect(&cluster.url("postgres")).await?;
        admin.batch_execute(sql::CHAOS_CREATE_DATABASE).await?;
        let url = cluster.url("chaos");
        let app = App::builder()
            .task::<ChaosJob>()
            .connect(ConnectConfig::parse(&url)?)
            .build()?;
        app.apply_schema(ApplyScope::All).await?;
        let client = connect(&url).await?;
        client.batch_execute(sql::CHAOS_RUNS_TABLE).await?;
        for &(jobs, ms) in backlog {
            let mut left = jobs;
            while left > 0 {
                let n = left.min(FILL_BATCH);
                app.batch_defer((0..n).map(|_| app.configure(ChaosJob { ms })))
                    .await?;
                left -= n;
            }
        }
        Ok(Self {
            cluster,
            monitor: Monitor {
                url: url.clone(),
                client: Some(client),
            },
            url,
            worker: sizes.worker.clone(),
            spawned: 0,
        })
    }

    /// Starts a worker process (killed if dropped), named by its sessions'
    /// `application_name`.
    fn spawn(&mut self, concurrency: usize) -> anyhow::Result<Worker> {
        let exe = std::env::current_exe().context("cannot find this binary to spawn workers")?;
        self.spawned += 1;
        let name = format!("chaos_worker_{}", self.spawned);
        let w = &self.worker;
        Command::new(&exe)
            .arg("chaos-worker")
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--heartbeat-interval", &w.heartbeat_interval.to_string()])
            .args([
                "--stalled-worker-timeout",
                &w.stalled_worker_timeout.to_string(),
            ])
            .args(["--rescue-interval", &w.rescue_interval.to_string()])
            .env(
                "DATABASE_URL",
                format!("{} application_name={name}", self.url),
            )
            .env_remove("POSTPONE_JSON")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))
            .map(|child| Worker::new(child, name))
    }

    /// Waits until `worker` has a session: from then on it stops on a signal, where a
    /// signal that came while the process started would kill it.
    async fn wait_up(&mut self, worker: &Worker) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .monitor
            .count(sql::CHAOS_WORKER_UP, &[&worker.name])
            .await?
            == 0
        {
            if Instant::now() > deadline {
                bail!(
                    "worker process {} did not connect within a minute",
                    worker.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Stops the fleet gracefully; a note for each process that did not exit 0.
    async fn stop_all(&mut self, workers: &mut [Worker]) -> anyhow::Result<Vec<String>> {
        for worker in workers.iter() {
            self.wait_up(worker).await?;
            worker.signal("TERM").await?;
        }
        let mut notes = Vec::new();
        for worker in workers.iter_mut() {
            let code = worker.wait_exit().await?;
            if code != Some(0) {
                notes.push(worker.exit_note(code));
            }
        }
        Ok(notes)
    }

    /// Waits until `done` jobs have ended, or nothing moved for a minute.
    async fn wait_done(&mut self, done: i64) -> anyhow::Result<()> {
        let mut last = (-1, Instant::now());
        loop {
            let (ended, _) = self.monitor.progress().await?;
            if ended >= done {
                return Ok(());
            }
            if ended != last.0 {
                last = (ended, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(60) {
                bail!("the drain stopped at {ended} jobs ended for a minute");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no job is `todo` or `doing`, up to `deadline`.
    async fn settle(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if self.monitor.progress().await?.1 == 0 {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// The account (`chaos_tally.sql`): every job counted, and every job that ran twice
    /// explained by an attempt that did not succeed, recorded in `postpone_job_errors`.
    async fn tally(
        &mut self,
        scenario: String,
        jobs: usize,
        recover: Option<Duration>,
        mut notes: Vec<String>,
        failures: Vec<String>,
    ) -> anyhow::Result<ChaosRow> {
        let exits_ok = failures.is_empty();
        notes.extend(failures);
        let row = self.monitor.row(sql::CHAOS_TALLY, &[]).await?;
        let get = |name: &str| -> anyhow::Result<i64> { Ok(row.try_get(name)?) };
        let present = get("jobs")?;
        let deferred = i64::try_from(jobs)?;
        let stuck = get("stuck")?;
        let ended_otherwise = present - get("succeeded")? - get("aborted_on_purpose")? - stuck;
        let lost = (deferred - present) + ended_otherwise + get("never_ran")?;
        let unexplained = get("unexplained")?;
        let rescued = get("rescued")?;
        if rescued > 0 {
            notes.push(format!("{rescued} rescues"));
        }
        Ok(ChaosRow {
            scenario,
            jobs: deferred,
            lost,
            run_twice: get("run_twice")?,
            run_twice_unexplained: unexplained,
            running_at_kill: get("running_at_kill")?,
            stuck,
            recover_ms: recover.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            notes: notes.join("; "),
            ok: lost == 0 && stuck == 0 && unexplained == 0 && exits_ok,
        })
    }

    fn stop(self) {
        let _ = self.cluster.stop();
    }
}

/// The suite's own connection, made again when the server dropped it (a restart, a
/// termination): its statements are retried for up to a minute.
struct Monitor {
    url: String,
    client: Option<Client>,
}

impl Monitor {
    async fn rows(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<tokio_postgres::Row>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let client = match self.client.take() {
                Some(client) if !client.is_closed() => Ok(client),
                _ => connect(&self.url).await,
            };
            let error = match client {
                Ok(client) => match client.query(sql, params).await {
                    Ok(rows) => {
                        self.client = Some(client);
                        return Ok(rows);
                    }
                    // Only a lost connection is tried again.
                    Err(error) if !lost_connection(&error) => return Err(error.into()),
                    Err(error) => anyhow::Error::from(error),
                },
                Err(error) => error,
            };
            if Instant::now() > deadline {
                return Err(error.context("the chaos cluster did not answer for a minute"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn row(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<tokio_postgres::Row> {
        self.rows(sql, params)
            .await?
            .into_iter()
            .next()
            .context("a statement of the chaos suite returned no row")
    }

    async fn count(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<i64> {
        Ok(self.row(sql, params).await?.try_get(0)?)
    }

    async fn progress(&mut self) -> anyhow::Result<(i64, i64)> {
        let row = self.row(sql::CHAOS_PROGRESS, &[]).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn now(&mut self) -> anyhow::Result<SystemTime> {
        Ok(self.row(sql::CHAOS_NOW, &[]).await?.try_get(0)?)
    }

    /// Waits until a run starts after `after`; how long after it.
    async fn started_since(&mut self, after: SystemTime) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let row = self.row(sql::CHAOS_STARTED_SINCE, &[&after]).await?;
            if let Some(first) = row.try_get::<_, Option<SystemTime>>(0)? {
                return Ok(first.duration_since(after).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("no job started within 2 minutes of the disruption");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How many of `ids` are in `status`.
    async fn count_in(&mut self, ids: &[i64], status: &str) -> anyhow::Result<i64> {
        self.count(sql::CHAOS_STATUSES, &[&ids, &status]).await
    }

    /// The worker of process `pid`, from its latest recorded run.
    async fn worker_of(&mut self, pid: u32) -> anyhow::Result<Option<i64>> {
        let rows = self
            .rows(sql::CHAOS_WORKER_OF_PID, &[&i32::try_from(pid)?])
            .await?;
        Ok(match rows.first() {
            Some(row) => row.try_get(0)?,
            None => None,
        })
    }
}

/// The server closed the session (a restart, a termination) or the link broke.
fn lost_connection(error: &tokio_postgres::Error) -> bool {
    error.is_closed()
        || error.as_db_error().is_some_and(|e| {
            let code = e.code().code();
            code.starts_with("57P") || code.starts_with("08")
        })
        || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| "cannot connect to the chaos cluster")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A worker process, and the last lines of its log (stderr).
struct Worker {
    child: Child,
    /// Its sessions' `application_name`.
    name: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Log lines kept per worker process.
const LOG_LINES: usize = 5;

impl Worker {
    fn new(mut child: Child, name: String) -> Self {
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        Self { child, name, log }
    }

    fn id(&self) -> anyhow::Result<u32> {
        self.child.id().context("a worker process has exited")
    }

    /// Sends `signal` to it.
    async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.id()?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Waits for it to exit (at most a minute); its exit code, `None` for a signal.
    async fn wait_exit(&mut self) -> anyhow::Result<Option<i32>> {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("a worker process did not exit within a minute")??;
        Ok(status.code())
    }

    /// What a person needs when it exited other than 0: the code and its last log line.
    fn exit_note(&self, code: Option<i32>) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        format!(
            "a worker exited {}: {}",
            code.map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
            log.back().map_or("(no log)", String::as_str)
        )
    }
}

/// What a drain scenario does to the fleet or the server, again and again.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// `kill -9` of one of the two workers (in turn), restarted at once.
    Kill,
    /// `pg_ctl restart -m fast`.
    Restart,
    /// `pg_terminate_backend` of every other session of the database.
    Terminate,
}

impl Disruption {
    fn times(self, sizes: &Sizes) -> usize {
        match self {
            Self::Kill => sizes.kills,
            Self::Restart => sizes.restarts,
            Self::Terminate => sizes.terminations,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill -9",
            Self::Restart => "restart",
            Self::Terminate => "pg_terminate_backend",
        }
    }
}

/// Two workers drain the backlog while `disruption` strikes at evenly spaced points of
/// it; then the fleet heals, stops, and every job is counted.
async fn drain_through(sizes: &Sizes, disruption: Disruption) -> anyhow::Result<ChaosRow> {
    let mut stage = Stage::new(sizes, &[(sizes.jobs, sizes.job_ms)]).await?;
    let mut workers = vec![stage.spawn(CONCURRENCY)?, stage.spawn(CONCURRENCY)?];
    let times = disruption.times(sizes);
    let total = i64::try_from(sizes.jobs)?;
    let mut recover = Duration::ZERO;
    // Jobs the killed workers held, or backends ended.
    let mut struck = 0;
    for i in 0..times {
        stage
            .wait_done(total * i64::try_from(i + 1)? / i64::try_from(times + 1)?)
            .await?;
        let recovered = match disruption {
            Disruption::Kill => {
                let victim = &mut workers[i % 2];
                let worker_id = stage.monitor.worker_of(victim.id()?).await?;
                victim.child.start_kill()?;
                let killed = Instant::now();
                victim.wait_exit().await?;
                // Restarted at once; recovered once none of its jobs is doing.
                *victim = stage.spawn(CONCURRENCY)?;
                match worker_id {
                    Some(worker_id) => {
                        let (held, back) =
                            back_from_kill(&mut stage, worker_id, killed, sizes.heal()).await?;
                        struck += held;
                        back
                    }
                    None => None,
                }
            }
            Disruption::Restart => {
                let cluster = &stage.cluster;
                // pg_ctl waits for the server to answer again.
                tokio::task::block_in_place(|| cluster.restart())?;
                // From the new server's start, on its own clock.
                let up: SystemTime = stage
                    .monitor
                    .row(sql::CHAOS_SERVER_START, &[])
                    .await?
                    .try_get(0)?;
                Some(stage.monitor.started_since(up).await?)
            }
            Disruption::Terminate => {
                struck += stage.monitor.count(sql::CHAOS_TERMINATE, &[]).await?;
                let at = stage.monitor.now().await?;
                Some(stage.monitor.started_since(at).await?)
            }
        };
        recover = recover.max(recovered.unwrap_or_default());
    }
    stage.settle(sizes.heal()).await?;
    let failures = stage.stop_all(&mut workers).await?;
    let notes = match disruption {
        Disruption::Kill => vec![format!("{struck} jobs held by the killed workers")],
        Disruption::Restart => Vec::new(),
        Disruption::Terminate => vec![format!("{struck} backends ended")],
    };
    let row = stage
        .tally(
            format!("{} x{times}", disruption.name()),
            sizes.jobs,
            Some(recover),
            notes,
            failures,
        )
        .await?;
    stage.stop();
    Ok(row)
}

/// Waits until none of the jobs of killed worker `worker_id` is `doing` any more: the jobs
/// it held, and how long after the kill they were all back (`None`: not within
/// `deadline`).
async fn back_from_kill(
    stage: &mut Stage,
    worker_id: i64,
    killed: Instant,
    deadline: Duration,
) -> anyhow::Result<(i64, Option<Duration>)> {
    let held = stage
        .monitor
        .count(sql::CHAOS_DOING_COUNT, &[&worker_id])
        .await?;
    loop {
        let left = stage
            .monitor
            .count(sql::CHAOS_DOING_COUNT, &[&worker_id])
            .await?;
        if left == 0 {
            return Ok((held, Some(killed.elapsed())));
        }
        if killed.elapsed() > deadline {
            return Ok((held, None));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn sigterm(sizes: &Sizes) -> anyhow::Result<ChaosRow> {
    const SLOTS: usize = 5;
    const FAST: usize = 1_000;
    const SLOW: usize = 40;
    // The fast jobs first: at their pace the workers claim ahead, so the first one holds
    // 2-s jobs in its local queue when it is told to stop (at a 2-s pace it would not).
    let mut stage = Stage::new(sizes, &[(FAST, sizes.job_ms), (SLOW, 2_000)]).await?;
    let mut fleet = [stage.spawn(SLOTS)?, stage.spawn(SLOTS)?];
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    // The first to run a full slot of 2-s jobs is told to stop; the other carries on.
    let (index, running, waiting) = wait_running(&mut stage, &fleet, SLOTS, None).await?;
    let [a, b] = &mut fleet;
    let (first, second) = if index == 0 { (a, b) } else { (b, a) };
    let pid = first.id()?;
    let stopping = Instant::now();
    first.signal("TERM").await?;
    let code = first.wait_exit().await?;
    let graceful = stopping.elapsed();
    if code != Some(0) {
        failures.push(first.exit_note(code));
    }
    let finished = stage.monitor.count_in(&running, "succeeded").await?;
    let first_worker = stage.monitor.worker_of(pid).await?;
    let handed_back = i64::try_from(waiting.len())?
        - stage
            .monitor
            .count(sql::CHAOS_HELD_BY, &[&waiting, &first_worker])
            .await?;
    notes.push(format!(
        "SIGTERM: exit {} after {:.1} s, {finished} of {} running finished, {handed_back} of {} waiting handed back",
        code.map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
        graceful.as_secs_f64(),
        running.len(),
        waiting.len()
    ));
    if finished != i64::try_from(running.len())? {
        failures.push(format!(
            "{} running jobs did not finish on SIGTERM",
            i64::try_from(running.len())? - finished
        ));
    }
    // The second worker takes the rest; two signals stop it at once: its running jobs are
    // aborted (reason shutdown), and their retry strategy runs them again.
    // A 2-s job it started since, so that it is still running at the signals.
    let since = stage.monitor.now().await?;
    let (_, forced_jobs, _) =
        wait_running(&mut stage, std::slice::from_ref(&*second), 1, Some(since)).await?;
    let forced_running = i64::try_from(forced_jobs.len())?;
    second.signal("TERM").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let forced = Instant::now();
    second.signal("TERM").await?;
    let code = second.wait_exit().await?;
    if code != Some(0) {
        failures.push(second.exit_note(code));
    }
    let second_exit = forced.elapsed();
    let mut last = vec![stage.spawn(CONCURRENCY)?];
    stage.settle(sizes.heal()).await?;
    failures.extend(stage.stop_all(&mut last).await?);
    let again = stage
        .monitor
        .row(sql::CHAOS_RAN_AGAIN, &[&forced_jobs])
        .await?;
    let (ran_again, ended_aborted): (i64, i64) = (again.try_get(0)?, again.try_get(1)?);
    notes.push(format!(
        "second SIGTERM: exit {} after {:.1} s, {forced_running} running aborted: {ran_again} ran again by their retry strategy, {ended_aborted} ended aborted",
        code.map_or_else(|| "by signal".to_owned(), |c| c.to_string()),
        second_exit.as_secs_f64()
    ));
    let row = stage
        .tally(
            "SIGTERM (2-s jobs)".to_owned(),
            FAST + SLOW,
            Some(graceful),
            notes,
            failures,
        )
        .await?;
    stage.stop();
    Ok(row)
}

/// Waits until one of `workers` runs at least `n` jobs of a second or more (started
/// `since`, when given); which one, and the jobs it holds then: running, and waiting in
/// its local queue.
async fn wait_running(
    stage: &mut Stage,
    workers: &[Worker],
    n: usize,
    since: Option<SystemTime>,
) -> anyhow::Result<(usize, Vec<i64>, Vec<i64>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (index, worker) in workers.iter().enumerate() {
            let Some(worker_id) = stage.monitor.worker_of(worker.id()?).await? else {
                continue;
            };
            let mut running = Vec::new();
            let mut waiting = Vec::new();
            let mut slow = 0;
            for row in stage
                .monitor
                .rows(sql::CHAOS_DOING_OF_WORKER, &[&worker_id])
                .await?
            {
                let id: i64 = row.try_get("id")?;
                if row.try_get("started")? {
                    running.push(id);
                    let long = row.try_get::<_, Option<i64>>("ms")?.unwrap_or(0) >= 1000;
                    let fresh = match since {
                        Some(since) => row
                            .try_get::<_, Option<SystemTime>>("last_start")?
                            .is_some_and(|at| at >= since),
                        None => true,
                    };
                    if long && fresh {
                        slow += 1;
                    }
                } else {
                    waiting.push(id);
                }
            }
            if slow >= n {
                return Ok((index, running, waiting));
            }
        }
        if Instant::now() > deadline {
            bail!("no worker ran {n} jobs of 2 s at once within a minute");
        }
        tokio::time::sleep(POLL).await;
    }
}
