//! Raw flags, as clap parses them: strings and numbers, nothing interpreted yet.
//!
//! Every option can also come from an environment variable (shown in `--help`): the global
//! ones are `DATABASE_URL`, `POSTPONE_POLL_ONLY`, `POSTPONE_JSON` and `POSTPONE_LOG_LEVEL`; a
//! command's option is `POSTPONE_<COMMAND>_<OPTION>` (`postpone defer --queue` reads
//! `POSTPONE_DEFER_QUEUE`), the same scheme as Procrastinate's `PROCRASTINATE_DEFER_QUEUE`,
//! so that a variable set for one command never filters another one by surprise.
//!
//! The commands in `commands/` turn these into typed library calls (ripgrep's
//! `lowargs` -> `hiargs` split). Adding a command is one variant of [`Command`] plus one
//! file under `commands/`.

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand};

/// `postpone`: a PostgreSQL task queue that shares Procrastinate's database.
#[derive(Debug, Parser)]
#[command(
    name = "postpone",
    version,
    about = "A PostgreSQL task queue that shares Procrastinate 3.10's database contract.",
    long_about = None,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Flags {
    /// The database: a postgres:// URL or "key=value" conninfo. Without it: the libpq
    /// variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), then the local server.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    /// Poll-only mode, for PgBouncer in transaction mode (pool_mode = transaction): no
    /// LISTEN (workers poll), no named prepared statements, no session settings.
    #[arg(long, global = true, env = "POSTPONE_POLL_ONLY", value_parser = FalseyValueParser::new())]
    pub poll_only: bool,

    /// Print one JSON document (object or array) instead of text for humans.
    #[arg(long, global = true, env = "POSTPONE_JSON", value_parser = FalseyValueParser::new())]
    pub json: bool,

    /// Log level (error, warn, info, debug, trace) or a tracing filter; logs go to stderr.
    /// Falls back to RUST_LOG, then warn.
    #[arg(long, global = true, env = "POSTPONE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install, inspect and check the database schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Defer a job of a task, with JSON keyword arguments.
    Defer(DeferFlags),
    /// Check that the database is reachable and its schema ready.
    Healthchecks,
    /// List jobs, stalled jobs, or delete old ones.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Workflows (DAGs of jobs): list the newest, or show one with its nodes.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Queues with their job counts per status and whether they are paused; pause or
    /// resume one.
    Queues(QueuesFlags),
    /// Tasks with their job counts per status.
    Tasks(CountFlags),
    /// Locks with their job counts per status.
    Locks(CountFlags),
    /// Put a failed job, or a stalled (doing) one, back in the queue.
    Retry(RetryFlags),
    /// Cancel a job that has not started (todo -> cancelled).
    Cancel(CancelFlags),
    /// Abort a job: cancel it if it waits, ask its worker to stop it if it runs.
    Abort(AbortFlags),
    /// Run a worker: take jobs of this binary's tasks and run them until stopped.
    Worker(WorkerFlags),
    /// Demo: defer jobs into a fresh database and work them off, showing the throughput.
    #[cfg(feature = "dev-tools")]
    Demo(DemoFlags),
    /// Benchmark: run the workloads W1-W4, their server-side ceilings, memory and idle CPU,
    /// each in a fresh database.
    #[cfg(feature = "dev-tools")]
    Bench(postpone_bench::BenchFlags),
    /// A worker process of `postpone bench` (internal: driven over stdin/stdout).
    #[command(hide = true)]
    #[cfg(feature = "dev-tools")]
    BenchWorker(postpone_bench::BenchWorkerFlags),
    /// Chaos suite: kill worker processes, restart the server and end its backends under a
    /// draining fleet (each on a private cluster), then count every job: lost, run twice,
    /// stuck, time to recover.
    #[cfg(feature = "dev-tools")]
    Chaos(postpone_bench::ChaosFlags),
    /// A worker process of `postpone chaos` (internal).
    #[command(hide = true)]
    #[cfg(feature = "dev-tools")]
    ChaosWorker(postpone_bench::ChaosWorkerFlags),
    /// Web dashboard: queues, jobs, workers, periodic tasks and actions, over HTTP
    /// (loopback only unless POSTPONE_DASHBOARD_TOKEN is set). Stops on SIGINT/SIGTERM.
    Dashboard(DashboardFlags),
    /// Admin shell (Procrastinate's `procrastinate shell`): list_jobs, list_queues,
    /// list_tasks, list_locks, retry, cancel, abort; interactive, or one command.
    Shell(ShellFlags),
}

