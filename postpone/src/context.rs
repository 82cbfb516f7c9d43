//! What a running task knows about itself: [`JobContext`] (Procrastinate's `JobContext`).
//!
//! A context is made by the worker for each attempt. Abort requests (from a user's cancel
//! with abort, or from a worker shutting down) are visible through
//! [`JobContext::should_abort`] for code that polls, and cancel async tasks at their next
//! await point.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::job::Job;

/// Why a job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// Someone cancelled the job with abort (`postpone abort`, `cancel_job_by_id(abort=True)`).
    UserRequest,
    /// The worker is shutting down and its graceful timeout ran out.
    Shutdown,
    /// The job ran longer than its timeout (the defer call's, its task's or the worker's).
    Timeout,
}

/// The abort signal of one attempt, shared between the worker and the task.
#[derive(Debug, Clone, Default)]
pub struct AbortSignal {
    token: CancellationToken,
    reason: Arc<OnceLock<AbortReason>>,
}

impl AbortSignal {
    /// Asks the job to stop; the first reason given wins.
    pub fn abort(&self, reason: AbortReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// True once abort was requested.
    #[must_use]
    pub fn is_aborted(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why abort was requested, if it was.
    #[must_use]
    pub fn reason(&self) -> Option<AbortReason> {
        self.reason.get().copied()
    }

    /// Completes when abort is requested.
    pub async fn aborted(&self) {
        self.token.cancelled().await;
    }
}

/// What a task knows about the job it runs.
#[derive(Clone)]
pub struct JobContext {
    app: App,
    job: Job,
    worker_name: Arc<str>,
    worker_queues: Option<Arc<[String]>>,
    start_timestamp: DateTime<Utc>,
    additional_context: Option<Arc<dyn Any + Send + Sync>>,
    abort: AbortSignal,
}

impl JobContext {
    /// Made by the worker for each attempt.
    pub(crate) fn new(
        app: App,
        job: Job,
        worker_name: Arc<str>,
        worker_queues: Option<Arc<[String]>>,
        additional_context: Option<Arc<dyn Any + Send + Sync>>,
        abort: AbortSignal,
    ) -> Self {
        Self {
            app,
            job,
            worker_name,
            worker_queues,
            start_timestamp: Utc::now(),
            additional_context,
            abort,
        }
    }

    /// The app, to defer more jobs.
    #[must_use]
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The job being run.
    #[must_use]
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The worker's name.
    #[must_use]
    pub fn worker_name(&self) -> &str {
        &self.worker_name
    }

    /// The queues the worker listens to (`None`: all queues).
    #[must_use]
    pub fn worker_queues(&self) -> Option<&[String]> {
        self.worker_queues.as_deref()
    }

    /// When this attempt started.
    #[must_use]
    pub fn start_timestamp(&self) -> DateTime<Utc> {
        self.start_timestamp
    }

    /// The worker's additional context, if it is of type `T`.
    #[must_use]
    pub fn additional_context<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.additional_context.as_deref()?.downcast_ref::<T>()
    }

    /// True once the job is asked to stop; long synchronous work should poll it.
    #[must_use]
    pub fn should_abort(&self) -> bool {
        self.abort.is_aborted()
    }

    /// Why the job is asked to stop, if it is.
    #[must_use]
    pub fn abort_reason(&self) -> Option<AbortReason> {
        self.abort.reason()
    }

    /// Completes when the job is asked to stop.
    pub async fn aborted(&self) {
        self.abort.aborted().await;
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job)
            .field("worker_name", &self.worker_name)
            .field("worker_queues", &self.worker_queues)
            .field("start_timestamp", &self.start_timestamp)
            .field("abort_reason", &self.abort.reason())
            .finish_non_exhaustive()
    }
}
