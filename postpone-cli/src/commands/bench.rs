//! `postpone bench`: the instrument of the performance issue. It measures, it never judges.
//!
//! Workloads (SPEC section 4), each case in a fresh database it creates, fills and drops:
//! - W1: one job per transaction, sequential `app.defer` on one connection: jobs/s; and,
//!   as the floor under it, as many bare one-row autocommit INSERTs (no trigger, no index).
//! - W2: `batch_defer` in batches: jobs/s, plus the count of `deferred` events written.
//! - W3: drain a backlog of no-op jobs with worker *processes* (`postpone bench-worker`
//!   children of this binary): jobs/s from the start command to the last outcome written,
//!   CPU per job of the workers (from `/proc`) and, when the server is local, of the
//!   PostgreSQL backends.
//! - W3L: the same drain with a million succeeded jobs (and their events) already in the
//!   table, and its ratio to the empty-table figure.
//! - W4: latency through an idle listening worker running in this process: from the start
//!   of the defer call, and from its return (the commit), to the first line of the task.
//! - MEM: peak RSS (`VmHWM`) of a worker process at concurrency 100 draining a backlog.
//! - IDLE: CPU used by a worker process with nothing to do (shows there is no busy poll).
//!
//! Output: one `workload value unit` line per figure (the median over `--runs`), then a
//! table; `--json` prints one document with every run's values instead.

mod child;
mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postpone::connect::ConnectConfig;
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{App, Task};
use postpone_testkit::Server;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::Context;
use crate::flags::BenchFlags;
use crate::output::{Table, print, print_json};

use child::WorkerProcess;
pub(crate) use child::worker;

/// Jobs per `batch_defer` call when filling a backlog (untimed).
const FILL_BATCH: usize = 1000;
/// W4 jobs run before the measured ones (prepared statements, warm connections).
const W4_WARMUP: usize = 5;
/// A drain that makes no progress for this long is a failure, not a figure.
const STALL: Duration = Duration::from_secs(60);

/// The no-op task of the drains.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BenchNoop {
    i: u64,
}

impl Task for BenchNoop {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.bench.noop".into()
    }

    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        std::hint::black_box(self.i);
        Ok(())
    }
}

/// W4's task: sends the instant it started, as its first act, to the bench.
#[derive(Debug, Serialize, Deserialize)]
struct BenchLatency {
    seq: u64,
}

/// Where W4's task sends its start (the worker's `additional_context`).
#[derive(Debug)]
struct LatencySink(mpsc::UnboundedSender<(u64, Instant)>);

impl Task for BenchLatency {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.bench.latency".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let started = Instant::now();
        if let Some(sink) = ctx.additional_context::<LatencySink>() {
            let _ = sink.0.send((self.seq, started));
        }
        Ok(())
    }
}

/// The sizes, resolved: explicit flags over `--quick` over the full defaults.
#[derive(Debug, Clone, Serialize)]
struct Params {
    quick: bool,
    runs: usize,
    workloads: Vec<&'static str>,
    w1_jobs: usize,
    w2_jobs: usize,
    w2_batch: usize,
    w3_jobs: usize,
    w3_concurrency: usize,
    w3_processes: Vec<usize>,
    w3_prefill: usize,
    w4_jobs: usize,
    w4_interval_ms: u64,
    w4_concurrency: usize,
    w4_warmup: usize,
    memory_concurrency: usize,
    memory_jobs: usize,
    idle_seconds: f64,
    analyze: bool,
}

/// The workloads, in the order they run.
const WORKLOADS: [&str; 7] = ["W1", "W2", "W3", "W3L", "W4", "MEM", "IDLE"];