/// `postpone worker` (Procrastinate's `procrastinate worker`).
#[derive(Debug, Args)]
pub struct WorkerFlags {
    /// The worker's name, in logs and in each job's context.
    #[arg(short, long, env = "POSTPONE_WORKER_NAME")]
    pub name: Option<String>,
    /// Queues to take jobs from, comma separated (default: all queues).
    #[arg(short, long, env = "POSTPONE_WORKER_QUEUES", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Jobs run at once.
    #[arg(short, long, env = "POSTPONE_WORKER_CONCURRENCY", default_value_t = postpone::worker::config::CONCURRENCY_DEFAULT, allow_negative_numbers = true)]
    pub concurrency: usize,
    /// Stop once no job is left instead of waiting for more (one-shot).
    #[arg(long, env = "POSTPONE_WORKER_ONE_SHOT", value_parser = FalseyValueParser::new(), conflicts_with = "wait")]
    pub one_shot: bool,
    /// Wait for new jobs (the default; the opposite of --one-shot).
    #[arg(long, env = "POSTPONE_WORKER_WAIT", value_parser = FalseyValueParser::new())]
    pub wait: bool,
    /// Wake on LISTEN/NOTIFY (on|off); off polls only (for PgBouncer in transaction mode).
    #[arg(long, env = "POSTPONE_WORKER_LISTEN_NOTIFY", default_value = "on", value_parser = ["on", "off", "true", "false"])]
    pub listen_notify: String,
    /// Fetch at least this often without notification (seconds, or 500ms, 5s, 1m).
    #[arg(
        long,
        env = "POSTPONE_WORKER_FETCH_JOB_POLLING_INTERVAL",
        default_value = "5",
        value_name = "DELAY"
    )]
    pub fetch_job_polling_interval: String,
    /// Look for abort requests of running jobs this often.
    #[arg(
        long,
        env = "POSTPONE_WORKER_ABORT_JOB_POLLING_INTERVAL",
        default_value = "5",
        value_name = "DELAY"
    )]
    pub abort_job_polling_interval: String,
    /// On stop, wait this long for running jobs, then abort them (default: wait for them).
    #[arg(
        long,
        env = "POSTPONE_WORKER_SHUTDOWN_GRACEFUL_TIMEOUT",
        value_name = "DELAY"
    )]
    pub shutdown_graceful_timeout: Option<String>,
    /// Delete finished jobs: never, successful or always.
    #[arg(long, env = "POSTPONE_WORKER_DELETE_JOBS", default_value = "never", value_parser = ["never", "successful", "always"])]
    pub delete_jobs: String,
    /// Heartbeat period.
    #[arg(
        long,
        env = "POSTPONE_WORKER_HEARTBEAT_INTERVAL",
        default_value = "10",
        value_name = "DELAY"
    )]
    pub heartbeat_interval: String,
    /// Write claims and outcomes with synchronous_commit off (faster; after a PostgreSQL
    /// crash some jobs may run again, none is lost).
    #[arg(long, env = "POSTPONE_WORKER_ASYNCHRONOUS_COMMIT", value_parser = FalseyValueParser::new())]
    pub asynchronous_commit: bool,
    /// Most jobs claimed beyond the free slots, waiting in a local queue (fewer when jobs
    /// take long; 0: claim only for free slots) [default: 400].
    #[arg(long, env = "POSTPONE_WORKER_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,
    /// Workers silent for this long are dead: their jobs are rescued, their rows removed.
    #[arg(
        long,
        env = "POSTPONE_WORKER_STALLED_WORKER_TIMEOUT",
        default_value = "30",
        value_name = "DELAY"
    )]
    pub stalled_worker_timeout: String,
    /// Do not rescue the jobs of dead workers (then they stay doing until a person acts,
    /// as with Procrastinate; dead workers are only pruned at start).
    #[arg(long, env = "POSTPONE_WORKER_NO_RESCUE", value_parser = FalseyValueParser::new())]
    pub no_rescue: bool,
    /// Rescue the jobs of dead workers this often (one worker at a time does it).
    #[arg(
        long,
        env = "POSTPONE_WORKER_RESCUE_INTERVAL",
        default_value = "5",
        value_name = "DELAY"
    )]
    pub rescue_interval: String,
    /// Abort and fail a job (error kind Timeout, then retried by its task's strategy) once
    /// it has run this long, when neither its defer call nor its task set a timeout
    /// (default: no limit).
    #[arg(long, env = "POSTPONE_WORKER_TASK_TIMEOUT", value_name = "DELAY")]
    pub task_timeout: Option<String>,
    /// Serve Prometheus metrics of this worker on http://ADDR/metrics (host:port, e.g.
    /// 127.0.0.1:9464; default: none). Jobs started, finished by outcome, rescued, their
    /// durations and waits, batches written, database errors: see docs/observability.md.
    #[arg(long, env = "POSTPONE_WORKER_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Do not defer this binary's periodic tasks (another worker does; default: defer
    /// them, every tick once across all workers).
    #[arg(long, env = "POSTPONE_WORKER_NO_PERIODIC", value_parser = FalseyValueParser::new())]
    pub no_periodic: bool,
}

