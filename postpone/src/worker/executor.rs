//! The executor: runs one attempt of one job, and decides how it ends.
//!
//! Each job runs in its own tokio task, so a panic is caught as a failure (its message
//! recorded) and never kills the worker. An abort request cancels the task's future at
//! its next await point; the job ends `aborted`, or is retried when the abort came from
//! shutdown and the task's retry policy allows it (Procrastinate's rule). The outcome is
//! handed to the completer over a bounded channel, then the job's slot is released.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::completer::{Completion, Write};
use super::config::{DeleteJobs, WorkerConfig};
use super::emit::Emitter;
use super::state::WorkerState;
use crate::app::App;
use crate::context::{AbortReason, JobContext};
use crate::job::{Job, JobStatus};
use crate::middleware::{self, Middleware};
use crate::store::{AttemptError, AttemptResult};
use crate::task::TaskError;
use crate::telemetry::Event;

/// The error kind of an attempt that was aborted (by a person, or by a forced stop).
const ABORTED: &str = "JobAborted";

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// With the JSON of the result the task set, if it set one.
    Succeeded(Option<String>),
    Failed(TaskError),
    Aborted(AbortReason),
}

/// What the executor needs: the app, the worker's identity, and its stage handles.
#[derive(Clone)]
pub(crate) struct Executor {
    app: App,
    worker_name: Arc<str>,
    worker_queues: Option<Arc<[String]>>,
    additional_context: Option<Arc<dyn Any + Send + Sync>>,
    delete_jobs: DeleteJobs,
    middleware: Arc<[Arc<dyn Middleware>]>,
    /// The worker's timeout, for jobs whose defer call and task set none.
    task_timeout: Option<Duration>,
    state: WorkerState,
    emitter: Emitter,
    completions: mpsc::Sender<Completion>,
    /// The tasks of the jobs running (and of the aborted waiting ones being written).
    jobs: TaskTracker,
}

impl Executor {
    /// An executor for the worker configured by `config`, handing outcomes to
    /// `completions`.
    pub(crate) fn new(
        app: App,
        config: &WorkerConfig,
        state: WorkerState,
        emitter: Emitter,
        completions: mpsc::Sender<Completion>,
    ) -> Self {
        Self {
            app,
            worker_name: Arc::from(config.name.as_deref().unwrap_or("worker")),
            worker_queues: config.queues.clone().map(Arc::from),
            additional_context: config.additional_context.clone(),
            delete_jobs: config.delete_jobs,
            middleware: config.middleware.clone().into(),
            task_timeout: config.task_timeout,
            state,
            emitter,
            completions,
            jobs: TaskTracker::new(),
        }
    }

    /// The tasks of the jobs this executor started, for shutdown to wait on.
    pub(crate) fn jobs(&self) -> &TaskTracker {
        &self.jobs
    }

    /// Starts a job. Its slot (`permit`) is released once its outcome is queued for the
    /// completer; the job still counts as unwritten until the completer has written it.
    pub(crate) fn spawn(&self, job: Job, permit: OwnedSemaphorePermit) {
        let this = self.clone();
        self.jobs.spawn(async move {
            let started = Instant::now();
            let (write, error, result, ran) = this.run(job.clone()).await;
            // Every attempt that ran counts, whatever its end (an unknown task too): the
            // prefetch is sized by how fast slots free.
            this.complete(job, write, error, result, ran.then(|| started.elapsed()))
                .await;
            drop(permit);
        });
    }

    /// Ends a claimed job that was aborted before it started: `aborted`, without running
    /// it (the delete policy applies as to any aborted job).
    pub(crate) fn abort_waiting(&self, job: Job) {
        let this = self.clone();
        self.jobs.spawn(async move {
            tracing::warn!(job_id = job.id, task = %job.task_name, "job aborted before it started");
            let write = this.finish(JobStatus::Aborted);
            let error = TaskError::new(ABORTED, "aborted before it started");
            this.complete(job, write, Some(error), None, None).await;
        });
    }

    /// Hands an outcome, and the error of an attempt that did not succeed or the result
    /// of one that did, to the completer. `ran`: how long the attempt ran (`None`: it
    /// never started).
    async fn complete(
        &self,
        job: Job,
        write: Write,
        error: Option<TaskError>,
        result: Option<String>,
        ran: Option<std::time::Duration>,
    ) {
        let id = job.id;
        self.state.finished(&job, ran);
        self.emitter.emit(|worker_id| Event::Finished {
            worker_id,
            job: &job,
            outcome: write.outcome(),
            ran,
            error_kind: error.as_ref().map(TaskError::kind),
        });
        let error = error.map(|e| AttemptError::of(&job, e.kind(), e.message()));
        let result = result.map(|json| AttemptResult::of(&job, json));
        // Back-pressure: when the completer is behind, the slot stays taken.
        if self
            .completions
            .send(Completion {
                job,
                write,
                error,
                result,
            })
            .await
            .is_err()
        {
            tracing::error!(
                job_id = id,
                "completer gone: job stays doing, it will be found stalled"
            );
        }
    }