impl Params {
    fn resolve(flags: &BenchFlags) -> anyhow::Result<Self> {
        let q = flags.quick;
        let pick = |given: Option<usize>, quick: usize, full: usize| {
            given.unwrap_or(if q { quick } else { full })
        };
        let workloads = if flags.only.is_empty() {
            WORKLOADS.to_vec()
        } else {
            let mut chosen = Vec::new();
            for name in &flags.only {
                let upper = name.trim().to_ascii_uppercase();
                let canonical = match upper.as_str() {
                    "W3-LARGE" | "W3_LARGE" | "LARGE" => "W3L",
                    "MEMORY" => "MEM",
                    other => other,
                };
                let Some(found) = WORKLOADS.iter().find(|w| **w == canonical) else {
                    bail!(
                        "--only names {name:?}: choose among {}",
                        WORKLOADS.join(", ")
                    );
                };
                if !chosen.contains(found) {
                    chosen.push(*found);
                }
            }
            WORKLOADS
                .iter()
                .copied()
                .filter(|w| chosen.contains(w))
                .collect()
        };
        let params = Self {
            quick: q,
            runs: flags.runs,
            workloads,
            w1_jobs: pick(flags.w1_jobs, 200, 5_000),
            w2_jobs: pick(flags.w2_jobs, 5_000, 100_000),
            w2_batch: pick(flags.w2_batch, 1_000, 1_000),
            w3_jobs: pick(flags.w3_jobs, 2_000, 20_000),
            w3_concurrency: pick(flags.w3_concurrency, 10, 10),
            w3_processes: if flags.w3_processes.is_empty() {
                vec![1, 2]
            } else {
                flags.w3_processes.clone()
            },
            w3_prefill: pick(flags.w3_prefill, 20_000, 1_000_000),
            w4_jobs: pick(flags.w4_jobs, 30, 300),
            w4_interval_ms: flags.w4_interval_ms.unwrap_or(20),
            w4_concurrency: flags
                .w4_concurrency
                .unwrap_or(postpone::worker::config::CONCURRENCY_DEFAULT),
            w4_warmup: W4_WARMUP,
            memory_concurrency: pick(flags.memory_concurrency, 100, 100),
            memory_jobs: pick(flags.memory_jobs, 2_000, 20_000),
            idle_seconds: flags.idle_seconds.unwrap_or(if q { 0.5 } else { 2.0 }),
            analyze: flags.analyze,
        };
        if params.runs == 0 {
            bail!("--runs is 0: give at least 1");
        }
        for (what, value) in [
            ("--w1-jobs", params.w1_jobs),
            ("--w2-jobs", params.w2_jobs),
            ("--w2-batch", params.w2_batch),
            ("--w3-jobs", params.w3_jobs),
            ("--w3-concurrency", params.w3_concurrency),
            ("--w4-jobs", params.w4_jobs),
            ("--w4-concurrency", params.w4_concurrency),
            ("--memory-concurrency", params.memory_concurrency),
            ("--memory-jobs", params.memory_jobs),
        ] {
            if value == 0 {
                bail!("{what} is 0: give at least 1");
            }
        }
        if params.w3_processes.contains(&0) {
            bail!("--w3-processes holds 0: give process counts of at least 1");
        }
        if !(params.idle_seconds > 0.0 && params.idle_seconds <= 3600.0) {
            bail!(
                "--idle-seconds is {}: give a value above 0 and at most 3600",
                params.idle_seconds
            );
        }
        Ok(params)
    }

    /// The parameters, one line.
    fn describe(&self) -> String {
        let processes: Vec<String> = self.w3_processes.iter().map(ToString::to_string).collect();
        format!(
            "runs {}{}; workloads {}; W1 {} jobs; W2 {} jobs in batches of {}; W3 {} jobs, \
             concurrency {} per process, processes {}; W3L prefill {} succeeded jobs; \
             W4 {} jobs {} ms apart, worker concurrency {}, {} warm-up jobs; \
             MEM concurrency {}, {} jobs; IDLE {} s{}",
            self.runs,
            if self.quick { " (quick)" } else { "" },
            self.workloads.join(","),
            self.w1_jobs,
            self.w2_jobs,
            self.w2_batch,
            self.w3_jobs,
            self.w3_concurrency,
            processes.join(","),
            self.w3_prefill,
            self.w4_jobs,
            self.w4_interval_ms,
            self.w4_concurrency,
            self.w4_warmup,
            self.memory_concurrency,
            self.memory_jobs,
            self.idle_seconds,
            if self.analyze {
                "; backlogs analyzed"
            } else {
                ""
            },
        )
    }
}

/// One measured value of one run.
#[derive(Debug, Clone)]
struct Figure {
    workload: String,
    value: f64,
    unit: &'static str,
    /// What a correctness figure must equal (W2's event count: the job count).
    expected: Option<f64>,
}

