//! Deferring jobs: one, configured, in a batch, or inside the caller's transaction.
//!
//! Options overlay in this order: per-call ([`Configured`]'s `with_*` setters) over the
//! task's [`crate::TaskConfig`] over the app's defaults (queue `"default"`, priority 0).
//! Every path validates before anything is written: names at most 128 characters, args a
//! JSON object that fits the task's type, `schedule_at` and `schedule_in` not both.
//! Corresponds to Procrastinate's `task.defer`, `task.configure(...).defer`,
//! `batch_defer` and `JobManager.defer_job`.
//!
//! ```no_run
//! # use postpone::{App, Task, task::{JobContext, TaskError}};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Resize { image: String }
//! # impl Task for Resize { async fn run(self, _: JobContext) -> Result<(), TaskError> { Ok(()) } }
//! # async fn f(app: App) -> postpone::Result<()> {
//! let id = app.defer(Resize { image: "a.png".into() }).await?;
//! let id = app
//!     .configure(Resize { image: "b.png".into() })
//!     .with_queue("images")
//!     .with_lock("user-42")
//!     .schedule_in(std::time::Duration::from_secs(60))
//!     .defer()
//!     .await?;
//! let ids = app
//!     .batch_defer((0..3).map(|i| app.configure(Resize { image: format!("{i}.png") })))
//!     .await?;
//! # Ok(()) }
//! ```

use crate::app::App;
use crate::job::{JobOptions, job_option_setters};
use crate::protocol::check_name;
use crate::store::DeferJobParams;
use crate::store::postgres::Transaction;
use crate::task::{Task, encode_args, json_kind};
use crate::{Error, Result};
use tracing::Instrument;

/// A job ready to be inserted: task name, args and resolved options.
pub type JobSpec = DeferJobParams;

/// A job being configured before it is deferred (Procrastinate's `task.configure(...)`).
#[derive(Debug)]
#[must_use = "a configured job does nothing until .defer() is awaited"]
pub struct Configured<'a> {
    app: &'a App,
    task_name: String,
    args: Result<serde_json::Value>,
    options: JobOptions,
    task_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    allow_unknown: bool,
    /// The task type's own defaults, for a typed job whose task this app does not register.
    task_config: Option<fn() -> crate::TaskConfig>,
}

impl App {
    /// Defers one job of a task with its default options; returns the job id.
    ///
    /// # Errors
    /// [`Error::AlreadyEnqueued`] on a queueing-lock collision, [`Error::InvalidInput`]
    /// for bad names, or a database error.
    pub async fn defer<T: Task>(&self, args: T) -> Result<i64> {
        self.configure(args).defer().await
    }

    /// Starts configuring a job of a task.
    pub fn configure<T: Task>(&self, args: T) -> Configured<'_> {
        let name = T::name().into_owned();
        let args = encode_args(&name, &args);
        Configured {
            task_config: Some(T::config),
            ..Configured::new(self, name, args)
        }
    }

    /// Starts configuring a job by task name with JSON args (as the CLI does).
    ///
    /// A registered task's args are checked against its type; an unregistered name is
    /// refused unless [`Configured::allow_unknown`] is called.
    pub fn configure_by_name(&self, task_name: &str, args: serde_json::Value) -> Configured<'_> {
        let args = match args {
            serde_json::Value::Object(_) => Ok(args),
            other => Err(Error::InvalidArgs {
                task: task_name.to_owned(),
                message: format!(
                    "they are {}, not a JSON object of keyword arguments like {{\"a\": 1}}",
                    json_kind(&other)
                ),
            }),
        };
        Configured::new(self, task_name.to_owned(), args)
    }

    /// Defers many jobs in one round trip, all or nothing; ids in input order.
    ///
    /// # Errors
    /// As [`App::defer`]; on any error no job is inserted.
    pub async fn batch_defer<'a, I>(&'a self, jobs: I) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = Configured<'a>>,
    {
        let specs = jobs
            .into_iter()
            .map(Configured::into_spec)
            .collect::<Result<Vec<_>>>()?;
        self.defer_specs(specs).await
    }

    /// Defers jobs already resolved ([`Configured::into_spec`]) in one round trip, all or
    /// nothing, inside a `postpone.defer` span (each job keeps its trace context, as every
    /// defer call does); ids in input order.
    ///
    /// # Errors
    /// As [`App::batch_defer`].
    pub async fn defer_specs(&self, mut specs: Vec<JobSpec>) -> Result<Vec<i64>> {
        let span = traced(&mut specs);
        let ids = self
            .store()
            .defer_jobs(&specs)
            .instrument(span.clone())
            .await?;
        if let [id] = ids[..] {
            span.record("job_id", id);
        }
        Ok(ids)
    }

    /// Defers many jobs inside the caller's transaction, all or nothing.
    ///
    /// # Errors
    /// As [`App::batch_defer`].
    pub async fn batch_defer_in<'a, I, Tx>(&'a self, tx: &mut Tx, jobs: I) -> Result<Vec<i64>>
    where
        I: IntoIterator<Item = Configured<'a>>,
        Tx: Transaction,
    {
        let mut specs = jobs
            .into_iter()
            .map(Configured::into_spec)
            .collect::<Result<Vec<_>>>()?;
        let span = traced(&mut specs);
        tx.defer_jobs(&specs).instrument(span).await
    }
}

impl<'a> Configured<'a> {
    fn new(app: &'a App, task_name: String, args: Result<serde_json::Value>) -> Self {
        Self {
            app,
            task_name,
            args,
            options: JobOptions::default(),
            task_kwargs: None,
            allow_unknown: false,
            task_config: None,
        }
    }

    job_option_setters!(options);

