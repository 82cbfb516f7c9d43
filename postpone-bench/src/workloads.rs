//! The workloads of `postpone bench`, one function each: what they defer, how they run the
//! workers, what they time. `lib.rs` chooses, repeats and reports them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use postpone::App;
use postpone::connect::ConnectConfig;
use postpone::worker::WorkerConfig;
use tokio::sync::mpsc;

use crate::child::{Progress, WorkerProcess};
use crate::otlp_sink::OtlpSink;
use crate::{
    BenchLatency, BenchNoop, BenchResult, FILL_BATCH, Figure, LatencySink, Params, STALL, procfs,
    sql,
};

pub(crate) fn app(connect: &ConnectConfig, pool_size: Option<usize>) -> anyhow::Result<App> {
    let mut builder = App::builder()
        .task::<BenchNoop>()
        .task::<BenchResult>()
        .task::<BenchLatency>()
        .connect(connect.clone());
    if let Some(size) = pool_size {
        builder = builder.pool_size(size);
    }
    Ok(builder.build()?)
}

pub(crate) fn rate(jobs: usize, elapsed: Duration) -> f64 {
    jobs as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// W1: `app.defer`, one job per (implicit) transaction, sequentially, on one connection.
pub(crate) async fn w1(connect: &ConnectConfig, jobs: usize) -> anyhow::Result<Vec<Figure>> {
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
    client.batch_execute(sql::BASELINE_TABLE).await?;
    let insert = client.prepare(sql::BASELINE_INSERT).await?;
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
pub(crate) async fn w2(
    connect: &ConnectConfig,
    jobs: usize,
    batch: usize,
) -> anyhow::Result<Vec<Figure>> {
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
        .query_one(sql::COUNT_DEFERRED_EVENTS, &[])
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

pub(crate) struct DrainCase<'a> {
    pub(crate) processes: usize,
    pub(crate) concurrency: usize,
    pub(crate) jobs: usize,
    pub(crate) prefill: usize,
    pub(crate) name: &'a str,
    pub(crate) memory: bool,
    pub(crate) analyze: bool,
    /// Metrics counted and spans exported to a stand-in OTLP receiver (W3T).
    pub(crate) telemetry: bool,
    /// Every job's task returns a small struct, stored with its outcome (R1).
    pub(crate) results: bool,
}

/// Inserts `count` succeeded jobs with their deferred/started/succeeded events, set-wise
/// (no trigger fires: they are not `todo`), then vacuums and analyses both tables.
pub(crate) async fn prefill(client: &tokio_postgres::Client, count: usize) -> anyhow::Result<()> {
    let count = i64::try_from(count).context("the prefill count does not fit a bigint")?;
    client
        .execute(sql::PREFILL_JOBS, &[&count])
        .await
        .context("cannot prefill the jobs table")?;
    client
        .execute(sql::PREFILL_EVENTS, &[])
        .await
        .context("cannot prefill the events table")?;
    // One statement per call: VACUUM cannot run in the implicit transaction of two.
    client.batch_execute(sql::VACUUM_JOBS).await?;
    client.batch_execute(sql::VACUUM_EVENTS).await?;
    Ok(())
}

/// Defers `jobs` no-op jobs in batches (untimed set-up).
pub(crate) async fn fill(app: &App, jobs: usize) -> anyhow::Result<()> {
    fill_with(app, jobs, false).await
}

/// Defers `jobs` jobs in batches (untimed set-up): no-op ones, or with `results` ones
/// whose task returns a small struct.
async fn fill_with(app: &App, jobs: usize, results: bool) -> anyhow::Result<()> {
    let mut deferred = 0;
    while deferred < jobs {
        let end = jobs.min(deferred + FILL_BATCH);
        let batch = (deferred..end).map(|i| {
            let i = i as u64;
            if results {
                app.configure(BenchResult { i })
            } else {
                app.configure(BenchNoop { i })
            }
        });
        deferred += app.batch_defer(batch).await?.len();
    }
    Ok(())
}

/// CPU time of the PostgreSQL backends serving this database (other than `client`'s),
/// by pid; `None` when the server's processes cannot be read (not on this machine).
pub(crate) async fn backend_cpu(client: &tokio_postgres::Client) -> Option<HashMap<u32, Duration>> {
    let rows = client.query(sql::BACKEND_PIDS, &[]).await.ok()?;
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
pub(crate) fn backend_delta(
    before: &HashMap<u32, Duration>,
    after: &HashMap<u32, Duration>,
) -> Duration {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

/// W3, W3L and MEM: a backlog drained by worker processes.
pub(crate) async fn drain(
    connect: &ConnectConfig,
    url: &str,
    case: DrainCase<'_>,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    if case.prefill > 0 {
        prefill(&client, case.prefill).await?;
    }
    let app = app(connect, None)?;
    fill_with(&app, case.jobs, case.results).await?;
    drop(app);
    if case.analyze {
        client.batch_execute(sql::ANALYZE_JOBS).await?;
    }

    let sink = match case.telemetry {
        true => Some(OtlpSink::start().await?),
        false => None,
    };
    let (mut workers, mut progress) = WorkerProcess::spawn_all(
        case.processes,
        url,
        case.concurrency,
        2,
        false,
        sink.as_ref().map(OtlpSink::endpoint),
    )
    .await?;
    let cpu_before: Vec<Duration> = workers
        .iter()
        .map(|w| procfs::cpu_time(w.pid()).unwrap_or_default())
        .collect();
    let server_before = backend_cpu(&client).await;

    let started = Instant::now();
    for worker in &mut workers {
        worker.start().await?;
    }
    drained(&mut progress, case.processes, case.jobs).await?;
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

    let row = client.query_one(sql::DRAIN_OUTCOMES, &[]).await?;
    let (succeeded, other): (i64, i64) = (row.get(0), row.get(1));
    let expected = (case.jobs + case.prefill) as i64;
    if succeeded != expected || other != 0 {
        bail!(
            "{}: {succeeded} jobs succeeded and {other} did not, expected {expected} succeeded",
            case.name
        );
    }
    if case.results {
        let stored: i64 = client.query_one(sql::COUNT_RESULTS, &[]).await?.get(0);
        if stored != case.jobs as i64 {
            bail!(
                "{}: {stored} results stored, expected {}",
                case.name,
                case.jobs
            );
        }
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
    // The workers flushed their spans as they stopped.
    if let Some(sink) = sink {
        figures.push(Figure::new(
            format!("{name}_otlp_bytes_per_job"),
            sink.bytes() as f64 / case.jobs as f64,
            "B/job",
        ));
    }
    Ok(figures)
}

/// Waits until the `processes` worker processes report `jobs` outcomes written in all.
pub(crate) async fn drained(
    progress: &mut Progress,
    processes: usize,
    jobs: usize,
) -> anyhow::Result<()> {
    let target = jobs as u64;
    let mut completed = vec![0u64; processes];
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
    Ok(())
}

/// IDLE: CPU a started worker process uses with no job at all.
pub(crate) async fn idle(
    connect: &ConnectConfig,
    url: &str,
    seconds: f64,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    let (worker, server) = idle_cpu(&client, url, 1, 10, false, seconds).await?;
    let mut figures = Vec::new();
    if let Some(worker) = worker {
        figures.push(Figure::new(
            "idle_worker_cpu",
            worker.as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    if let Some(server) = server {
        figures.push(Figure::new(
            "idle_worker_server_cpu",
            server.as_secs_f64() * 1000.0,
            "ms",
        ));
    }
    if figures.is_empty() {
        bail!("cannot read /proc: the idle CPU figures need Linux");
    }
    Ok(figures)
}

/// `processes` worker processes with nothing to do, reporting nothing: the CPU they used
/// over `seconds` once settled, and the CPU of the server's backends over the same time
/// (`None` when `/proc` cannot tell).
async fn idle_cpu(
    client: &tokio_postgres::Client,
    url: &str,
    processes: usize,
    concurrency: usize,
    poll_only: bool,
    seconds: f64,
) -> anyhow::Result<(Option<Duration>, Option<Duration>)> {
    let (mut workers, _progress) =
        WorkerProcess::spawn_all(processes, url, concurrency, 0, poll_only, None).await?;
    for worker in &mut workers {
        worker.start().await?;
    }
    let cpu = || -> Option<Duration> {
        workers
            .iter()
            .map(|w| procfs::cpu_time(w.pid()))
            .sum::<Option<Duration>>()
    };
    // Let them register, fetch once, find nothing and settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu();
    let server_before = backend_cpu(client).await;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = cpu();
    let server_after = backend_cpu(client).await;
    for worker in workers {
        worker.stop().await?;
    }
    let worker = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    let server = server_before
        .zip(server_after)
        .map(|(b, a)| backend_delta(&b, &a));
    Ok((worker, server))
}

/// W4: an idle listening worker in this process; jobs deferred one at a time.
pub(crate) async fn w4(connect: &ConnectConfig, params: &Params) -> anyhow::Result<Vec<Figure>> {
    let app = app(connect, None)?;
    app.check_schema().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = WorkerConfig {
        name: Some("bench-latency".to_owned()),
        concurrency: params.w4_concurrency,
        additional_context: Some(Arc::new(LatencySink(tx))),
        asynchronous_commit: crate::ceilings::workers_commit_asynchronously(),
        ..WorkerConfig::default()
    };
    let handle = app.start_worker(config).await?;
    // Let the worker fetch once, find nothing and wait on its notifications.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let interval = Duration::from_millis(params.w4_interval_ms);
    let total = params.w4_warmup + params.w4_jobs;
    let mut from_call = Vec::with_capacity(params.w4_jobs);
    let mut from_commit = Vec::with_capacity(params.w4_jobs);
    let outcome = paced(total, interval, async |seq| {
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
        Ok(())
    })
    .await;
    handle.stop();
    handle.join().await?;
    outcome?;
    let mut figures = Vec::new();
    latency_figures(&mut figures, "W4_defer_to_start", &from_call);
    latency_figures(&mut figures, "W4_pickup", &from_commit);
    Ok(figures)
}

/// Runs `step` `rounds` times, round `i` starting `i x interval` after the first.
pub(crate) async fn paced(
    rounds: usize,
    interval: Duration,
    mut step: impl AsyncFnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let origin = tokio::time::Instant::now();
    for round in 0..rounds {
        tokio::time::sleep_until(origin + interval * u32::try_from(round)?).await;
        step(round).await?;
    }
    Ok(())
}

/// `<name>_p50` and `<name>_p99` of latencies in ms.
pub(crate) fn latency_figures(figures: &mut Vec<Figure>, name: &str, values: &[f64]) {
    figures.push(Figure::new(
        format!("{name}_p50"),
        percentile(values, 50.0),
        "ms",
    ));
    figures.push(Figure::new(
        format!("{name}_p99"),
        percentile(values, 99.0),
        "ms",
    ));
}

/// `later - earlier` in milliseconds, negative when `later` came first.
pub(crate) fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

/// Nearest-rank percentile.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// FLEET's sizes, and the PgBouncer its workers go through (`None`: straight to the
/// server).
pub(crate) struct Fleet {
    pub(crate) processes: usize,
    pub(crate) concurrency: usize,
    pub(crate) jobs: usize,
    pub(crate) idle_seconds: f64,
    pub(crate) through: Option<&'static postpone_testkit::PgBouncer>,
}

/// FLEET: a backlog drained by many worker processes, then the same processes idle: jobs/s,
/// the server sessions the fleet held at most (per process), CPU per job (workers,
/// server, PgBouncer), WAL bytes per job (with the server's CPU, what bounds a primary), and
/// the idle CPU per process of the same fleet started again with nothing to do.
pub(crate) async fn fleet(
    connect: &ConnectConfig,
    url: &str,
    case: Fleet,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    let app = app(connect, None)?;
    fill(&app, case.jobs).await?;
    drop(app);
    let dbname = connect
        .config()
        .get_dbname()
        .context("the bench database has a name")?
        .to_owned();
    let worker_url = match case.through {
        Some(bouncer) => bouncer.url(&dbname),
        None => url.to_owned(),
    };
    let name = format!(
        "FLEET_{}x{}{}",
        case.processes,
        case.concurrency,
        if case.through.is_some() {
            "_pgbouncer"
        } else {
            ""
        }
    );
    let (mut workers, mut progress) = WorkerProcess::spawn_all(
        case.processes,
        &worker_url,
        case.concurrency,
        2,
        case.through.is_some(),
        None,
    )
    .await?;
    let pids: Vec<u32> = workers.iter().map(WorkerProcess::pid).collect();
    let cpu = |pids: &[u32]| -> Duration {
        pids.iter()
            .map(|&pid| procfs::cpu_time(pid).unwrap_or_default())
            .sum()
    };
    let bouncer_pid: Vec<u32> = case.through.iter().map(|b| b.pid()).collect();
    let (cpu_before, bouncer_before) = (cpu(&pids), cpu(&bouncer_pid));
    let server_before = backend_cpu(&client).await;
    let read = |sql: &'static str| {
        let client = &client;
        async move { anyhow::Ok(client.query_one(sql, &[]).await?.get::<_, f64>(0)) }
    };
    let wal_before = read(sql::WAL_POSITION).await?;

    // The server sessions of the fleet, at most, sampled while it drains.
    let most_sessions = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let most = most_sessions.clone();
        let sampler_client = connect.connect().await?;
        tokio::spawn(async move {
            loop {
                if let Ok(rows) = sampler_client.query(sql::BACKEND_PIDS, &[]).await {
                    // Less the bench's own other session (`client`).
                    most.fetch_max(rows.len().saturating_sub(1), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    for worker in &mut workers {
        worker.start().await?;
    }
    drained(&mut progress, case.processes, case.jobs).await?;
    let elapsed = started.elapsed();
    let (cpu_after, bouncer_after) = (cpu(&pids), cpu(&bouncer_pid));
    let server_after = backend_cpu(&client).await;
    sampler.abort();
    let sessions = most_sessions.load(Ordering::Relaxed);
    let wal = read(sql::WAL_POSITION).await? - wal_before;

    for worker in workers {
        worker.stop().await?;
    }
    // Idle: the same fleet again, every job done, reporting nothing (the drain's progress
    // reports would be most of what it does).
    let (idle_cpu, idle_server) = idle_cpu(
        &client,
        &worker_url,
        case.processes,
        case.concurrency,
        case.through.is_some(),
        case.idle_seconds,
    )
    .await?;
    let row = client.query_one(sql::DRAIN_OUTCOMES, &[]).await?;
    let (succeeded, other): (i64, i64) = (row.get(0), row.get(1));
    if succeeded != case.jobs as i64 || other != 0 {
        bail!(
            "{name}: {succeeded} jobs succeeded and {other} did not, expected {} succeeded",
            case.jobs
        );
    }

    let per_job_us = |d: Duration| d.as_secs_f64() * 1e6 / case.jobs as f64;
    let per_process = |v: f64| v / case.processes as f64;
    let per_second_ms = |d: Duration| d.as_secs_f64() * 1000.0 / case.idle_seconds;
    let mut figures = vec![
        Figure::new(name.clone(), rate(case.jobs, elapsed), "jobs/s"),
        Figure::new(
            format!("{name}_sessions_per_process"),
            per_process(sessions as f64),
            "sessions",
        ),
        Figure::new(
            format!("{name}_worker_cpu_per_job"),
            per_job_us(cpu_after.saturating_sub(cpu_before)),
            "us/job",
        ),
        Figure::new(
            format!("{name}_idle_cpu_per_process"),
            per_process(per_second_ms(idle_cpu.unwrap_or_default())),
            "ms/s",
        ),
    ];
    figures.push(Figure::new(
        format!("{name}_wal_per_job"),
        wal / case.jobs as f64,
        "bytes/job",
    ));
    if case.through.is_some() {
        figures.push(Figure::new(
            format!("{name}_bouncer_cpu_per_job"),
            per_job_us(bouncer_after.saturating_sub(bouncer_before)),
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
    if let Some(idle_server) = idle_server {
        figures.push(Figure::new(
            format!("{name}_idle_server_cpu"),
            per_second_ms(idle_server),
            "ms/s",
        ));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{median, percentile, signed_ms};

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