/// `postpone demo`
#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct DemoFlags {
    /// How many jobs to defer and work off.
    #[arg(long, env = "POSTPONE_DEMO_JOBS", default_value_t = 20_000)]
    pub jobs: usize,
    /// Worker concurrency.
    #[arg(short, long, env = "POSTPONE_DEMO_CONCURRENCY", default_value_t = 10)]
    pub concurrency: usize,
    /// Keep the demo database afterwards (it is dropped by default).
    #[arg(long, env = "POSTPONE_DEMO_KEEP", value_parser = FalseyValueParser::new())]
    pub keep: bool,
}

/// `postpone schema ...`
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Apply the pending migrations (both halves unless --pre or --post).
    Apply(SchemaApplyFlags),
    /// Print the whole schema SQL (what `apply` creates in a fresh database).
    Read,
    /// Compare the database with the expected schema; exit 1 if anything differs or is pending.
    Check,
    /// Print where the migration files are, or write them to a directory.
    MigrationsPath(MigrationsPathFlags),
}

/// `postpone schema apply`
#[derive(Debug, Args)]
pub struct SchemaApplyFlags {
    /// Only the pre halves: safe while workers of the previous version still run.
    #[arg(long, conflicts_with = "post", env = "POSTPONE_SCHEMA_APPLY_PRE", value_parser = FalseyValueParser::new())]
    pub pre: bool,
    /// Only the post halves: once every worker runs this version.
    #[arg(long, env = "POSTPONE_SCHEMA_APPLY_POST", value_parser = FalseyValueParser::new())]
    pub post: bool,
}

/// `postpone schema migrations-path`
#[derive(Debug, Args)]
pub struct MigrationsPathFlags {
    /// Write the migration files into this directory (created if needed) and list them.
    #[arg(
        long,
        value_name = "DIR",
        env = "POSTPONE_SCHEMA_MIGRATIONS_PATH_WRITE"
    )]
    pub write: Option<PathBuf>,
}

