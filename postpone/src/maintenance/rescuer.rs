//! The rescuer: gives the jobs of dead workers a second life, so a fleet heals itself
//! (ADR 11). Procrastinate leaves this to a person (`get_stalled_jobs`, then a retry by
//! hand); River and Oban rescue after an hour. With heartbeats it takes seconds.
//!
//! Every `rescue_interval` (and once as the worker starts, before it takes any job) one
//! pass, in one transaction that only one worker at a time holds
//! ([`Store::rescue_stalled_jobs`]): the `doing` jobs of workers, Rust or Python, silent for
//! longer than `stalled_worker_timeout` (or pruned) are rescued. A job its worker never
//! started (waiting in the local queue it claimed) goes back to `todo` with no attempt
//! counted, as a hand-back; a job that may have started is a failed attempt: retried by its
//! task's strategy (error kind `Stalled`), or `failed` when no attempt is left or its task
//! is unknown to this app. Each rescue is logged and recorded (`postpone_rescues`); the dead
//! workers' rows are removed. A job of a live worker is never touched.

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::app::App;
use crate::job::{Job, RetryDecision};
use crate::retry::STALLED_ERROR_KIND;
use crate::store::{RescueParams, RescueReport, Store};
use crate::task::TaskError;
use crate::telemetry::{Event, RescueAction};
use crate::worker::Emitter;

/// The rescuer service.
#[derive(Debug)]
pub(crate) struct Rescuer {
    store: Arc<dyn Store>,
    app: App,
    params: RescueParams,
    interval: Duration,
    emitter: Emitter,
}

impl Rescuer {
    /// Rescues the jobs of workers silent for longer than `stalled_worker_timeout`, every
    /// `interval`, with the retry strategies of `app`'s tasks.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        app: App,
        stalled_worker_timeout: Duration,
        interval: Duration,
        emitter: Emitter,
    ) -> Self {
        Self {
            store,
            app,
            params: RescueParams {
                seconds_since_heartbeat: stalled_worker_timeout.as_secs_f64(),
            },
            interval,
            emitter,
        }
    }

    /// What a job that may have started on a dead worker does now: its task's retry
    /// strategy, as after a failed attempt; `None` (failed) for a task unknown here.
    fn decide(&self, job: &Job) -> Option<RetryDecision> {
        let entry = self.app.task(&job.task_name)?;
        let error = TaskError::new(
            STALLED_ERROR_KIND,
            format!(
                "its worker stopped heartbeating for more than {:?} while the job ran",
                Duration::from_secs_f64(self.params.seconds_since_heartbeat)
            ),
        );
        entry.config.retry.decide(job, &error)
    }

    /// One pass; `None` when another worker's pass was running.
    pub(crate) async fn pass(&self) -> crate::Result<Option<RescueReport>> {
        let decide = |job: &Job| self.decide(job);
        self.store.rescue_stalled_jobs(&self.params, &decide).await
    }
}

/// One [`Event::Rescued`] per job the pass moved.
fn emit(emitter: &Emitter, report: &RescueReport) {
    if !emitter.is_enabled() {
        return;
    }
    let actions = [
        (&report.handed_back, RescueAction::HandedBack),
        (&report.retried, RescueAction::Retried),
        (&report.failed, RescueAction::Failed),
        (&report.aborted, RescueAction::Aborted),
    ];
    for (ids, action) in actions {
        for job in report.jobs.iter().filter(|job| ids.contains(&job.id)) {
            emitter.emit(|worker_id| Event::Rescued {
                worker_id,
                job,
                action,
            });
        }
    }
}

fn log(report: &RescueReport) {
    if report.is_empty() {
        return;
    }
    tracing::warn!(
        handed_back = ?report.handed_back,
        retried = ?report.retried,
        failed = ?report.failed,
        aborted = ?report.aborted,
        dead_workers = ?report.pruned_workers,
        "rescued the jobs of dead workers: never started back to todo, started ones retried or failed"
    );
    if !report.kept.is_empty() {
        tracing::info!(kept = ?report.kept, "jobs of dead workers left for a later rescue: a todo job holds their queueing lock");
    }
}

impl Service for Rescuer {
    const NAME: &'static str = "rescuer";

    fn start(&self) -> Start {
        Start::Inline
    }

    async fn run_once(&mut self) -> Next {
        match self.pass().await {
            Ok(Some(report)) => {
                log(&report);
                emit(&self.emitter, &report);
            }
            Ok(None) => tracing::debug!("another worker's rescue pass is running"),
            Err(error) => {
                self.emitter.database_error("rescue", &error);
                tracing::warn!(%error, "rescuing stalled jobs failed; trying again");
            }
        }
        Next::After(self.interval)
    }
}
