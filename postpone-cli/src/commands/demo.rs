//! `postpone demo`: the quickstart's main job. It finds PostgreSQL by itself (`--database-url`
//! / `DATABASE_URL`, else the local server, else a throwaway cluster from the PostgreSQL
//! binaries on the machine), makes a fresh database, applies the schema, defers jobs in
//! batches, works them off with one worker while a progress line runs, prints the
//! throughput it measured, checks every job succeeded, and drops the database.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use postpone::connect::ConnectConfig;
use postpone::task::{JobContext, TaskError};
use postpone::worker::WorkerConfig;
use postpone::{JobFilter, JobStatus, Task};
use serde::{Deserialize, Serialize};

use crate::Context;
use crate::flags::DemoFlags;

/// Jobs per `batch_defer` call.
const DEFER_BATCH: usize = 1000;

/// The demo's task: a little arithmetic, no I/O, so the queue is what is measured.
#[derive(Debug, Serialize, Deserialize)]
struct DemoJob {
    n: u64,
}

impl Task for DemoJob {
    fn name() -> std::borrow::Cow<'static, str> {
        "postpone.demo".into()
    }

    async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
        let digits = (0..32).fold(self.n, |acc, i| acc.rotate_left(5) ^ i);
        std::hint::black_box(digits);
        Ok(())
    }
}

pub(crate) async fn run(flags: DemoFlags, context: Context) -> anyhow::Result<ExitCode> {
    if flags.jobs == 0 {
        bail!("--jobs is 0: give at least 1 job to defer");
    }
    let server = postpone_testkit::server_at(context.database_url.as_deref()).await?;
    println!("PostgreSQL: {}", server.describe());
    let dbname = format!("postpone_demo_{}", std::process::id());
    server.create_database(&dbname, None).await?;
    let outcome = demo(&flags, context, &server.url(&dbname)).await;
    if flags.keep {
        println!("Kept database {dbname} ({})", server.url(&dbname));
    } else if let Err(error) = server.drop_database(&dbname).await {
        eprintln!("postpone: warning: could not drop the demo database {dbname}: {error}");
    }
    outcome
}

async fn demo(flags: &DemoFlags, context: Context, url: &str) -> anyhow::Result<ExitCode> {
    let connect = ConnectConfig::parse(url)?;
    let mut client = connect.connect().await?;
    postpone::schema::apply(&mut client, postpone::schema::ApplyScope::All).await?;
    let app = context.builder.task::<DemoJob>().connect(connect).build()?;

    let started = Instant::now();
    let mut deferred = 0;
    while deferred < flags.jobs {
        let batch = (deferred..flags.jobs.min(deferred + DEFER_BATCH))
            .map(|n| app.configure(DemoJob { n: n as u64 }));
        deferred += app.batch_defer(batch).await?.len();
    }
    let defer_time = started.elapsed();
    println!(
        "Deferred {} jobs in {:.2} s ({} jobs/s, batches of {DEFER_BATCH})",
        flags.jobs,
        defer_time.as_secs_f64(),
        per_second(flags.jobs, defer_time)
    );

    let config = WorkerConfig {
        name: Some("demo".to_owned()),
        concurrency: flags.concurrency,
        ..WorkerConfig::default()
    };
    let started = Instant::now();
    let handle = app.start_worker(config).await?;
    let stats = handle.stats();
    let mut progress = Progress::new(flags.jobs);
    let target = flags.jobs as u64;
    while stats.completed() < target {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => {
                handle.stop();
                handle.join().await?;
                bail!("interrupted after {} of {} jobs", stats.completed(), flags.jobs);
            }
        }
        progress.show(stats.completed(), started.elapsed());
    }
    let work_time = started.elapsed();
    handle.stop();
    handle.join().await?;
    progress.show(stats.completed(), work_time);
    progress.finish();

    let succeeded = app
        .job_manager()
        .list_queues(&JobFilter::default())
        .await?
        .iter()
        .map(|q| q.count(JobStatus::Succeeded))
        .sum::<i64>();
    if succeeded != flags.jobs as i64 {
        bail!(
            "only {succeeded} of {} jobs succeeded: see `postpone jobs list --status failed`",
            flags.jobs
        );
    }
    println!(
        "Worked off {} jobs in {:.2} s: {} jobs/s (1 worker, concurrency {})",
        flags.jobs,
        work_time.as_secs_f64(),
        per_second(flags.jobs, work_time),
        flags.concurrency
    );
    Ok(ExitCode::SUCCESS)
}

fn per_second(count: usize, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    // Thousands separated, so the figure reads at a glance.
    let whole = format!("{:.0}", rate);
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The progress line: redrawn in place on a terminal, one line a second otherwise.
struct Progress {
    total: usize,
    tty: bool,
    last_line: Option<Instant>,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            tty: std::io::stdout().is_terminal(),
            last_line: None,
        }
    }

    fn show(&mut self, done: u64, elapsed: Duration) {
        let line = format!(
            "Working: {done}/{} jobs, {:.1} s, {} jobs/s",
            self.total,
            elapsed.as_secs_f64(),
            per_second(usize::try_from(done).unwrap_or(usize::MAX), elapsed)
        );
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r{line}   ");
            let _ = out.flush();
        } else if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let _ = writeln!(out, "{line}");
            self.last_line = Some(Instant::now());
        }
    }

    fn finish(&self) {
        if self.tty {
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::per_second;
    use std::time::Duration;

    #[test]
    fn rates_are_grouped_by_thousands() {
        assert_eq!(per_second(12_345, Duration::from_secs(1)), "12,345");
        assert_eq!(per_second(999, Duration::from_secs(1)), "999");
        assert_eq!(
            per_second(1_000_000, Duration::from_millis(500)),
            "2,000,000"
        );
    }
}
