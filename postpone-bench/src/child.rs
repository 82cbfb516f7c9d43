//! Worker processes: `postpone bench-worker` (the child) and the handle `bench` drives it
//! with (the parent).
//!
//! The protocol is lines on the child's stdin and stdout, so that no signal is needed:
//! the child connects and prints `ready`; on `start` it starts its worker and prints
//! `completed N` whenever the count of written outcomes changed (checked every
//! `--report-ms`); on `stop` or the end of stdin it stops gracefully, prints `stopped N`
//! and exits. The parent reads `/proc/<pid>` before sending `stop`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use postpone::App;
use postpone::connect::ConnectConfig;
use postpone::worker::WorkerConfig;
use std::io::Write as _;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::flags::BenchWorkerFlags;
use crate::{BenchNoop, BenchResult};

/// `postpone bench-worker`, a worker process of `postpone bench` driven over stdin and
/// stdout (see the module docs); the bench sets `DATABASE_URL` for it, and `--poll-only`
/// when it goes through PgBouncer.
///
/// # Errors
/// No database URL, a database error, or stdout closed.
pub async fn worker(
    flags: BenchWorkerFlags,
    database_url: Option<&str>,
    poll_only: bool,
) -> anyhow::Result<()> {
    let url = database_url
        .filter(|u| !u.is_empty())
        .context("bench-worker needs --database-url or DATABASE_URL")?;
    let mut builder = App::builder()
        .task::<BenchNoop>()
        .task::<BenchResult>()
        .connect(ConnectConfig::parse(url)?.with_poll_only(poll_only));
    if flags.telemetry {
        builder = builder.subscribe(std::sync::Arc::new(postpone_metrics::Metrics::new()));
    }
    let app = builder.build()?;
    // One connection opened before the clock starts.
    app.check_schema().await?;
    say("ready")?;

    // Lines of stdin, read by a thread of their own (tokio's stdin is not enabled here);
    // `None` at the end of stdin.
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = lines_tx.send(None);
    });
    let command = |line: Option<Option<String>>| match line.flatten() {
        Some(line) => line.trim().to_owned(),
        None => "stop".to_owned(),
    };
    loop {
        match command(lines.recv().await).as_str() {
            "start" => break,
            "stop" => return Ok(()),
            _ => {}
        }
    }
    let config = WorkerConfig {
        name: Some(format!("bench-{}", std::process::id())),
        concurrency: flags.concurrency,
        asynchronous_commit: flags.asynchronous_commit,
        prefetch: flags.prefetch,
        ..WorkerConfig::default()
    };
    let handle = app.start_worker(config).await?;
    let stats = handle.stats();
    let report = Duration::from_millis(flags.report_ms);
    let mut reported = 0;
    loop {
        let line = if report.is_zero() {
            lines.recv().await
        } else {
            tokio::select! {
                line = lines.recv() => line,
                () = tokio::time::sleep(report) => {
                    let completed = stats.completed();
                    if completed != reported {
                        reported = completed;
                        say(&format!("completed {completed}"))?;
                    }
                    continue;
                }
            }
        };
        if command(line) == "stop" {
            break;
        }
    }
    handle.stop();
    handle.join().await?;
    say(&format!("stopped {}", stats.completed()))?;
    Ok(())
}

/// One line to the parent, flushed at once.
fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// A `bench-worker` child process, ready (connected) and not started yet.
pub(crate) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    pid: u32,
}

/// What the children say: (child index, outcomes written so far).
pub(crate) type Progress = mpsc::UnboundedReceiver<(usize, u64)>;

impl WorkerProcess {
    /// Spawns `count` children of this very binary and waits until each is connected.
    pub(crate) async fn spawn_all(
        count: usize,
        url: &str,
        concurrency: usize,
        report_ms: u64,
        poll_only: bool,
        otlp_endpoint: Option<&str>,
    ) -> anyhow::Result<(Vec<WorkerProcess>, Progress)> {
        let exe = std::env::current_exe().context("cannot find this binary to spawn workers")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ready = Vec::new();
        let mut processes = Vec::new();
        for index in 0..count {
            let mut command = Command::new(&exe);
            if poll_only {
                command.arg("--poll-only");
            }
            command
                .arg("bench-worker")
                .arg("--concurrency")
                .arg(concurrency.to_string())
                .arg("--report-ms")
                .arg(report_ms.to_string());
            // Telemetry on (W3T): metrics counted, spans exported; else none at all, even
            // with OTEL_* variables in the bench's environment.
            match otlp_endpoint {
                Some(endpoint) => command
                    .arg("--telemetry")
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                    .env("OTEL_SERVICE_NAME", "postpone-bench-worker"),
                None => command
                    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            };
            let mut child = command
                // The URL may hold a password: not on the command line.
                .env("DATABASE_URL", url)
                .env_remove("POSTPONE_JSON")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?;
            let pid = child.id().context("the worker process exited at once")?;
            let stdin = child.stdin.take().context("no stdin for the worker")?;
            let stdout = child.stdout.take().context("no stdout for the worker")?;
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut ready_tx = Some(ready_tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = line.trim();
                    if line == "ready" {
                        if let Some(ready) = ready_tx.take() {
                            let _ = ready.send(());
                        }
                    } else if let Some(n) = line
                        .strip_prefix("completed ")
                        .or_else(|| line.strip_prefix("stopped "))
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        let _ = tx.send((index, n));
                    }
                }
            });
            ready.push(ready_rx);
            processes.push(WorkerProcess { child, stdin, pid });
        }
        for (index, ready) in ready.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(60), ready).await {
                Ok(Ok(())) => {}
                _ => bail!("worker process {index} did not get ready (see its error above)"),
            }
        }
        Ok((processes, rx))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells it to start its worker.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        self.send("start").await
    }

    /// Stops it gracefully and waits for it to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.send("stop").await;
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("a worker process did not stop within 60 s")??;
        if !status.success() {
            bail!("a worker process exited with {status}");
        }
        Ok(())
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }
}
