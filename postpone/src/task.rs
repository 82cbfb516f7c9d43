//! Tasks: what a job runs, declared once with its name, typed arguments and defaults.
//!
//! A task is a serde type (its fields are the job's keyword arguments, stored as the JSON
//! object in `procrastinate_jobs.args`) that implements [`Task`], or [`TaskWithOutput`]
//! when its `run` returns a value to keep as the job's result (every `TaskWithOutput` is a
//! `Task`, by a blanket impl). Corresponds to Procrastinate's `@app.task(...)` decorator
//! and `procrastinate/tasks.py`.
//!
//! ```
//! use postpone::{Task, TaskConfig, task::{JobContext, TaskError}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//! }
//!
//! impl Task for SendEmail {
//!     // Set the name explicitly to share the task with a Python service.
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "emails.send_email".into()
//!     }
//!     fn config() -> TaskConfig {
//!         TaskConfig::default().with_queue("emails").with_priority(5)
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         println!("sending to {}", self.to);
//!         Ok(())
//!     }
//! }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::job::{JobOptions, job_option_setters};
use crate::retry::Retry;

pub use crate::context::{AbortReason, JobContext};

/// A task: typed arguments plus the code that runs them.
///
/// A task whose `run` returns a value to keep as the job's result implements
/// [`TaskWithOutput`] instead, and is a `Task` through its blanket impl; a `Task` keeps a
/// result with [`JobContext::set_result`].
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The task name stored in `procrastinate_jobs.task_name` (at most 128 characters).
    ///
    /// The default is the type's path as [`std::any::type_name`] gives it. Set it
    /// explicitly for any task whose jobs outlive a deploy or cross to Python.
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Defaults for jobs of this task: queue, priority, locks, retry, aliases.
    fn config() -> TaskConfig {
        TaskConfig::default()
    }

    /// Runs one job of this task.
    fn run(self, ctx: JobContext) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// A task whose `run` returns a value, kept as the job's result (`docs/results.md`).
///
/// The other way to write a task: implement this trait instead of [`Task`], and every
/// type implementing it is a [`Task`] too, through a blanket impl. So it is registered,
/// deferred, tracked, scheduled and put in workflows exactly as a [`Task`] is
/// (`.task::<T>()`, `app.defer(..)`, `app.defer_and_track(..)`, `Periodic::new::<T>(..)`).
/// Its task's `run` awaits this `run` and, on `Ok(value)`, stores `value` as the job's
/// result with [`JobContext::set_result`]: serialised in the worker, refused with kind
/// [`RESULT_TOO_LARGE`](crate::result::RESULT_TOO_LARGE) over the app's
/// [`result_size_limit`](crate::AppBuilder::result_size_limit), or
/// [`RESULT_NOT_SERIALIZABLE`](crate::result::RESULT_NOT_SERIALIZABLE), either failing the
/// attempt by the task's retry policy. On `Err`, nothing is stored.
///
/// The returned value replaces anything `run` set with [`JobContext::set_result`]. An
/// `Output` of `()` stores `null`, as `ctx.set_result(&())` does; so does `None`.
/// Why a sibling trait and not an output type on [`Task`]: ADR 17.
///
/// ```
/// use postpone::task::{JobContext, TaskError};
/// use postpone::TaskWithOutput;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Add {
///     a: i64,
///     b: i64,
/// }
///
/// impl TaskWithOutput for Add {
///     type Output = i64;
///     async fn run(self, _ctx: JobContext) -> Result<i64, TaskError> {
///         Ok(self.a + self.b)
///     }
/// }
/// ```
///
/// A type implements either this trait or [`Task`], not both (the blanket impl is its
/// [`Task`] impl). With both traits in scope, `Add::name()` is ambiguous: say which,
/// `<Add as TaskWithOutput>::name()`.
pub trait TaskWithOutput: Serialize + DeserializeOwned + Send + 'static {
    /// What `run` returns on success, stored as the job's result.
    type Output: Serialize + Send + 'static;

    /// The task name, as [`Task::name`] (the default is the type's path).
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Defaults for jobs of this task, as [`Task::config`].
    fn config() -> TaskConfig {
        TaskConfig::default()
    }

    /// Runs one job of this task and returns its result.
    fn run(self, ctx: JobContext) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// A [`TaskWithOutput`] is a [`Task`] that stores what its `run` returns.
impl<T: TaskWithOutput> Task for T {
    fn name() -> Cow<'static, str> {
        <T as TaskWithOutput>::name()
    }

    fn config() -> TaskConfig {
        <T as TaskWithOutput>::config()
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let keep = ctx.clone();
        let output = <T as TaskWithOutput>::run(self, ctx).await?;
        keep.set_result(&output)
    }
}