    /// Runs one attempt: what to write, the error when it did not succeed, the result's
    /// JSON when it did and set one, and whether it ran (false: aborted while it waited).
    async fn run(&self, job: Job) -> (Write, Option<TaskError>, Option<String>, bool) {
        let (abort, claimed) = self.state.started(job.id);
        if abort.is_aborted() {
            // Aborted while it waited in the local queue: it does not run.
            tracing::warn!(job_id = job.id, task = %job.task_name, "job aborted before it started");
            let error = TaskError::new(ABORTED, "aborted before it started");
            return (self.finish(JobStatus::Aborted), Some(error), None, false);
        }
        self.emitter.emit(|worker_id| Event::Started {
            worker_id,
            job: &job,
            waited_local: claimed.map(|at| at.elapsed()).unwrap_or_default(),
            since_scheduled: job
                .scheduled_at
                .and_then(|at| (chrono::Utc::now() - at).to_std().ok()),
        });
        let started = Instant::now();
        let Some(entry) = self.app.task(&job.task_name).cloned() else {
            let error = TaskError::new(
                "TaskNotFound",
                format!(
                    "no task named {:?} is registered in this worker (known: {})",
                    job.task_name,
                    self.app.task_names().join(", ")
                ),
            );
            tracing::error!(job_id = job.id, task = %job.task_name, %error, "job failed: unknown task");
            return (self.finish(JobStatus::Failed), Some(error), None, true);
        };
        let ctx = JobContext::new(
            self.app.clone(),
            job.clone(),
            self.worker_name.clone(),
            self.worker_queues.clone(),
            self.additional_context.clone(),
            abort.clone(),
        );
        tracing::debug!(job_id = job.id, task = %job.task_name, "job started");
        let attempt = (entry.run)(job.args.clone(), ctx.clone());
        let attempt = middleware::wrap(&entry.config.middleware, &ctx, attempt);
        let attempt = middleware::wrap(&self.middleware, &ctx, attempt);
        let span = crate::trace::job_span(&job, self.emitter.worker_id());
        let mut handle = tokio::spawn(attempt.instrument(span.clone()));
        let timeout = job
            .timeout
            .or(entry.config.options.timeout)
            .or(self.task_timeout);
        let timed_out = async {
            match timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            joined = &mut handle => match joined {
                // A result set but refused (too large, not serialisable) fails the attempt.
                Ok(Ok(())) => match ctx.take_result() {
                    None => Outcome::Succeeded(None),
                    Some(Ok(json)) => Outcome::Succeeded(Some(json)),
                    Some(Err(error)) => Outcome::Failed(error),
                },
                Ok(Err(error)) => Outcome::Failed(error),
                Err(join) => Outcome::Failed(TaskError::new("Panic", panic_message(join))),
            },
            () = abort.aborted() => {
                handle.abort();
                let _ = handle.await;
                Outcome::Aborted(abort.reason().unwrap_or(AbortReason::UserRequest))
            }
            () = timed_out => {
                // The task sees `should_abort` first; its future is then dropped at its
                // next await point (blocking code runs to its end, the thread is not
                // killed).
                abort.abort(AbortReason::Timeout);
                handle.abort();
                let _ = handle.await;
                Outcome::Failed(TaskError::new(
                    "Timeout",
                    format!("ran longer than its timeout of {:?}", timeout.unwrap_or_default()),
                ))
            }
        };
        let elapsed = started.elapsed();
        let ended = match outcome {
            Outcome::Succeeded(result) => {
                tracing::info!(job_id = job.id, task = %job.task_name, ?elapsed, "job succeeded");
                (self.finish(JobStatus::Succeeded), None, result, true)
            }
            Outcome::Failed(error) => match entry.config.retry.decide(&job, &error) {
                Some(decision) => {
                    tracing::warn!(job_id = job.id, task = %job.task_name, %error, retry_at = ?decision.retry_at, "job failed, will retry");
                    (Write::Retry(decision), Some(error), None, true)
                }
                None => {
                    tracing::error!(job_id = job.id, task = %job.task_name, %error, "job failed");
                    (self.finish(JobStatus::Failed), Some(error), None, true)
                }
            },
            Outcome::Aborted(reason) => {
                let error = TaskError::new(ABORTED, format!("aborted: {reason:?}"));
                let retry = (reason == AbortReason::Shutdown)
                    .then(|| entry.config.retry.decide(&job, &error))
                    .flatten();
                match retry {
                    Some(decision) => {
                        tracing::warn!(job_id = job.id, task = %job.task_name, "job aborted by shutdown, will retry");
                        (Write::Retry(decision), Some(error), None, true)
                    }
                    None => {
                        tracing::warn!(job_id = job.id, task = %job.task_name, ?reason, "job aborted");
                        (self.finish(JobStatus::Aborted), Some(error), None, true)
                    }
                }
            }
        };
        span.record("outcome", ended.0.outcome().as_str());
        ended
    }

    fn finish(&self, status: JobStatus) -> Write {
        let delete_job = match self.delete_jobs {
            DeleteJobs::Never => false,
            DeleteJobs::Successful => status == JobStatus::Succeeded,
            DeleteJobs::Always => true,
        };
        Write::Finish { status, delete_job }
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return "the task was cancelled".to_owned();
    }
    let payload = join.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("task panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("task panicked: {s}")
    } else {
        "task panicked".to_owned()
    }
}