impl Figure {
    fn new(workload: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            workload: workload.into(),
            value,
            unit,
            expected: None,
        }
    }
}

/// One figure over all runs.
#[derive(Debug, Serialize)]
struct Series {
    workload: String,
    /// The median of `runs`.
    value: f64,
    unit: &'static str,
    runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<f64>,
}

/// The whole JSON document.
#[derive(Debug, Serialize)]
struct Report {
    postpone: &'static str,
    postgresql: ServerInfo,
    cpus: usize,
    params: Params,
    figures: Vec<Series>,
}

#[derive(Debug, Clone, Serialize)]
struct ServerInfo {
    version: String,
    version_full: String,
    server: String,
    settings: BTreeMap<String, String>,
}

pub(crate) async fn run(flags: BenchFlags, context: Context) -> anyhow::Result<ExitCode> {
    let params = Params::resolve(&flags)?;
    let json = context.format().is_json();
    let server = postpone_testkit::server_at(context.database_url.as_deref()).await?;
    let info = server_info(server).await?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let header = format!(
        "postpone bench: postpone {}, PostgreSQL {} ({}), {cpus} CPUs\n\
         settings: {}\n\
         parameters: {}\n",
        env!("CARGO_PKG_VERSION"),
        info.version,
        info.server,
        info.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        params.describe(),
    );
    if json {
        eprint!("{header}");
    } else {
        print(&header)?;
    }

    let mut bench = Bench {
        server,
        params: params.clone(),
        databases: 0,
    };
    let mut series: Vec<Series> = Vec::new();
    for run in 1..=params.runs {
        let mut figures = Vec::new();
        for workload in &params.workloads {
            for case in bench.cases(workload) {
                eprintln!("[run {run}/{}] {}", params.runs, case.label());
                let measured = bench.run_case(&case).await?;
                for figure in &measured {
                    eprintln!(
                        "    {} {} {}",
                        figure.workload,
                        format_value(figure.value, figure.unit),
                        figure.unit
                    );
                }
                figures.extend(measured);
            }
        }
        if let Some(ratio) = large_ratio(&figures, &params) {
            figures.push(ratio);
        }
        for figure in figures {
            match series.iter_mut().find(|s| s.workload == figure.workload) {
                Some(s) => s.runs.push(figure.value),
                None => series.push(Series {
                    workload: figure.workload,
                    value: 0.0,
                    unit: figure.unit,
                    runs: vec![figure.value],
                    expected: figure.expected,
                }),
            }
        }
    }
    for s in &mut series {
        s.value = median(&s.runs);
    }

    if json {
        print_json(&Report {
            postpone: env!("CARGO_PKG_VERSION"),
            postgresql: info,
            cpus,
            params,
            figures: series,
        })?;
    } else {
        let mut text = String::from("\n");
        for s in &series {
            let _ = writeln!(
                text,
                "{} {} {}",
                s.workload,
                format_value(s.value, s.unit),
                s.unit
            );
        }
        text.push('\n');
        let mut table = Table::new(&["workload", "median", "unit", "runs"], &["median"]);
        for s in &series {
            let runs: Vec<String> = s.runs.iter().map(|v| format_value(*v, s.unit)).collect();
            let mut unit = s.unit.to_owned();
            if let Some(expected) = s.expected {
                let _ = write!(unit, " (expected {expected})");
            }
            table.push(vec![
                s.workload.clone(),
                format_value(s.value, s.unit),
                unit,
                runs.join(" / "),
            ]);
        }
        text.push_str(&table.render());
        print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// W3L over W3 (1 process) of the same run.
fn large_ratio(figures: &[Figure], params: &Params) -> Option<Figure> {
    let c = params.w3_concurrency;
    let find = |name: &str| figures.iter().find(|f| f.workload == name).map(|f| f.value);
    let empty = find(&format!("W3_drain_1x{c}"))?;
    let large = find(&format!("W3_drain_1x{c}_large"))?;
    Some(Figure::new("W3_large_ratio", large / empty, "ratio"))
}

async fn server_info(server: &Server) -> anyhow::Result<ServerInfo> {
    let client = server.admin_client().await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), version(),
                    current_setting('fsync'), current_setting('synchronous_commit'),
                    current_setting('shared_buffers'), current_setting('max_connections')",
            &[],
        )
        .await
        .context("cannot read the PostgreSQL version")?;
    Ok(ServerInfo {
        version: row.get(0),
        version_full: row.get(1),
        server: server.describe(),
        settings: BTreeMap::from([
            ("fsync".to_owned(), row.get(2)),
            ("synchronous_commit".to_owned(), row.get(3)),
            ("shared_buffers".to_owned(), row.get(4)),
            ("max_connections".to_owned(), row.get(5)),
        ]),
    })
}

