//! What a running task knows about itself: [`JobContext`] (Procrastinate's `JobContext`).
//!
//! A context is made by the worker for each attempt. Abort requests (from a user's cancel
//! with abort, or from a worker shutting down) are visible through
//! [`JobContext::should_abort`] for code that polls, and cancel async tasks at their next
//! await point.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::job::Job;
use crate::task::TaskError;

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
    /// What [`JobContext::set_result`] left for the worker, shared by the attempt's clones.
    result: Arc<Mutex<Option<Result<String, TaskError>>>>,
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
            result: Arc::default(),
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

    /// Sets what this attempt returns: `value` is serialised to JSON now, and stored
    /// (`postpone_job_results`) with the job's `succeeded` outcome, in the same statement;
    /// read it with [`App::job_result`] or a [`JobHandle`](crate::JobHandle). A later call
    /// replaces an earlier one; an attempt that fails stores nothing. See
    /// `docs/results.md`.
    ///
    /// ```
    /// use postpone::task::{JobContext, TaskError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Add { a: i64, b: i64 }
    /// # impl postpone::Task for Add {
    /// async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
    ///     ctx.set_result(&(self.a + self.b))
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// A [`TaskError`] of kind [`RESULT_NOT_SERIALIZABLE`](crate::result::RESULT_NOT_SERIALIZABLE)
    /// when serde refuses the value (a map with non-string keys, say), or of kind
    /// [`RESULT_TOO_LARGE`](crate::result::RESULT_TOO_LARGE) when its JSON is longer than
    /// the app's [`result_size_limit`](crate::AppBuilder::result_size_limit). The attempt
    /// fails with that error (and follows the task's retry policy) even when the task
    /// ignores it and returns `Ok`.
    pub fn set_result<R: serde::Serialize + ?Sized>(&self, value: &R) -> Result<(), TaskError> {
        let encoded = crate::result::encode(self.job.id, value, self.app.result_size_limit());
        let returned = match &encoded {
            Ok(_) => Ok(()),
            Err(error) => Err(TaskError::new(error.kind().to_owned(), error.message())),
        };
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(encoded);
        returned
    }

    /// The result a parent of this job's workflow node set ([`Self::set_result`]), read
    /// as a `T`: `None` when that parent stored none (it returned nothing, was run by a
    /// Python worker, or did not succeed, under [`OnParentFailure::Run`](crate::workflow::OnParentFailure::Run)).
    /// A copy kept with the parent's node, so the delete policy removing the parent's job
    /// loses nothing. One query. See `docs/workflows.md`.
    ///
    /// ```
    /// use postpone::task::{JobContext, TaskError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Merge;
    /// # impl postpone::Task for Merge {
    /// async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
    ///     let a: Option<u64> = ctx.parent_result("a").await?;
    ///     let b: Option<u64> = ctx.parent_result("b").await?;
    ///     ctx.set_result(&(a.unwrap_or(0) + b.unwrap_or(0)))
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) when this job is no workflow
    /// node, or its node has no parent named `parent`; [`Error::InvalidResult`](crate::Error::InvalidResult)
    /// when the result does not fit `T`; a database error.
    pub async fn parent_result<T: serde::de::DeserializeOwned>(
        &self,
        parent: &str,
    ) -> crate::Result<Option<T>> {
        let node = self.workflow_node().await?.ok_or_else(|| {
            crate::Error::InvalidInput(format!(
                "job {} is not a workflow node, so it has no parents: parent_result is for the jobs of App::defer_workflow",
                self.job.id
            ))
        })?;
        let Some(outcome) = node.parents.iter().find(|p| p.name == parent) else {
            let names: Vec<&str> = node.parents.iter().map(|p| p.name.as_str()).collect();
            return Err(crate::Error::InvalidInput(format!(
                "node {:?} of workflow {} has no parent named {parent:?}: its parents are [{}]",
                node.name,
                node.workflow_id,
                names.join(", ")
            )));
        };
        let Some(json) = &outcome.result else {
            return Ok(None);
        };
        let row = crate::store::JobResultRow {
            job_id: outcome.job_id.unwrap_or_default(),
            attempt: 0,
            worker_id: None,
            json: json.clone(),
            finished_at: self.start_timestamp,
        };
        row.decode().map(Some)
    }

    /// This job's workflow node and its parents' outcomes (with their results as JSON);
    /// `None` when the job is no workflow node. One query.
    ///
    /// # Errors
    /// A database error.
    pub async fn workflow_node(&self) -> crate::Result<Option<crate::workflow::NodeParents>> {
        self.app.store().list_parent_outcomes(self.job.id).await
    }

    /// What [`Self::set_result`] left (the worker's, after the attempt).
    pub(crate) fn take_result(&self) -> Option<Result<String, TaskError>> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
