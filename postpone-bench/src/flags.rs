//! The command-line flags of `postpone bench` and of its worker processes, as clap parses
//! them; the `postpone` binary embeds them as its `bench` and `bench-worker` commands.

use clap::Args;
use clap::builder::FalseyValueParser;

/// `postpone bench`: each workload runs in a fresh database it creates and drops. Sizes
/// left unset take the full defaults, or the tiny `--quick` ones.
#[derive(Debug, Args)]
pub struct BenchFlags {
    /// Tiny sizes (W1 200, W2 5,000, W3 2,000, W4 30 jobs, 20,000 prefilled rows): checks
    /// that everything runs, measures nothing meaningful.
    #[arg(long, env = "POSTPONE_BENCH_QUICK", value_parser = FalseyValueParser::new())]
    pub quick: bool,
    /// Workloads to run, comma separated: W1, W1S, W2, W2S, W3, W3T, R1, WF, W3S, W3L
    /// (1,000,000-row table), W4, W4S, MEM, IDLE, FLEET (default: all). R1 is W3's drain with
    /// every task storing a small result. WF submits a 3-level workflow of 10,000 jobs, then
    /// runs it with one in-process worker. W1S, W2S and W3S are the server-side
    /// ceilings of W1, W2 and W3: the same row work in PL/pgSQL procedures, no client in
    /// the loop. W4S is W4's floor: one claim and one bare write on idle connections.
    #[arg(
        long,
        env = "POSTPONE_BENCH_ONLY",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub only: Vec<String>,
    /// Repetitions of every workload; each figure reports the median.
    #[arg(long, env = "POSTPONE_BENCH_RUNS", default_value_t = 1)]
    pub runs: usize,
    /// W1: jobs deferred one per transaction [default: 5,000].
    #[arg(long, env = "POSTPONE_BENCH_W1_JOBS", value_name = "N")]
    pub w1_jobs: Option<usize>,
    /// W2: jobs deferred in batches [default: 100,000].
    #[arg(long, env = "POSTPONE_BENCH_W2_JOBS", value_name = "N")]
    pub w2_jobs: Option<usize>,
    /// W2: jobs per batch_defer call [default: 1,000].
    #[arg(long, env = "POSTPONE_BENCH_W2_BATCH", value_name = "N")]
    pub w2_batch: Option<usize>,
    /// W3: queued no-op jobs to drain [default: 20,000].
    #[arg(long, env = "POSTPONE_BENCH_W3_JOBS", value_name = "N")]
    pub w3_jobs: Option<usize>,
    /// W3: concurrency of each worker process [default: 10].
    #[arg(long, env = "POSTPONE_BENCH_W3_CONCURRENCY", value_name = "N")]
    pub w3_concurrency: Option<usize>,
    /// W3: worker process counts to measure, comma separated [default: 1,2].
    #[arg(
        long,
        env = "POSTPONE_BENCH_W3_PROCESSES",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub w3_processes: Vec<usize>,
    /// W3S: claim sizes of the server-side drains, comma separated [default: the W3
    /// concurrency (what its worker claims at most) and 100].
    #[arg(
        long,
        env = "POSTPONE_BENCH_W3S_BATCHES",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub w3s_batches: Vec<usize>,
    /// W3L: succeeded jobs already in the table [default: 1,000,000].
    #[arg(long, env = "POSTPONE_BENCH_W3_PREFILL", value_name = "N")]
    pub w3_prefill: Option<usize>,
    /// W4: jobs deferred one at a time to an idle listening worker [default: 300].
    #[arg(long, env = "POSTPONE_BENCH_W4_JOBS", value_name = "N")]
    pub w4_jobs: Option<usize>,
    /// W4: milliseconds between two defers [default: 20].
    #[arg(long, env = "POSTPONE_BENCH_W4_INTERVAL_MS", value_name = "MS")]
    pub w4_interval_ms: Option<u64>,
    /// W4: concurrency of the listening worker [default: the worker default].
    #[arg(long, env = "POSTPONE_BENCH_W4_CONCURRENCY", value_name = "N")]
    pub w4_concurrency: Option<usize>,
    /// MEM: concurrency of the worker process whose peak RSS is measured [default: 100].
    #[arg(long, env = "POSTPONE_BENCH_MEMORY_CONCURRENCY", value_name = "N")]
    pub memory_concurrency: Option<usize>,
    /// MEM: jobs it drains [default: 20,000].
    #[arg(long, env = "POSTPONE_BENCH_MEMORY_JOBS", value_name = "N")]
    pub memory_jobs: Option<usize>,
    /// WF: nodes of the 3-level workflow (1% roots, 9% middle, 90% leaves) [default: 10,000].
    #[arg(long, env = "POSTPONE_BENCH_WF_JOBS", value_name = "N")]
    pub wf_jobs: Option<usize>,
    /// IDLE: seconds an idle worker process is watched for CPU use [default: 2].
    #[arg(long, env = "POSTPONE_BENCH_IDLE_SECONDS", value_name = "SECONDS")]
    pub idle_seconds: Option<f64>,
    /// FLEET: worker processes of 10 slots each [default: 8].
    #[arg(long, env = "POSTPONE_BENCH_FLEET_PROCESSES", value_name = "N")]
    pub fleet_processes: Option<usize>,
    /// FLEET: jobs each fleet drains [default: 20,000].
    #[arg(long, env = "POSTPONE_BENCH_FLEET_JOBS", value_name = "N")]
    pub fleet_jobs: Option<usize>,
    /// FLOW: jobs drained under the per-key concurrency limit [default: 20,000].
    #[arg(long, env = "POSTPONE_BENCH_FLOW_JOBS", value_name = "N")]
    pub flow_jobs: Option<usize>,
    /// RATE: the rate limit measured, starts per second [default: 100].
    #[arg(long, env = "POSTPONE_BENCH_RATE_PER_SECOND", value_name = "N")]
    pub rate_per_second: Option<u32>,
    /// RATE: seconds measured [default: 60].
    #[arg(long, env = "POSTPONE_BENCH_RATE_SECONDS", value_name = "SECONDS")]
    pub rate_seconds: Option<u64>,
    /// RATE: worker process counts to measure, comma separated [default: 1,4].
    #[arg(
        long,
        env = "POSTPONE_BENCH_RATE_PROCESSES",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub rate_processes: Vec<usize>,
    /// ANALYZE the jobs table after filling each drain's backlog, W3S's included (default:
    /// not, as a fresh backlog is before autovacuum gets to it).
    #[arg(long, env = "POSTPONE_BENCH_ANALYZE", value_parser = FalseyValueParser::new())]
    pub analyze: bool,
}