/// One measurement in one fresh database.
#[derive(Debug, Clone)]
enum Case {
    W1,
    W2,
    Drain {
        processes: usize,
        concurrency: usize,
        jobs: usize,
        prefill: usize,
        name: String,
        memory: bool,
    },
    W4,
    Idle,
}

impl Case {
    fn label(&self) -> String {
        match self {
            Case::W1 => "W1 enqueue, one job per transaction".to_owned(),
            Case::W2 => "W2 batch enqueue".to_owned(),
            Case::Drain {
                processes,
                concurrency,
                jobs,
                prefill,
                ..
            } => {
                let mut label = format!(
                    "drain {jobs} jobs, {processes} process(es) x concurrency {concurrency}"
                );
                if *prefill > 0 {
                    let _ = write!(label, ", {prefill} finished jobs in the table");
                }
                label
            }
            Case::W4 => "W4 latency through an idle listening worker".to_owned(),
            Case::Idle => "IDLE worker CPU".to_owned(),
        }
    }
}

struct Bench<'a> {
    server: &'a Server,
    params: Params,
    databases: usize,
}

impl Bench<'_> {
    fn cases(&self, workload: &str) -> Vec<Case> {
        let p = &self.params;
        match workload {
            "W1" => vec![Case::W1],
            "W2" => vec![Case::W2],
            "W3" => p
                .w3_processes
                .iter()
                .map(|&processes| Case::Drain {
                    processes,
                    concurrency: p.w3_concurrency,
                    jobs: p.w3_jobs,
                    prefill: 0,
                    name: format!("W3_drain_{processes}x{}", p.w3_concurrency),
                    memory: false,
                })
                .collect(),
            "W3L" => vec![Case::Drain {
                processes: 1,
                concurrency: p.w3_concurrency,
                jobs: p.w3_jobs,
                prefill: p.w3_prefill,
                name: format!("W3_drain_1x{}_large", p.w3_concurrency),
                memory: false,
            }],
            "W4" => vec![Case::W4],
            "MEM" => vec![Case::Drain {
                processes: 1,
                concurrency: p.memory_concurrency,
                jobs: p.memory_jobs,
                prefill: 0,
                name: format!("memory_drain_1x{}", p.memory_concurrency),
                memory: true,
            }],
            "IDLE" => vec![Case::Idle],
            _ => Vec::new(),
        }
    }

    /// Runs one case in a database of its own, dropped afterwards (also on Ctrl-C).
    async fn run_case(&mut self, case: &Case) -> anyhow::Result<Vec<Figure>> {
        self.databases += 1;
        let dbname = format!("postpone_bench_{}_{}", std::process::id(), self.databases);
        self.server.create_database(&dbname, None).await?;
        let url = self.server.url(&dbname);
        let outcome = tokio::select! {
            outcome = self.measure(case, &url) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        // Worker processes are gone (killed on drop) before the database is dropped.
        if let Err(error) = self.server.drop_database(&dbname).await {
            eprintln!("postpone: warning: could not drop the bench database {dbname}: {error}");
        }
        outcome
    }

    async fn measure(&self, case: &Case, url: &str) -> anyhow::Result<Vec<Figure>> {
        let connect = ConnectConfig::parse(url)?;
        let mut client = connect.connect().await?;
        postpone::schema::apply(&mut client, postpone::schema::ApplyScope::All).await?;
        drop(client);
        match case {
            Case::W1 => w1(&connect, self.params.w1_jobs).await,
            Case::W2 => w2(&connect, self.params.w2_jobs, self.params.w2_batch).await,
            Case::Drain {
                processes,
                concurrency,
                jobs,
                prefill,
                name,
                memory,
            } => {
                drain(
                    &connect,
                    url,
                    DrainCase {
                        processes: *processes,
                        concurrency: *concurrency,
                        jobs: *jobs,
                        prefill: *prefill,
                        name,
                        memory: *memory,
                        analyze: self.params.analyze,
                    },
                )
                .await
            }
            Case::W4 => w4(&connect, &self.params).await,
            Case::Idle => idle(&connect, url, self.params.idle_seconds).await,
        }
    }
}

