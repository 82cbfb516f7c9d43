//! The flow-control workloads (`docs/flow-control.md`, ADR 18):
//!
//! - FLOW: a backlog drained under a per-key concurrency limit (the jobs' queue limited to
//!   [`FLOW_LIMIT`] running jobs per value of their `key` field, over [`FLOW_KEYS`] keys) by
//!   worker processes whose own app has no limit (they honour the limits the bench's defer
//!   stored): jobs/s, to set beside W3's.
//! - RATE: the accuracy of a rate limit: a queue limited to `--rate-per-second` starts a
//!   second, a backlog larger than the measured window, drained by 1 and by 4 worker
//!   processes; from the 'started' events, the starts per second over `--rate-seconds`
//!   (from one second after the first start, so the first window's burst is left out), its
//!   deviation from the limit in percent, and the most starts in any one-second window.

use std::time::{Duration, Instant};

use anyhow::bail;
use postpone::App;
use postpone::connect::ConnectConfig;
use postpone::flow::FlowLimit;

use crate::child::WorkerProcess;
use crate::workloads::{drained, rate};
use crate::{BenchNoop, FILL_BATCH, Figure, sql};

/// FLOW's queue, and the most running jobs per key there.
const FLOW_QUEUE: &str = "flow";
/// FLOW: the most jobs running at once per key.
pub(crate) const FLOW_LIMIT: u32 = 2;
/// FLOW: the keys the jobs spread over (`key = i % FLOW_KEYS`).
pub(crate) const FLOW_KEYS: u64 = 100;
/// RATE's queue.
const RATE_QUEUE: &str = "rated";

/// Defers `jobs` no-op jobs into `queue` with a `key` field, through `app` (whose queue
/// limits the defer stores with them).
async fn fill_keyed(app: &App, queue: &str, jobs: usize) -> anyhow::Result<()> {
    let mut deferred = 0;
    while deferred < jobs {
        let end = jobs.min(deferred + FILL_BATCH);
        deferred += app
            .batch_defer((deferred..end).map(|i| {
                let mut key = serde_json::Map::new();
                key.insert("key".to_owned(), (i as u64 % FLOW_KEYS).into());
                app.configure(BenchNoop { i: i as u64 })
                    .with_queue(queue)
                    .with_task_kwargs(key)
            }))
            .await?
            .len();
    }
    Ok(())
}

/// FLOW: `jobs` jobs drained by `processes` worker processes of `concurrency` under the
/// per-key limit.
pub(crate) async fn flow_drain(
    connect: &ConnectConfig,
    url: &str,
    processes: usize,
    concurrency: usize,
    jobs: usize,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    let app = App::builder()
        .task::<BenchNoop>()
        .queue_flow_limit(
            FLOW_QUEUE,
            FlowLimit::concurrency(FLOW_LIMIT).per_key("key"),
        )
        .connect(connect.clone())
        .build()?;
    fill_keyed(&app, FLOW_QUEUE, jobs).await?;
    drop(app);
    let (mut workers, mut progress) =
        WorkerProcess::spawn_all(processes, url, concurrency, 2, false, None).await?;
    let started = Instant::now();
    for worker in &mut workers {
        worker.start().await?;
    }
    drained(&mut progress, processes, jobs).await?;
    let elapsed = started.elapsed();
    for worker in workers {
        worker.stop().await?;
    }
    check_all_succeeded(&client, jobs).await?;
    Ok(vec![Figure::new(
        format!("FLOW_drain_{processes}x{concurrency}_per_key_limit_{FLOW_LIMIT}"),
        rate(jobs, elapsed),
        "jobs/s",
    )])
}

/// RATE: a backlog under `per_second` starts a second, drained by `processes` worker
/// processes for about `seconds`; the accuracy figures.
pub(crate) async fn rate_accuracy(
    connect: &ConnectConfig,
    url: &str,
    processes: usize,
    per_second: u32,
    seconds: u64,
) -> anyhow::Result<Vec<Figure>> {
    let client = connect.connect().await?;
    let app = App::builder()
        .task::<BenchNoop>()
        .queue_flow_limit(
            RATE_QUEUE,
            FlowLimit::rate(per_second, Duration::from_secs(1)),
        )
        .connect(connect.clone())
        .build()?;
    // The measured window, the second left out before it and two more: never short.
    let jobs = usize::try_from(u64::from(per_second) * (seconds + 3))?;
    fill_keyed(&app, RATE_QUEUE, jobs).await?;
    drop(app);
    let (mut workers, mut progress) =
        WorkerProcess::spawn_all(processes, url, 10, 2, false, None).await?;
    for worker in &mut workers {
        worker.start().await?;
    }
    drained(&mut progress, processes, jobs).await?;
    for worker in workers {
        worker.stop().await?;
    }
    check_all_succeeded(&client, jobs).await?;
    let window = i64::try_from(seconds)?;
    let row = client.query_one(sql::RATE_STARTS, &[&window]).await?;
    let (starts, busiest): (i64, i64) = (row.get(0), row.get(1));
    let measured = starts as f64 / seconds as f64;
    let limit = f64::from(per_second);
    let name = format!("RATE_{processes}x10_limit_{per_second}_per_s_over_{seconds}s");
    Ok(vec![
        Figure::new(format!("{name}_starts"), measured, "jobs/s"),
        Figure::new(
            format!("{name}_deviation"),
            (measured - limit) / limit * 100.0,
            "%",
        ),
        Figure::new(format!("{name}_busiest_second"), busiest as f64, "jobs"),
    ])
}

/// Every job succeeded.
async fn check_all_succeeded(client: &tokio_postgres::Client, jobs: usize) -> anyhow::Result<()> {
    let row = client.query_one(sql::DRAIN_OUTCOMES, &[]).await?;
    let (succeeded, other): (i64, i64) = (row.get(0), row.get(1));
    if succeeded != jobs as i64 || other != 0 {
        bail!("{succeeded} jobs succeeded and {other} did not, expected {jobs} succeeded");
    }
    Ok(())
}
