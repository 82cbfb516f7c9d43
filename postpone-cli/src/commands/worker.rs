//! `postpone worker` (Procrastinate's `procrastinate worker`): runs this binary's tasks.
//!
//! Flags are validated into a [`WorkerConfig`] (the library refuses bad values before
//! anything starts); the schema is checked; then the worker runs until SIGINT/SIGTERM
//! (first: graceful, second: abort running jobs) or, with `--one-shot`, until no job is left.

use std::process::ExitCode;
use std::sync::Arc;

use postpone::worker::{DeleteJobs, WorkerConfig};
use postpone_metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::flags::WorkerFlags;
use crate::values::{parse_delay, parse_timeout};

/// Turns the raw flags into a worker configuration.
pub(crate) fn config(flags: &WorkerFlags) -> anyhow::Result<WorkerConfig> {
    let config = WorkerConfig {
        name: flags.name.clone(),
        queues: (!flags.queues.is_empty()).then(|| flags.queues.clone()),
        concurrency: flags.concurrency,
        wait: !flags.one_shot,
        listen_notify: matches!(flags.listen_notify.as_str(), "on" | "true"),
        fetch_job_polling_interval: parse_delay(
            "--fetch-job-polling-interval",
            &flags.fetch_job_polling_interval,
        )?,
        abort_job_polling_interval: parse_delay(
            "--abort-job-polling-interval",
            &flags.abort_job_polling_interval,
        )?,
        shutdown_graceful_timeout: flags
            .shutdown_graceful_timeout
            .as_deref()
            .map(|t| parse_delay("--shutdown-graceful-timeout", t))
            .transpose()?,
        delete_jobs: flags.delete_jobs.parse::<DeleteJobs>()?,
        heartbeat_interval: parse_delay("--heartbeat-interval", &flags.heartbeat_interval)?,
        stalled_worker_timeout: parse_delay(
            "--stalled-worker-timeout",
            &flags.stalled_worker_timeout,
        )?,
        rescue: !flags.no_rescue,
        rescue_interval: parse_delay("--rescue-interval", &flags.rescue_interval)?,
        install_signal_handlers: true,
        asynchronous_commit: flags.asynchronous_commit,
        periodic: !flags.no_periodic,
        prefetch: flags.prefetch,
        task_timeout: flags
            .task_timeout
            .as_deref()
            .map(|t| parse_timeout("--task-timeout", t))
            .transpose()?,
        ..WorkerConfig::default()
    };
    config.validate()?;
    Ok(config)
}

pub(crate) async fn run(flags: WorkerFlags, context: Context) -> anyhow::Result<ExitCode> {
    let config = config(&flags)?;
    // Bound before anything starts: a taken port stops the worker with nothing changed.
    let metrics = match &flags.metrics_addr {
        Some(address) => Some((
            Arc::new(Metrics::new()),
            postpone_metrics::bind(address).await?,
        )),
        None => None,
    };
    let mut context = context;
    if let Some((metrics, _)) = &metrics {
        context = context.subscribe(metrics.clone());
    }
    let (app, _format) = context.app()?;
    app.check_schema().await?;
    if app
        .task_names()
        .iter()
        .all(|name| postpone::builtin::is_builtin(name))
    {
        tracing::warn!(
            "this binary registers no task: every job it takes will fail as unknown; embed the CLI in your own binary (postpone_cli::run) to run your tasks"
        );
    }
    for periodic in app.periodic_tasks() {
        if let Some(schedule) = periodic.schedule() {
            tracing::info!(task = %periodic.task_name(), periodic_id = %periodic.periodic_id(), cron = %schedule.cron(), timezone = %schedule.timezone(), deferred = config.periodic, "periodic task");
        }
    }
    let stop_metrics = CancellationToken::new();
    let server = metrics.map(|(metrics, listener)| {
        tokio::spawn(postpone_metrics::serve(
            listener,
            metrics,
            stop_metrics.clone(),
        ))
    });
    let ran = app.run_worker(config).await;
    stop_metrics.cancel();
    if let Some(server) = server {
        match server.await {
            Ok(Err(error)) => tracing::warn!(%error, "metrics server"),
            Err(error) => tracing::warn!(%error, "metrics server task"),
            Ok(Ok(())) => {}
        }
    }
    ran?;
    Ok(ExitCode::SUCCESS)
}