fn app(connect: &ConnectConfig, pool_size: Option<usize>) -> anyhow::Result<App> {
    let mut builder = App::builder()
        .task::<BenchNoop>()
        .task::<BenchLatency>()
        .connect(connect.clone());
    if let Some(size) = pool_size {
        builder = builder.pool_size(size);
    }
    Ok(builder.build()?)
}

fn rate(jobs: usize, elapsed: Duration) -> f64 {
    jobs as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// W1: `app.defer`, one job per (implicit) transaction, sequentially, on one connection.
async fn w1(connect: &ConnectConfig, jobs: usize) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, Some(1))?;
    app.check_schema().await?; // opens the one connection before the clock starts
    let started = Instant::now();
    for i in 0..jobs {
        app.defer(BenchNoop { i: i as u64 }).await?;
    }
    let elapsed = started.elapsed();
    // The floor under W1 on this machine: the same number of one-row autocommit INSERTs
    // (prepared, one connection) into a table without index or trigger.
    let client = connect.connect().await?;
    client
        .batch_execute("CREATE TABLE postpone_bench_baseline (id bigint, args jsonb)")
        .await?;
    let insert = client
        .prepare("INSERT INTO postpone_bench_baseline VALUES ($1, $2)")
        .await?;
    let args = serde_json::json!({"i": 0});
    let started = Instant::now();
    for i in 0..jobs {
        client.execute(&insert, &[&(i as i64), &args]).await?;
    }
    let baseline = started.elapsed();
    Ok(vec![
        Figure::new("W1_enqueue_single", rate(jobs, elapsed), "jobs/s"),
        Figure::new("W1_baseline_bare_insert", rate(jobs, baseline), "rows/s"),
    ])
}

/// W2: `batch_defer` in batches, sequentially; then counts the `deferred` events.
async fn w2(connect: &ConnectConfig, jobs: usize, batch: usize) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, None)?;
    app.check_schema().await?;
    let started = Instant::now();
    let mut deferred = 0;
    while deferred < jobs {
        let end = jobs.min(deferred + batch);
        let ids = app
            .batch_defer((deferred..end).map(|i| app.configure(BenchNoop { i: i as u64 })))
            .await?;
        deferred += ids.len();
    }
    let elapsed = started.elapsed();
    let client = connect.connect().await?;
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred'",
            &[],
        )
        .await?
        .get(0);
    Ok(vec![
        Figure::new("W2_enqueue_batch", rate(jobs, elapsed), "jobs/s"),
        Figure {
            expected: Some(jobs as f64),
            ..Figure::new("W2_deferred_events", events as f64, "events")
        },
    ])
}

struct DrainCase<'a> {
    processes: usize,
    concurrency: usize,
    jobs: usize,
    prefill: usize,
    name: &'a str,
    memory: bool,
    analyze: bool,
}

/// Inserts `count` succeeded jobs with their deferred/started/succeeded events, set-wise
/// (no trigger fires: they are not `todo`), then vacuums and analyses both tables.
async fn prefill(client: &tokio_postgres::Client, count: usize) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status, attempts)
             SELECT 'default', 'postpone.bench.noop', 0, jsonb_build_object('i', g), 'succeeded', 1
               FROM generate_series(1, {count}) AS g;
             INSERT INTO procrastinate_events (job_id, type, at)
             SELECT j.id, e.type::procrastinate_job_event_type, now() - interval '1 hour' + e.after
               FROM procrastinate_jobs AS j
              CROSS JOIN (VALUES ('deferred', interval '0'), ('started', interval '1 ms'),
                                 ('succeeded', interval '2 ms')) AS e(type, after)
              WHERE j.status = 'succeeded';"
        ))
        .await
        .context("cannot prefill the jobs table")?;
    for table in ["procrastinate_jobs", "procrastinate_events"] {
        // One statement per call: VACUUM cannot run in the implicit transaction of two.
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    Ok(())
}