/// `postpone defer`
#[derive(Debug, Args)]
pub struct DeferFlags {
    /// The task name (as stored in procrastinate_jobs.task_name).
    pub task: String,
    /// The keyword arguments, a JSON object.
    #[arg(default_value = "{}", value_name = "JSON")]
    pub args: String,
    /// Queue (default: the task's queue, else "default").
    #[arg(short, long, env = "POSTPONE_DEFER_QUEUE")]
    pub queue: Option<String>,
    /// Lock: never run while another job with this lock runs.
    #[arg(long, env = "POSTPONE_DEFER_LOCK")]
    pub lock: Option<String>,
    /// Queueing lock: refused while another job with it waits.
    #[arg(long, env = "POSTPONE_DEFER_QUEUEING_LOCK")]
    pub queueing_lock: Option<String>,
    /// On a queueing-lock collision, say so and exit 0 instead of failing.
    #[arg(short = 'i', long, env = "POSTPONE_DEFER_IGNORE_ALREADY_ENQUEUED", value_parser = FalseyValueParser::new())]
    pub ignore_already_enqueued: bool,
    /// Not before this time: ISO 8601 with a time zone, e.g. 2026-11-28T12:00:00+00:00.
    #[arg(
        long,
        conflicts_with = "in_",
        env = "POSTPONE_DEFER_AT",
        value_name = "DATETIME"
    )]
    pub at: Option<String>,
    /// Not before this delay from now: seconds, or 90s, 5m, 2h, 1d, 1h30m.
    #[arg(
        long = "in",
        id = "in_",
        env = "POSTPONE_DEFER_IN",
        value_name = "DELAY"
    )]
    pub in_: Option<String>,
    /// Priority: higher runs first (default: the task's, else 0).
    #[arg(
        short,
        long,
        env = "POSTPONE_DEFER_PRIORITY",
        allow_negative_numbers = true
    )]
    pub priority: Option<i32>,
    /// Abort and fail the job (error kind Timeout, then retried by its task's strategy)
    /// once it has run this long: 90s, 5m, 2h (default: the task's, else the worker's).
    #[arg(long, env = "POSTPONE_DEFER_TIMEOUT", value_name = "DELAY")]
    pub timeout: Option<String>,
    /// Defer even if this binary has no task of that name (its args are not checked).
    #[arg(long, env = "POSTPONE_DEFER_UNKNOWN", value_parser = FalseyValueParser::new())]
    pub unknown: bool,
}

/// `postpone jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs (by id), with filters.
    List(JobsListFlags),
    /// One job: its fields and arguments, why each attempt that did not succeed ended, and
    /// its rescues.
    Show(JobsShowFlags),
    /// What a job's task returned (its stored result), as pretty JSON; exits 1 when the
    /// job does not exist, has not ended, ended without success, or stored no result.
    Result(JobsShowFlags),
    /// Running jobs whose worker stopped sending heartbeats.
    Stalled(JobsStalledFlags),
    /// Delete jobs that finished more than --hours ago (succeeded, plus what --include-* says).
    DeleteOld(JobsDeleteOldFlags),
}

/// `postpone workflows ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// The newest workflows, with their nodes counted per status.
    List(WorkflowsListFlags),
    /// One workflow: each node with its status, job and parents.
    Show(WorkflowsShowFlags),
}

/// `postpone workflows list`
#[derive(Debug, Args)]
pub struct WorkflowsListFlags {
    /// At most this many workflows, newest first.
    #[arg(long, default_value_t = 50, env = "POSTPONE_WORKFLOWS_LIST_LIMIT")]
    pub limit: i64,
}

/// `postpone workflows show ID`
#[derive(Debug, Args)]
pub struct WorkflowsShowFlags {
    /// The workflow's id.
    pub id: i64,
}

/// `postpone jobs show ID`, `postpone jobs result ID`
#[derive(Debug, Args)]
pub struct JobsShowFlags {
    /// The job's id.
    pub id: i64,
}