/// Defaults for a task's jobs; each can be overridden per defer call.
#[derive(Clone, Default)]
#[must_use = "a task's config does nothing until its task returns it from Task::config"]
pub struct TaskConfig {
    /// Queue (default `"default"`), priority (default 0; higher runs first), lock,
    /// queueing lock and schedule of the task's jobs, set with the `with_*` setters.
    pub options: JobOptions,
    /// What to do when a job fails.
    pub retry: Retry,
    /// Other names jobs of this task may carry (for renames, and Python names).
    pub aliases: Vec<String>,
    /// Middleware around each attempt of this task (inside the worker's).
    pub middleware: Vec<std::sync::Arc<dyn crate::middleware::Middleware>>,
    /// Flow-control limits on the task's jobs (`docs/flow-control.md`), checked when the
    /// app is built.
    pub flow_limits: Vec<crate::flow::FlowLimit>,
}

impl fmt::Debug for TaskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskConfig")
            .field("options", &self.options)
            .field("retry", &self.retry)
            .field("aliases", &self.aliases)
            .field("middleware", &self.middleware.len())
            .field("flow_limits", &self.flow_limits)
            .finish()
    }
}

impl TaskConfig {
    job_option_setters!(options);

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: impl Into<Retry>) -> Self {
        self.retry = retry.into();
        self
    }

    /// Adds a middleware around each attempt (the first added is the outermost).
    pub fn with_middleware(
        mut self,
        middleware: std::sync::Arc<dyn crate::middleware::Middleware>,
    ) -> Self {
        self.middleware.push(middleware);
        self
    }

    /// Adds an alias.
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Adds a flow-control limit on the task's jobs: a concurrency or rate limit for all of
    /// them, or per value of a key field of their args ([`crate::flow::FlowLimit`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use postpone::TaskConfig;
    /// use postpone::flow::FlowLimit;
    ///
    /// let config = TaskConfig::default()
    ///     .with_flow_limit(FlowLimit::concurrency(2).per_key("tenant"))
    ///     .with_rate_limit(100, Duration::from_secs(1));
    /// assert_eq!(config.flow_limits.len(), 2);
    /// ```
    pub fn with_flow_limit(mut self, limit: crate::flow::FlowLimit) -> Self {
        self.flow_limits.push(limit);
        self
    }

    /// At most `max_running` of the task's jobs running at once, across workers (a global
    /// cap for the task; see [`Self::with_flow_limit`] for one per key).
    pub fn with_concurrency_limit(self, max_running: u32) -> Self {
        self.with_flow_limit(crate::flow::FlowLimit::concurrency(max_running))
    }

    /// At most `starts` of the task's jobs started in any window of `period`, across
    /// workers.
    pub fn with_rate_limit(self, starts: u32, period: std::time::Duration) -> Self {
        self.with_flow_limit(crate::flow::FlowLimit::rate(starts, period))
    }
}

/// Why a task failed: a kind (used by [`crate::retry::RetryStrategy::retry_on`]) and a message.
///
/// Any `std::error::Error` converts into it with `?`; its kind is the error type's name
/// (the last path segment, e.g. `ParseIntError`).
pub struct TaskError {
    kind: Cow<'static, str>,
    message: String,
}

impl TaskError {
    /// An error with an explicit kind.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl fmt::Display) -> Self {
        Self {
            kind: kind.into(),
            message: message.to_string(),
        }
    }

    /// An error of kind `Error` with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new("Error", message)
    }

    /// The kind of error.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        let full = std::any::type_name::<E>();
        let base = full.split('<').next().unwrap_or(full);
        let kind = base.rsplit("::").next().unwrap_or(base);
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(kind.to_owned(), message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The type-erased task, as the app's registry keeps it.
pub(crate) type RunFn =
    fn(serde_json::Value, JobContext) -> BoxFuture<'static, Result<(), TaskError>>;

/// Checks that `args` fit the task's argument type.
pub(crate) type ValidateFn = fn(&serde_json::Value) -> Result<(), String>;

/// One registered task.
#[derive(Clone)]
pub(crate) struct TaskEntry {
    pub(crate) name: String,
    pub(crate) config: TaskConfig,
    pub(crate) run: RunFn,
    pub(crate) validate: ValidateFn,
}

impl fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEntry")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TaskEntry {
    pub(crate) fn of<T: Task>() -> Self {
        Self {
            name: T::name().into_owned(),
            config: T::config(),
            run: run_erased::<T>,
            validate: validate_erased::<T>,
        }
    }
}