    /// Sets every option at once (unset ones still come from the task).
    pub fn with_options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    /// Overrides some keyword arguments (checked against the task's type again).
    pub fn with_task_kwargs(mut self, kwargs: serde_json::Map<String, serde_json::Value>) -> Self {
        self.task_kwargs = Some(kwargs);
        self
    }

    /// Accepts a task name this app does not know (Procrastinate's `--unknown`). A typed
    /// job ([`App::configure`]) still gets its type's own [`crate::Task::config`] defaults.
    pub fn allow_unknown(mut self) -> Self {
        self.allow_unknown = true;
        self
    }

    /// Validates and resolves the options into the row to insert.
    ///
    /// # Errors
    /// [`Error::InvalidInput`], [`Error::InvalidArgs`] or [`Error::UnknownTask`].
    pub fn into_spec(self) -> Result<JobSpec> {
        check_name("task", &self.task_name)?;
        let mut args = self.args?;
        if let Some(kwargs) = self.task_kwargs {
            if let serde_json::Value::Object(map) = &mut args {
                map.extend(kwargs);
            }
        }
        let entry = self.app.task(&self.task_name);
        match entry {
            Some(entry) => (entry.validate)(&args).map_err(|message| Error::InvalidArgs {
                task: self.task_name.clone(),
                message,
            })?,
            None if self.allow_unknown => {}
            None => {
                return Err(Error::UnknownTask {
                    name: self.task_name,
                });
            }
        }
        // A registered task's defaults; else, for a typed job, its type's own.
        let own = match entry {
            None => self.task_config.map(|config| config()),
            Some(_) => None,
        };
        let config = entry.map(|e| &e.config).or(own.as_ref());
        // The task's timeout applies when its jobs run: only one set here is stored.
        let own_timeout = self.options.timeout;
        let options = match config {
            Some(config) => self.options.over(&config.options),
            None => self.options,
        };
        let flow_limits = config.map_or(&[][..], |config| config.flow_limits.as_slice());
        // Limits are scoped by the registered name, so a job deferred under an alias shares them.
        let scope_name = entry
            .map_or(self.task_name.as_str(), |e| e.name.as_str())
            .to_owned();
        let mut spec = JobSpec::resolve(
            self.task_name,
            args,
            JobOptions {
                timeout: own_timeout,
                ..options
            },
        )?;
        spec.flow = flow_buckets(self.app, &spec, &scope_name, flow_limits)?;
        Ok(spec)
    }

    /// Defers the job; returns its id.
    ///
    /// # Errors
    /// As [`App::defer`].
    pub async fn defer(self) -> Result<i64> {
        let app = self.app;
        let ids = app.defer_specs(vec![self.into_spec()?]).await?;
        first_id(&ids)
    }

    /// Defers the job inside the caller's transaction: visible, and announced by NOTIFY,
    /// only when it commits.
    ///
    /// # Errors
    /// As [`App::defer`].
    pub async fn defer_in<Tx: Transaction>(self, tx: &mut Tx) -> Result<i64> {
        let mut specs = [self.into_spec()?];
        let span = traced(&mut specs);
        let ids = tx.defer_jobs(&specs).instrument(span.clone()).await?;
        if let [id] = ids[..] {
            span.record("job_id", id);
        }
        first_id(&ids)
    }
}

/// The flow-control buckets of a job (ADR 18): its task's limits, then its queue's.
///
/// # Errors
/// [`Error::InvalidArgs`] when a limit is keyed on a field the args do not have.
fn flow_buckets(
    app: &App,
    spec: &JobSpec,
    task: &str,
    task_limits: &[crate::flow::FlowLimit],
) -> Result<Vec<crate::store::FlowBucket>> {
    let queue_limits = app.queue_flow_limits(&spec.queue_name);
    if task_limits.is_empty() && queue_limits.is_empty() {
        return Ok(Vec::new());
    }
    let task_scope = format!("task:{task}");
    let queue_scope = format!("queue:{}", spec.queue_name);
    let mut buckets = Vec::with_capacity(task_limits.len() + queue_limits.len());
    let scoped = task_limits
        .iter()
        .map(|limit| (&task_scope, limit))
        .chain(queue_limits.iter().map(|limit| (&queue_scope, limit)));
    for (scope, limit) in scoped {
        let bucket = limit.bucket(scope, &spec.task_name, &spec.args)?;
        // Two limits on one bucket (a concurrency and a rate, say) make one bucket with
        // both; of two of the same kind, the first wins.
        match buckets
            .iter_mut()
            .find(|b: &&mut crate::store::FlowBucket| b.name == bucket.name)
        {
            Some(same) => {
                same.max_running = same.max_running.or(bucket.max_running);
                same.rate = same.rate.or(bucket.rate);
            }
            None => buckets.push(bucket),
        }
    }
    Ok(buckets)
}

/// The `postpone.defer` span of a defer call; each job keeps its trace context (with the
/// `opentelemetry` feature: [`crate::trace`]).
fn traced(specs: &mut [JobSpec]) -> tracing::Span {
    let first = specs.first();
    let span = tracing::info_span!(
        "postpone.defer",
        task = first.map_or("", |s| s.task_name.as_str()),
        queue = first.map_or("", |s| s.queue_name.as_str()),
        jobs = specs.len(),
        job_id = tracing::field::Empty,
    );
    if let Some(context) = crate::trace::context_of(&span) {
        for spec in specs.iter_mut() {
            spec.trace_context = Some(context.clone());
        }
    }
    span
}

/// The one job's id.
fn first_id(ids: &[i64]) -> Result<i64> {
    ids.first().copied().ok_or_else(|| {
        Error::InvalidInput("the database returned no id for the deferred job".to_owned())
    })
}