/// `postpone jobs list`
#[derive(Debug, Args)]
pub struct JobsListFlags {
    /// Only this job.
    #[arg(long, env = "POSTPONE_JOBS_LIST_ID")]
    pub id: Option<i64>,
    /// Only jobs of this queue.
    #[arg(long, env = "POSTPONE_JOBS_LIST_QUEUE")]
    pub queue: Option<String>,
    /// Only jobs of this task.
    #[arg(long, env = "POSTPONE_JOBS_LIST_TASK")]
    pub task: Option<String>,
    /// Only jobs in this status (todo, doing, succeeded, failed, cancelled, aborting, aborted).
    #[arg(long, env = "POSTPONE_JOBS_LIST_STATUS")]
    pub status: Option<String>,
    /// Only jobs with this lock.
    #[arg(long, env = "POSTPONE_JOBS_LIST_LOCK")]
    pub lock: Option<String>,
    /// Only jobs with this queueing lock.
    #[arg(long, env = "POSTPONE_JOBS_LIST_QUEUEING_LOCK")]
    pub queueing_lock: Option<String>,
    /// Only jobs run by this worker id.
    #[arg(long, env = "POSTPONE_JOBS_LIST_WORKER")]
    pub worker: Option<i64>,
    /// At most this many jobs.
    #[arg(long, env = "POSTPONE_JOBS_LIST_LIMIT")]
    pub limit: Option<i64>,
    /// Also show args, attempts, worker and abort request.
    #[arg(long, env = "POSTPONE_JOBS_LIST_DETAILS", value_parser = FalseyValueParser::new())]
    pub details: bool,
}

/// `postpone jobs stalled`
#[derive(Debug, Args)]
pub struct JobsStalledFlags {
    /// A worker silent for this many seconds is stalled.
    #[arg(long, default_value_t = postpone::manager::STALLED_WORKER_TIMEOUT_DEFAULT, env = "POSTPONE_JOBS_STALLED_SECONDS_SINCE_HEARTBEAT")]
    pub seconds_since_heartbeat: f64,
    /// Only jobs of this queue.
    #[arg(long, env = "POSTPONE_JOBS_STALLED_QUEUE")]
    pub queue: Option<String>,
    /// Only jobs of this task.
    #[arg(long, env = "POSTPONE_JOBS_STALLED_TASK")]
    pub task: Option<String>,
}

/// `postpone jobs delete-old`
#[derive(Debug, Args)]
pub struct JobsDeleteOldFlags {
    /// Jobs whose last event is older than this many hours.
    #[arg(long, env = "POSTPONE_JOBS_DELETE_OLD_HOURS")]
    pub hours: u32,
    /// Only jobs of this queue.
    #[arg(long, env = "POSTPONE_JOBS_DELETE_OLD_QUEUE")]
    pub queue: Option<String>,
    /// Also delete failed jobs.
    #[arg(long, env = "POSTPONE_JOBS_DELETE_OLD_INCLUDE_FAILED", value_parser = FalseyValueParser::new())]
    pub include_failed: bool,
    /// Also delete cancelled jobs.
    #[arg(long, env = "POSTPONE_JOBS_DELETE_OLD_INCLUDE_CANCELLED", value_parser = FalseyValueParser::new())]
    pub include_cancelled: bool,
    /// Also delete aborted jobs.
    #[arg(long, env = "POSTPONE_JOBS_DELETE_OLD_INCLUDE_ABORTED", value_parser = FalseyValueParser::new())]
    pub include_aborted: bool,
}

/// Filters of `postpone queues`, `tasks` and `locks`. Their environment variables are
/// `POSTPONE_COUNT_*`, shared by the three commands.
#[derive(Debug, Args)]
pub struct CountFlags {
    /// Only jobs of this queue.
    #[arg(long, env = "POSTPONE_COUNT_QUEUE")]
    pub queue: Option<String>,
    /// Only jobs of this task.
    #[arg(long, env = "POSTPONE_COUNT_TASK")]
    pub task: Option<String>,
    /// Only jobs in this status.
    #[arg(long, env = "POSTPONE_COUNT_STATUS")]
    pub status: Option<String>,
    /// Only jobs with this lock.
    #[arg(long, env = "POSTPONE_COUNT_LOCK")]
    pub lock: Option<String>,
}