/// Defers `jobs` no-op jobs in batches (untimed set-up).
async fn fill(app: &App, jobs: usize) -> anyhow::Result<()> {
    let mut deferred = 0;
    while deferred < jobs {
        let end = jobs.min(deferred + FILL_BATCH);
        deferred += app
            .batch_defer((deferred..end).map(|i| app.configure(BenchNoop { i: i as u64 })))
            .await?
            .len();
    }
    Ok(())
}

/// CPU time of the PostgreSQL backends serving this database (other than `client`'s),
/// by pid; `None` when the server's processes cannot be read (not on this machine).
async fn backend_cpu(client: &tokio_postgres::Client) -> Option<HashMap<u32, Duration>> {
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .ok()?;
    let mut cpu = HashMap::new();
    for row in rows {
        let pid = u32::try_from(row.get::<_, i32>(0)).ok()?;
        if !procfs::is_postgres(pid) {
            return None;
        }
        if let Some(time) = procfs::cpu_time(pid) {
            cpu.insert(pid, time);
        }
    }
    Some(cpu)
}

/// CPU the backends used between two readings (backends new in `after` count whole).
fn backend_delta(before: &HashMap<u32, Duration>, after: &HashMap<u32, Duration>) -> Duration {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

/// W3, W3L and MEM: a backlog drained by worker processes.
async fn drain(
    connect: &ConnectConfig,
    url: &str,
    case: DrainCase<'_>,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    if case.prefill > 0 {
        prefill(&client, case.prefill).await?;
    }
    let app = app(connect, None)?;
    fill(&app, case.jobs).await?;
    drop(app);
    if case.analyze {
        client.batch_execute("ANALYZE procrastinate_jobs").await?;
    }

    let (mut workers, mut progress) =
        WorkerProcess::spawn_all(case.processes, url, case.concurrency, 2).await?;
    let cpu_before: Vec<Duration> = workers
        .iter()
        .map(|w| procfs::cpu_time(w.pid()).unwrap_or_default())
        .collect();
    let server_before = backend_cpu(&client).await;

    let started = Instant::now();
    for worker in &mut workers {
        worker.start().await?;
    }
    let target = case.jobs as u64;
    let mut completed = vec![0u64; case.processes];
    while completed.iter().sum::<u64>() < target {
        match tokio::time::timeout(STALL, progress.recv()).await {
            Ok(Some((index, count))) => completed[index] = count,
            Ok(None) => bail!("the worker processes exited before the backlog was drained"),
            Err(_) => bail!(
                "no progress for {} s: {} of {target} jobs done",
                STALL.as_secs(),
                completed.iter().sum::<u64>()
            ),
        }
    }
    let elapsed = started.elapsed();
    let cpu: Duration = workers
        .iter()
        .zip(&cpu_before)
        .map(|(w, before)| {
            procfs::cpu_time(w.pid())
                .unwrap_or_default()
                .saturating_sub(*before)
        })
        .sum();
    let peak_rss = workers
        .iter()
        .filter_map(|w| procfs::peak_rss(w.pid()))
        .max();
    let server_after = backend_cpu(&client).await;
    for worker in workers {
        worker.stop().await?;
    }

    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),
                    count(*) FILTER (WHERE status <> 'succeeded')
               FROM procrastinate_jobs",
            &[],
        )
        .await?;
    let (succeeded, other): (i64, i64) = (row.get(0), row.get(1));
    let expected = (case.jobs + case.prefill) as i64;
    if succeeded != expected || other != 0 {
        bail!(
            "{}: {succeeded} jobs succeeded and {other} did not, expected {expected} succeeded",
            case.name
        );
    }

    let per_job_us = |d: Duration| d.as_secs_f64() * 1e6 / case.jobs as f64;
    let name = case.name;
    let mut figures = vec![Figure::new(name, rate(case.jobs, elapsed), "jobs/s")];
    if case.memory {
        if let Some(bytes) = peak_rss {
            figures.push(Figure::new(
                format!("memory_peak_rss_c{}", case.concurrency),
                bytes as f64 / (1024.0 * 1024.0),
                "MB",
            ));
        }
    } else {
        if cpu > Duration::ZERO {
            figures.push(Figure::new(
                format!("{name}_worker_cpu_per_job"),
                per_job_us(cpu),
                "us/job",
            ));
        }
        if let (Some(before), Some(after)) = (server_before, server_after) {
            figures.push(Figure::new(
                format!("{name}_server_cpu_per_job"),
                per_job_us(backend_delta(&before, &after)),
                "us/job",
            ));
        }
    }
    Ok(figures)
}

