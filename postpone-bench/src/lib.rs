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
//! - FLOW and RATE: flow control (`flow.rs`): a drain under a per-key concurrency limit,
//!   and the accuracy of a rate limit with 1 and 4 worker processes.
//! - FLEET: 8 worker processes x 10 drain a backlog, then idle, directly and through a
//!   PgBouncer in transaction pooling (poll-only; the test kit starts it): jobs/s, the
//!   server connections the fleet held at most (per process), and the idle CPU per
//!   process, of the workers and of the server.
//!
//! And the ceilings the database contract puts on W1-W3 (`ceilings.rs`): W1S, W2S and W3S
//! do the same row work inside PL/pgSQL procedures, with no client in the loop. W2S also
//! runs with the `job_inserted` NOTIFY trigger, and with every user trigger, disabled (the
//! triggers' share); W3S drains in the worker's claim size (the W3 concurrency) and larger,
//! and at the worker's claim size also in as many sessions as W3 has processes, with
//! `synchronous_commit` off (the commit wait's share) and with the triggers disabled.
//! W4S is W4's floor: the worker's claim of one job, and a bare one-row `UPDATE`, each a
//! single round trip paced as W4's defers (so on a connection idle since the last), with
//! and without waiting for the WAL flush.
//!
//! The result is a [`Report`]: one [`Series`] per figure (the median over `--runs`, and
//! every run's value); the `postpone` binary prints it as lines and a table, or as one JSON
//! document with `--json`. Progress goes to stderr as it runs.
//!
//! `postpone chaos` ([`chaos()`]) is here too: it kills worker processes, restarts the
//! server and ends its backends under a draining fleet, and counts every job afterwards.
//!
//! This crate is dev tooling: the `postpone` binary has it behind its default `dev-tools`
//! feature, and an application that embeds `postpone_cli::run` without default features
//! does not compile it (nor the testkit it needs). Its SQL is in `sql/`, one file per
//! statement ([`sql`](sql/index.html)).

mod ceilings;
mod chaos;
mod child;
mod flags;
mod flow;
mod otlp_sink;
mod procfs;
mod sql;
mod workflow;
mod workloads;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postpone::Task;
use postpone::connect::ConnectConfig;
use postpone::task::{JobContext, TaskError};
use postpone_testkit::{PgBouncer, PoolMode, Server};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use ceilings::{Drain, Triggers, w1s, w2s, w3s, w4s};
pub use chaos::{ChaosReport, ChaosRow, SCENARIOS, chaos, chaos_worker};
pub use child::worker;
pub use flags::{BenchFlags, BenchWorkerFlags, ChaosFlags, ChaosWorkerFlags};
use workflow::workflow;
use workloads::{DrainCase, Fleet, drain, fleet, idle, median, w1, w2, w4};

/// Jobs per `batch_defer` call when filling a backlog (untimed).
const FILL_BATCH: usize = 1000;
/// W4 jobs run before the measured ones (prepared statements, warm connections).
const W4_WARMUP: usize = 5;
/// The larger claim size of W3S by default (next to the worker's own).
const W3S_LARGE_BATCH: usize = 100;
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

/// R1's task: returns a small struct, stored with its job (`postpone_job_results`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BenchResult {
    i: u64,
}

/// What [`BenchResult`] returns: about 50 bytes of JSON.
#[derive(Debug, Serialize)]
struct BenchOutput<'a> {
    i: u64,
    doubled: u64,
    label: &'a str,
}

impl Task for BenchResult {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.bench.result".into()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        ctx.set_result(&BenchOutput {
            i: self.i,
            doubled: self.i.wrapping_mul(2),
            label: "bench",
        })
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
    w3s_batches: Vec<usize>,
    w4_jobs: usize,
    w4_interval_ms: u64,
    w4_concurrency: usize,
    w4_warmup: usize,
    memory_concurrency: usize,
    memory_jobs: usize,
    wf_jobs: usize,
    idle_seconds: f64,
    fleet_processes: usize,
    fleet_concurrency: usize,
    fleet_jobs: usize,
    flow_jobs: usize,
    rate_per_second: u32,
    rate_seconds: u64,
    rate_processes: Vec<usize>,
    analyze: bool,
}