/// `postpone dashboard`
#[derive(Debug, Args)]
pub struct DashboardFlags {
    /// Address to listen on, IP and port. Beyond loopback (127.0.0.1, ::1) a token is
    /// required (POSTPONE_DASHBOARD_TOKEN).
    #[arg(
        long,
        env = "POSTPONE_DASHBOARD_BIND",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub bind: String,
    /// No actions: pages only; every action is refused (403).
    #[arg(long, env = "POSTPONE_DASHBOARD_READ_ONLY", value_parser = FalseyValueParser::new())]
    pub read_only: bool,
    /// The token visitors must give (bearer header or the login form). Prefer the
    /// environment variable: a command line is visible to other users of the machine.
    #[arg(
        long,
        env = "POSTPONE_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// `postpone queues [pause|resume NAME]`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueuesFlags {
    /// Pause or resume a queue (without one: list the queues).
    #[command(subcommand)]
    pub action: Option<QueuesCommand>,
    /// Filters of the list.
    #[command(flatten)]
    pub counts: CountFlags,
}

/// `postpone queues pause|resume NAME`
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Pause a queue: Postpone workers take none of its jobs until it is resumed (running
    /// jobs finish, deferring goes on). Python workers do not know about pauses.
    Pause(QueueNameFlags),
    /// Resume a paused queue: workers take its jobs again at once.
    Resume(QueueNameFlags),
}

/// The queue of `postpone queues pause|resume`.
#[derive(Debug, Args)]
pub struct QueueNameFlags {
    /// The queue's name.
    pub name: String,
}

/// `postpone retry`
#[derive(Debug, Args)]
pub struct RetryFlags {
    /// The job's id (failed, or doing with a dead worker).
    pub id: i64,
    /// Run it at this time (ISO 8601 with a time zone) instead of now.
    #[arg(
        long,
        conflicts_with = "in_",
        env = "POSTPONE_RETRY_AT",
        value_name = "DATETIME"
    )]
    pub at: Option<String>,
    /// Run it after this delay (seconds, or 90s, 5m, 2h, 1d) instead of now.
    #[arg(
        long = "in",
        id = "in_",
        env = "POSTPONE_RETRY_IN",
        value_name = "DELAY"
    )]
    pub in_: Option<String>,
    /// New priority.
    #[arg(
        short,
        long,
        env = "POSTPONE_RETRY_PRIORITY",
        allow_negative_numbers = true
    )]
    pub priority: Option<i32>,
    /// New queue.
    #[arg(short, long, env = "POSTPONE_RETRY_QUEUE")]
    pub queue: Option<String>,
    /// New lock.
    #[arg(long, env = "POSTPONE_RETRY_LOCK")]
    pub lock: Option<String>,
}

/// `postpone cancel`
#[derive(Debug, Args)]
pub struct CancelFlags {
    /// The job's id.
    pub id: i64,
    /// Delete the job instead of marking it cancelled.
    #[arg(long, env = "POSTPONE_CANCEL_DELETE", value_parser = FalseyValueParser::new())]
    pub delete: bool,
}

/// `postpone abort`
#[derive(Debug, Args)]
pub struct AbortFlags {
    /// The job's id.
    pub id: i64,
}

/// `postpone shell [COMMAND ...]`: without a command, an interactive session (or, when stdin
/// is not a terminal, one command per line of stdin); with one, runs it and exits.
#[derive(Debug, Args)]
pub struct ShellFlags {
    /// A shell command and its arguments, e.g. `list_jobs queue=default status=failed`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}