/// IDLE: CPU a started worker process uses with no job at all.
async fn idle(connect: &ConnectConfig, url: &str, seconds: f64) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    let (mut workers, _progress) = WorkerProcess::spawn_all(1, url, 10, 0).await?;
    for worker in &mut workers {
        worker.start().await?;
    }
    // Let it register, fetch once, find nothing and settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = workers[0].pid();
    let before = procfs::cpu_time(pid);
    let server_before = backend_cpu(&client).await;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = procfs::cpu_time(pid);
    let server_after = backend_cpu(&client).await;
    for worker in workers {
        worker.stop().await?;
    }
    let mut figures = Vec::new();
    if let (Some(before), Some(after)) = (before, after) {
        figures.push(Figure::new(
            "idle_worker_cpu",
            after.saturating_sub(before).as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    if let (Some(before), Some(after)) = (server_before, server_after) {
        figures.push(Figure::new(
            "idle_worker_server_cpu",
            backend_delta(&before, &after).as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    if figures.is_empty() {
        bail!("cannot read /proc: the idle CPU figures need Linux");
    }
    Ok(figures)
}

/// W4: an idle listening worker in this process; jobs deferred one at a time.
async fn w4(connect: &ConnectConfig, params: &Params) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, None)?;
    app.check_schema().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = WorkerConfig {
        name: Some("bench-latency".to_owned()),
        concurrency: params.w4_concurrency,
        additional_context: Some(Arc::new(LatencySink(tx))),
        ..WorkerConfig::default()
    };
    let handle = app.start_worker(config).await?;
    // Let the worker fetch once, find nothing and wait on its notifications.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let interval = Duration::from_millis(params.w4_interval_ms);
    let total = params.w4_warmup + params.w4_jobs;
    let mut from_call = Vec::with_capacity(params.w4_jobs);
    let mut from_commit = Vec::with_capacity(params.w4_jobs);
    let origin = tokio::time::Instant::now();
    let outcome = async {
        for seq in 0..total {
            tokio::time::sleep_until(origin + interval * u32::try_from(seq)?).await;
            let call = Instant::now();
            app.defer(BenchLatency { seq: seq as u64 }).await?;
            let returned = Instant::now();
            let started = loop {
                match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                    Ok(Some((s, at))) if s == seq as u64 => break at,
                    Ok(Some(_)) => {}
                    Ok(None) => bail!("the latency worker stopped"),
                    Err(_) => bail!("job {seq} did not start within 10 s"),
                }
            };
            if seq >= params.w4_warmup {
                from_call.push(signed_ms(started, call));
                from_commit.push(signed_ms(started, returned));
            }
        }
        anyhow::Ok(())
    }
    .await;
    handle.stop();
    handle.join().await?;
    outcome?;
    Ok(vec![
        Figure::new("W4_defer_to_start_p50", percentile(&from_call, 50.0), "ms"),
        Figure::new("W4_defer_to_start_p99", percentile(&from_call, 99.0), "ms"),
        Figure::new("W4_pickup_p50", percentile(&from_commit, 50.0), "ms"),
        Figure::new("W4_pickup_p99", percentile(&from_commit, 99.0), "ms"),
    ])
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A value as its unit reads best.
fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "jobs/s" | "rows/s" | "events" => format!("{value:.0}"),
        "ms" => format!("{value:.3}"),
        "ratio" => format!("{value:.3}"),
        _ => format!("{value:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }

    #[test]
    fn signed_differences() {
        let a = Instant::now();
        let b = a + Duration::from_millis(2);
        assert!((signed_ms(b, a) - 2.0).abs() < 1e-9);
        assert!((signed_ms(a, b) + 2.0).abs() < 1e-9);
    }
}