/// The workloads, in the order they run (each ceiling right after its workload).
const WORKLOADS: [&str; 17] = [
    "W1", "W1S", "W2", "W2S", "W3", "W3T", "R1", "WF", "W3S", "W3L", "W4", "W4S", "MEM", "IDLE",
    "FLEET", "FLOW", "RATE",
];

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
        let w3_concurrency = pick(flags.w3_concurrency, 10, 10);
        let params = Self {
            quick: q,
            runs: flags.runs,
            workloads,
            w1_jobs: pick(flags.w1_jobs, 200, 5_000),
            w2_jobs: pick(flags.w2_jobs, 5_000, 100_000),
            w2_batch: pick(flags.w2_batch, 1_000, 1_000),
            w3_jobs: pick(flags.w3_jobs, 2_000, 20_000),
            w3_concurrency,
            w3_processes: if flags.w3_processes.is_empty() {
                vec![1, 2]
            } else {
                flags.w3_processes.clone()
            },
            w3_prefill: pick(flags.w3_prefill, 20_000, 1_000_000),
            w3s_batches: if flags.w3s_batches.is_empty() {
                let mut batches = vec![w3_concurrency];
                if w3_concurrency != W3S_LARGE_BATCH {
                    batches.push(W3S_LARGE_BATCH);
                }
                batches
            } else {
                flags.w3s_batches.clone()
            },
            w4_jobs: pick(flags.w4_jobs, 30, 300),
            w4_interval_ms: flags.w4_interval_ms.unwrap_or(20),
            w4_concurrency: flags
                .w4_concurrency
                .unwrap_or(postpone::worker::config::CONCURRENCY_DEFAULT),
            w4_warmup: W4_WARMUP,
            memory_concurrency: pick(flags.memory_concurrency, 100, 100),
            memory_jobs: pick(flags.memory_jobs, 2_000, 20_000),
            wf_jobs: pick(flags.wf_jobs, 1_000, 10_000),
            idle_seconds: flags.idle_seconds.unwrap_or(if q { 0.5 } else { 2.0 }),
            fleet_processes: pick(flags.fleet_processes, 8, 8),
            fleet_concurrency: 10,
            fleet_jobs: pick(flags.fleet_jobs, 2_000, 20_000),
            flow_jobs: pick(flags.flow_jobs, 2_000, 20_000),
            rate_per_second: flags.rate_per_second.unwrap_or(100),
            rate_seconds: flags.rate_seconds.unwrap_or(if q { 5 } else { 60 }),
            rate_processes: if flags.rate_processes.is_empty() {
                vec![1, 4]
            } else {
                flags.rate_processes.clone()
            },
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
            ("--wf-jobs", params.wf_jobs),
            ("--fleet-processes", params.fleet_processes),
            ("--fleet-jobs", params.fleet_jobs),
            ("--flow-jobs", params.flow_jobs),
            ("--rate-per-second", params.rate_per_second as usize),
            ("--rate-seconds", params.rate_seconds as usize),
        ] {
            if value == 0 {
                bail!("{what} is 0: give at least 1");
            }
        }
        if params.w3_processes.contains(&0) {
            bail!("--w3-processes holds 0: give process counts of at least 1");
        }
        if params.rate_processes.contains(&0) {
            bail!("--rate-processes holds 0: give process counts of at least 1");
        }
        if params.w3s_batches.contains(&0) {
            bail!("--w3s-batches holds 0: give claim sizes of at least 1");
        }
        let ceilings = ["W1S", "W2S", "W3S"];
        let sizes = [
            ("--w1-jobs", params.w1_jobs),
            ("--w2-jobs", params.w2_jobs),
            ("--w2-batch", params.w2_batch),
            ("--w3-jobs", params.w3_jobs),
        ]
        .into_iter()
        .chain(params.w3s_batches.iter().map(|b| ("--w3s-batches", *b)))
        .filter(|_| params.workloads.iter().any(|w| ceilings.contains(w)));
        for (what, value) in sizes {
            // The ceiling procedures take PostgreSQL integers.
            if i32::try_from(value).is_err() {
                bail!("{what} is {value}: at most {} for the ceilings", i32::MAX);
            }
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
        let batches: Vec<String> = self.w3s_batches.iter().map(ToString::to_string).collect();
        format!(
            "runs {}{}; workloads {}; W1 {} jobs; W2 {} jobs in batches of {}; W3 {} jobs, \
             concurrency {} per process, processes {}; W3S claims of {}; \
             W3L prefill {} succeeded jobs; \
             W4 {} jobs {} ms apart, worker concurrency {}, {} warm-up jobs; \
             MEM concurrency {}, {} jobs; IDLE {} s; FLEET {} processes x {}, {} jobs; \
             FLOW {} jobs; RATE {}/s over {} s, processes {}{}",
            self.runs,
            if self.quick { " (quick)" } else { "" },
            self.workloads.join(","),
            self.w1_jobs,
            self.w2_jobs,
            self.w2_batch,
            self.w3_jobs,
            self.w3_concurrency,
            processes.join(","),
            batches.join(","),
            self.w3_prefill,
            self.w4_jobs,
            self.w4_interval_ms,
            self.w4_concurrency,
            self.w4_warmup,
            self.memory_concurrency,
            self.memory_jobs,
            self.idle_seconds,
            self.fleet_processes,
            self.fleet_concurrency,
            self.fleet_jobs,
            self.flow_jobs,
            self.rate_per_second,
            self.rate_seconds,
            self.rate_processes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
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
pub struct Series {
    /// The figure's name (`W3_drain_1x10`).
    pub workload: String,
    /// The median of `runs`.
    pub value: f64,
    /// Its unit (`jobs/s`, `ms`, `us/job`, ...).
    pub unit: &'static str,
    /// Every run's value.
    pub runs: Vec<f64>,
    /// What a correctness figure must equal (an event count: the job count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
}

impl Series {
    /// A value of this series as its unit reads best.
    #[must_use]
    pub fn format(&self, value: f64) -> String {
        format_value(value, self.unit)
    }
}

/// What `postpone bench` measured, and where.
#[derive(Debug, Serialize)]
pub struct Report {
    postpone: &'static str,
    postgresql: ServerInfo,
    cpus: usize,
    params: Params,
    /// One series per figure, in the order measured.
    pub figures: Vec<Series>,
}

#[derive(Debug, Clone, Serialize)]
struct ServerInfo {
    version: String,
    version_full: String,
    server: String,
    settings: BTreeMap<String, String>,
}

/// A benchmark ready to run: sizes resolved, server found.
#[derive(Debug)]
pub struct Bench {
    server: &'static Server,
    params: Params,
    info: ServerInfo,
    cpus: usize,
}

impl Bench {
    /// Resolves the sizes and finds the server: `database_url` if given, else the local
    /// one, else a throwaway cluster (postpone-testkit).
    ///
    /// # Errors
    /// A bad flag, with what to give instead; no server to be found or started.
    pub async fn prepare(flags: &BenchFlags, database_url: Option<&str>) -> anyhow::Result<Self> {
        let params = Params::resolve(flags)?;
        let server = postpone_testkit::server_at(database_url).await?;
        let info = server_info(server).await?;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(Self {
            server,
            params,
            info,
            cpus,
        })
    }

    /// What is measured, where: the report's first lines.
    #[must_use]
    pub fn header(&self) -> String {
        format!(
            "postpone bench: postpone {}, PostgreSQL {} ({}), {} CPUs\n\
             settings: {}\n\
             parameters: {}\n",
            env!("CARGO_PKG_VERSION"),
            self.info.version,
            self.info.server,
            self.cpus,
            self.info
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            self.params.describe(),
        )
    }

    /// Runs every workload `--runs` times, each case in a fresh database, printing
    /// progress on stderr.
    ///
    /// # Errors
    /// A case that fails (its database is dropped all the same), or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<Report> {
        let params = self.params.clone();
        let mut runner = Runner {
            server: self.server,
            params: params.clone(),
            databases: 0,
        };
        let mut series: Vec<Series> = Vec::new();
        for run in 1..=params.runs {
            let mut figures = Vec::new();
            for workload in &params.workloads {
                for case in runner.cases(workload) {
                    eprintln!("[run {run}/{}] {}", params.runs, case.label());
                    let measured = runner.run_case(&case).await?;
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
            figures.extend(cost_shares(&figures));
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
        Ok(Report {
            postpone: env!("CARGO_PKG_VERSION"),
            postgresql: self.info,
            cpus: self.cpus,
            params,
            figures: series,
        })
    }
}

/// W3L over W3 (1 process) of the same run.
fn large_ratio(figures: &[Figure], params: &Params) -> Option<Figure> {
    let c = params.w3_concurrency;
    let find = |name: &str| figures.iter().find(|f| f.workload == name).map(|f| f.value);
    let empty = find(&format!("W3_drain_1x{c}"))?;
    let large = find(&format!("W3_drain_1x{c}_large"))?;
    Some(Figure::new("W3_large_ratio", large / empty, "ratio"))
}

/// For each ceiling run without a cost (`<name>_no_triggers`, `<name>_no_notify`: triggers
/// disabled; `<name>_async`: no wait for the WAL flush), the share of `<name>`'s time that
/// went to it in the same run, `1 - rate with / rate without` (`<name>_trigger_share`,
/// `<name>_notify_share`, `<name>_commit_wait_share`); and for each drain with telemetry
/// on (W3T), what it cost against the same drain off in the same run, `1 - rate on /
/// rate off` (`<name>_telemetry_cost`; its median over `--runs` pairs each run's W3T with
/// that run's W3, which the drift between runs on a shared machine does not sway).
fn cost_shares(figures: &[Figure]) -> Vec<Figure> {
    let rate = |name: &str| {
        figures
            .iter()
            .find(|f| f.workload == name && f.unit == "jobs/s")
            .map(|f| f.value)
    };
    let mut shares = Vec::new();
    for figure in figures.iter().filter(|f| f.unit == "jobs/s") {
        // W3T against W3 of the same run: what telemetry costs, `1 - rate on / rate off`.
        if let Some(base) = figure.workload.strip_suffix("_telemetry")
            && let Some(off) = rate(base)
        {
            shares.push(Figure::new(
                format!("{base}_telemetry_cost"),
                1.0 - figure.value / off,
                "ratio",
            ));
        }
        for (suffix, share) in [
            ("_no_triggers", "trigger"),
            ("_no_notify", "notify"),
            ("_async", "commit_wait"),
        ] {
            if let Some(base) = figure.workload.strip_suffix(suffix)
                && let Some(with) = rate(base)
            {
                shares.push(Figure::new(
                    format!("{base}_{share}_share"),
                    1.0 - with / figure.value,
                    "ratio",
                ));
            }
        }
    }
    shares
}

async fn server_info(server: &Server) -> anyhow::Result<ServerInfo> {
    let client = server.admin_client().await?;
    let row = client
        .query_one(sql::SERVER_INFO, &[])
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
    W1S,
    W2,
    W2S(Triggers),
    W3S(Drain),
    Drain {
        processes: usize,
        concurrency: usize,
        jobs: usize,
        prefill: usize,
        name: String,
        memory: bool,
        telemetry: bool,
        /// Every job's task returns a small struct, stored (R1).
        results: bool,
    },
    /// A 3-level workflow, submitted then run by an in-process worker.
    Workflow,
    W4,
    W4S,
    Idle,
    /// Many worker processes on one server, directly or through PgBouncer.
    Fleet {
        pgbouncer: bool,
    },
    /// A drain under a per-key concurrency limit.
    Flow {
        processes: usize,
    },
    /// A rate limit's accuracy.
    Rate {
        processes: usize,
    },
}

impl Case {
    fn label(&self) -> String {
        match self {
            Case::W1 => "W1 enqueue, one job per transaction".to_owned(),
            Case::W1S => "W1S server-side ceiling of W1".to_owned(),
            Case::W2 => "W2 batch enqueue".to_owned(),
            Case::W2S(triggers) => format!("W2S server-side ceiling of W2{}", triggers.label()),
            Case::W3S(drain) => drain.label(),
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
            Case::Workflow => "WF a 3-level workflow: submit, then run".to_owned(),
            Case::W4 => "W4 latency through an idle listening worker".to_owned(),
            Case::W4S => "W4S floor of W4: one claim, one write, on idle connections".to_owned(),
            Case::Idle => "IDLE worker CPU".to_owned(),
            Case::Flow { processes } => format!(
                "FLOW drain under a per-key concurrency limit of {}, {processes} process(es)",
                flow::FLOW_LIMIT
            ),
            Case::Rate { processes } => {
                format!("RATE accuracy of a rate limit, {processes} process(es)")
            }
            Case::Fleet { pgbouncer } => format!(
                "FLEET drain and idle of many worker processes, {}",
                if *pgbouncer {
                    "through PgBouncer (transaction pooling, poll-only)"
                } else {
                    "direct"
                }
            ),
        }
    }
}

/// Runs cases, each in a database of its own.
struct Runner {
    server: &'static Server,
    params: Params,
    databases: usize,
}

impl Runner {
    fn cases(&self, workload: &str) -> Vec<Case> {
        let p = &self.params;
        match workload {
            "W1" => vec![Case::W1],
            "W1S" => vec![Case::W1S],
            "W2" => vec![Case::W2],
            "W2S" => [
                Triggers::All,
                Triggers::SetWise,
                Triggers::Floor,
                Triggers::NoNotify,
                Triggers::None,
            ]
            .into_iter()
            .map(Case::W2S)
            .collect(),
            "W3S" => {
                let drain = |batch, sessions, asynchronous, triggers| {
                    Case::W3S(Drain {
                        batch,
                        sessions,
                        asynchronous,
                        triggers,
                    })
                };
                let mut cases: Vec<Case> = p
                    .w3s_batches
                    .iter()
                    .map(|&batch| drain(batch, 1, false, Triggers::All))
                    .collect();
                // At the worker's claim size: as many sessions as W3 has processes, without
                // waiting for the WAL flush, and without the triggers.
                if let Some(&batch) = p.w3s_batches.first() {
                    for &sessions in p.w3_processes.iter().filter(|&&n| n > 1) {
                        cases.push(drain(batch, sessions, false, Triggers::All));
                    }
                    cases.push(drain(batch, 1, true, Triggers::All));
                    cases.push(drain(batch, 1, false, Triggers::None));
                }
                cases
            }
            "W3" | "W3T" => p
                .w3_processes
                .iter()
                .map(|&processes| {
                    let telemetry = workload == "W3T";
                    Case::Drain {
                        processes,
                        concurrency: p.w3_concurrency,
                        jobs: p.w3_jobs,
                        prefill: 0,
                        name: format!(
                            "W3_drain_{processes}x{}{}",
                            p.w3_concurrency,
                            if telemetry { "_telemetry" } else { "" }
                        ),
                        memory: false,
                        telemetry,
                        results: false,
                    }
                })
                .collect(),
            "R1" => vec![Case::Drain {
                processes: 1,
                concurrency: p.w3_concurrency,
                jobs: p.w3_jobs,
                prefill: 0,
                name: format!("R1_drain_1x{}_results", p.w3_concurrency),
                memory: false,
                telemetry: false,
                results: true,
            }],
            "W3L" => vec![Case::Drain {
                processes: 1,
                concurrency: p.w3_concurrency,
                jobs: p.w3_jobs,
                prefill: p.w3_prefill,
                name: format!("W3_drain_1x{}_large", p.w3_concurrency),
                memory: false,
                telemetry: false,
                results: false,
            }],
            "WF" => vec![Case::Workflow],
            "W4" => vec![Case::W4],
            "W4S" => vec![Case::W4S],
            "MEM" => vec![Case::Drain {
                processes: 1,
                concurrency: p.memory_concurrency,
                jobs: p.memory_jobs,
                prefill: 0,
                name: format!("memory_drain_1x{}", p.memory_concurrency),
                memory: true,
                telemetry: false,
                results: false,
            }],
            "IDLE" => vec![Case::Idle],
            "FLEET" => vec![
                Case::Fleet { pgbouncer: false },
                Case::Fleet { pgbouncer: true },
            ],
            "FLOW" => p
                .w3_processes
                .iter()
                .map(|&processes| Case::Flow { processes })
                .collect(),
            "RATE" => p
                .rate_processes
                .iter()
                .map(|&processes| Case::Rate { processes })
                .collect(),
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
            Case::W1S => w1s(&connect, self.params.w1_jobs).await,
            Case::W2 => w2(&connect, self.params.w2_jobs, self.params.w2_batch).await,
            Case::W2S(triggers) => {
                w2s(
                    &connect,
                    self.params.w2_jobs,
                    self.params.w2_batch,
                    *triggers,
                )
                .await
            }
            Case::W3S(drain) => {
                w3s(&connect, self.params.w3_jobs, *drain, self.params.analyze).await
            }
            Case::Drain {
                processes,
                concurrency,
                jobs,
                prefill,
                name,
                memory,
                telemetry,
                results,
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
                        telemetry: *telemetry,
                        results: *results,
                    },
                )
                .await
            }
            Case::Workflow => {
                workflow(&connect, self.params.wf_jobs, self.params.w3_concurrency).await
            }
            Case::W4 => w4(&connect, &self.params).await,
            Case::W4S => {
                let p = &self.params;
                let interval = Duration::from_millis(p.w4_interval_ms);
                w4s(&connect, p.w4_jobs, interval, p.w4_warmup).await
            }
            Case::Idle => idle(&connect, url, self.params.idle_seconds).await,
            Case::Flow { processes } => {
                let p = &self.params;
                flow::flow_drain(&connect, url, *processes, p.w3_concurrency, p.flow_jobs).await
            }
            Case::Rate { processes } => {
                let p = &self.params;
                flow::rate_accuracy(&connect, url, *processes, p.rate_per_second, p.rate_seconds)
                    .await
            }
            Case::Fleet { pgbouncer } => {
                let p = &self.params;
                let through = if *pgbouncer {
                    match PgBouncer::shared(PoolMode::Transaction).await {
                        Ok(bouncer) => Some(bouncer),
                        Err(error) => {
                            eprintln!("    skipped: {error}");
                            return Ok(Vec::new());
                        }
                    }
                } else {
                    None
                };
                fleet(
                    &connect,
                    url,
                    Fleet {
                        processes: p.fleet_processes,
                        concurrency: p.fleet_concurrency,
                        jobs: p.fleet_jobs,
                        idle_seconds: p.idle_seconds,
                        through,
                    },
                )
                .await
            }
        }
    }
}

/// A value as its unit reads best.
fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "jobs/s" | "rows/s" | "events" | "jobs" => format!("{value:.0}"),
        "ms" => format!("{value:.3}"),
        "%" => format!("{value:+.2}"),
        "ratio" => format!("{value:.3}"),
        _ => format!("{value:.1}"),
    }
}