fn run_erased<T: Task>(
    args: serde_json::Value,
    ctx: JobContext,
) -> BoxFuture<'static, Result<(), TaskError>> {
    Box::pin(async move {
        let task: T = decode_args(args).map_err(|m| TaskError::new("InvalidArgs", m))?;
        task.run(ctx).await
    })
}

fn validate_erased<T: Task>(args: &serde_json::Value) -> Result<(), String> {
    decode_args::<T>(args.clone()).map(|_| ())
}

/// Deserialises job args into a task, with a message that names the failing field.
pub(crate) fn decode_args<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, String> {
    // A unit struct serialises as null; Procrastinate stores `{}` for "no kwargs".
    match args {
        serde_json::Value::Object(map) if map.is_empty() => {
            from_value::<T>(serde_json::Value::Null)
                .or_else(|_| from_value::<T>(serde_json::Value::Object(map)))
        }
        other => from_value::<T>(other),
    }
}

/// Deserialises a JSON value, naming the field that does not fit (`field `a.b`: ...`).
fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("field `{path}`: {}", e.into_inner())
        }
    })
}

/// Serialises a task into its JSON object of keyword arguments.
pub(crate) fn encode_args<T: Serialize>(
    task_name: &str,
    args: &T,
) -> crate::Result<serde_json::Value> {
    match serde_json::to_value(args) {
        Ok(serde_json::Value::Object(map)) => Ok(serde_json::Value::Object(map)),
        Ok(serde_json::Value::Null) => Ok(serde_json::Value::Object(serde_json::Map::new())),
        Ok(other) => Err(crate::Error::InvalidArgs {
            task: task_name.to_owned(),
            message: format!(
                "they serialise to {}, not to a JSON object of keyword arguments; use a struct with named fields",
                json_kind(&other)
            ),
        }),
        Err(e) => Err(crate::Error::InvalidArgs {
            task: task_name.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// "an array", "a string", ... for messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Add {
        a: i64,
        b: i64,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Ping;

    #[test]
    fn args_roundtrip_and_name_the_bad_field() {
        let v = encode_args("add", &Add { a: 1, b: 2 }).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "b": 2}));
        assert_eq!(decode_args::<Add>(v).unwrap(), Add { a: 1, b: 2 });
        let err = decode_args::<Add>(serde_json::json!({"a": 1})).unwrap_err();
        assert!(err.contains("missing field `b`"), "{err}");
        let err = decode_args::<Add>(serde_json::json!({"a": "x", "b": 2})).unwrap_err();
        assert!(err.starts_with("field `a`: invalid type"), "{err}");
    }

    #[test]
    fn unit_tasks_store_an_empty_object() {
        assert_eq!(encode_args("ping", &Ping).unwrap(), serde_json::json!({}));
        assert_eq!(decode_args::<Ping>(serde_json::json!({})).unwrap(), Ping);
    }

    #[test]
    fn non_object_args_are_refused() {
        let err = encode_args("t", &vec![1, 2]).unwrap_err().to_string();
        assert!(err.contains("an array"), "{err}");
    }

    /// Returns the sum of its arguments; a `Task` through the blanket impl.
    #[derive(Serialize, Deserialize)]
    struct Sum {
        a: i64,
        b: i64,
    }

    impl TaskWithOutput for Sum {
        type Output = i64;
        fn name() -> Cow<'static, str> {
            "sum".into()
        }
        fn config() -> TaskConfig {
            TaskConfig::default().with_queue("sums")
        }
        async fn run(self, _ctx: JobContext) -> Result<i64, TaskError> {
            Ok(self.a + self.b)
        }
    }

    #[tokio::test]
    async fn a_task_with_output_is_a_task_that_keeps_what_it_returns() {
        let entry = TaskEntry::of::<Sum>();
        assert_eq!(entry.name, "sum");
        assert_eq!(entry.config.options.queue.as_deref(), Some("sums"));
        let store = crate::MemoryStore::new();
        let app = crate::App::builder()
            .store(std::sync::Arc::new(store.clone()))
            .task::<Sum>()
            .build()
            .unwrap();
        let id = app.defer(Sum { a: 40, b: 2 }).await.unwrap();
        store.run_all(&app).await.unwrap();
        assert_eq!(app.job_result::<i64>(id).await.unwrap(), Some(42));
    }

    #[test]
    fn error_kind_is_the_type_name() {
        let e: TaskError = "x".parse::<i32>().unwrap_err().into();
        assert_eq!(e.kind(), "ParseIntError");
    }
}