/// `postpone bench-worker` (hidden): one worker process of `postpone bench`. It connects,
/// prints `ready`, starts its worker on a `start` line of stdin, prints `completed N` as
/// outcomes are written, and stops gracefully on a `stop` line or the end of stdin.
#[derive(Debug, Args)]
pub struct BenchWorkerFlags {
    /// Jobs run at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Report progress this often (milliseconds); 0 reports only at the end.
    #[arg(long, default_value_t = 2)]
    pub report_ms: u64,
    /// As `postpone worker --asynchronous-commit` (inherited from the environment, so
    /// `POSTPONE_WORKER_ASYNCHRONOUS_COMMIT=true postpone bench` measures it).
    #[arg(long, env = "POSTPONE_WORKER_ASYNCHRONOUS_COMMIT", value_parser = FalseyValueParser::new())]
    pub asynchronous_commit: bool,
    /// As `postpone worker --prefetch` (inherited from the environment, so
    /// `POSTPONE_WORKER_PREFETCH=0 postpone bench` measures without a local queue).
    #[arg(long, env = "POSTPONE_WORKER_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Count into Prometheus metrics (postpone-metrics), as `--metrics-addr` does; spans
    /// go over OTLP when the bench sets `OTEL_EXPORTER_OTLP_ENDPOINT` (W3T).
    #[arg(long)]
    pub telemetry: bool,
}

/// `postpone chaos`: kills worker processes, restarts the server and ends its backends
/// under a draining fleet, each scenario on a private cluster, then counts every job.
#[derive(Debug, Args)]
pub struct ChaosFlags {
    /// Fewer jobs and disruptions (2,000 jobs, 3 kills, 1 restart, 2 terminations): what
    /// CI runs.
    #[arg(long, env = "POSTPONE_CHAOS_QUICK", value_parser = FalseyValueParser::new())]
    pub quick: bool,
    /// Scenarios to run, comma separated: kill, restart, terminate, sigterm (default: all).
    #[arg(
        long,
        env = "POSTPONE_CHAOS_ONLY",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub only: Vec<String>,
    /// Jobs of each drain [default: 20,000; quick 2,000].
    #[arg(long, env = "POSTPONE_CHAOS_JOBS", value_name = "N")]
    pub jobs: Option<usize>,
    /// `kill -9`s of the kill scenario [default: 20; quick 3].
    #[arg(long, env = "POSTPONE_CHAOS_KILLS", value_name = "N")]
    pub kills: Option<usize>,
    /// The workers' `--stalled-worker-timeout` (their heartbeat is a quarter of it), in
    /// seconds; 30 is the worker's default.
    #[arg(
        long,
        env = "POSTPONE_CHAOS_STALLED_WORKER_TIMEOUT",
        default_value_t = 2.0,
        value_name = "SECONDS"
    )]
    pub stalled_worker_timeout: f64,
    /// The workers' `--rescue-interval`, in seconds; 5 is the worker's default.
    #[arg(
        long,
        env = "POSTPONE_CHAOS_RESCUE_INTERVAL",
        default_value_t = 0.5,
        value_name = "SECONDS"
    )]
    pub rescue_interval: f64,
}

/// `postpone chaos-worker` (hidden): one worker process of `postpone chaos`, running the
/// suite's recording task until signalled or killed.
#[derive(Debug, Clone, Args)]
pub struct ChaosWorkerFlags {
    /// Jobs run at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// As `postpone worker --heartbeat-interval`, in seconds.
    #[arg(long, default_value_t = 0.5)]
    pub heartbeat_interval: f64,
    /// As `postpone worker --stalled-worker-timeout`, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub stalled_worker_timeout: f64,
    /// As `postpone worker --rescue-interval`, in seconds.
    #[arg(long, default_value_t = 0.5)]
    pub rescue_interval: f64,
}
