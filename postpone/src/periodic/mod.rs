//! Periodic tasks: a task deferred on a cron schedule (Procrastinate's `@app.periodic`).
//!
//! Register a [`Periodic`] on the [`crate::AppBuilder`] (or a [`crate::Blueprint`]); every
//! worker then runs the periodic deferrer (`maintenance/periodic.rs`), and the
//! database keeps each tick to one job through `procrastinate_defer_periodic_job_v2`, so
//! any number of Rust and Python workers defer each tick once.
//!
//! The job gets the tick's Unix timestamp (seconds) in its `timestamp` keyword argument,
//! next to the registration's fixed kwargs, so the task's type has a `timestamp` field:
//!
//! ```
//! use postpone::{App, Task, periodic::Periodic, task::{JobContext, TaskError}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Report {
//!     timestamp: i64,
//!     kind: String,
//! }
//!
//! impl Task for Report {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "reports.build".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         println!("{} report for tick {}", self.kind, self.timestamp);
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> postpone::Result<()> {
//! let app = App::builder()
//!     .task::<Report>()
//!     // Every day at 06:30 in Paris (summer and winter time alike).
//!     .periodic(
//!         Periodic::new::<Report>("30 6 * * *")
//!             .with_periodic_id("daily")
//!             .with_timezone("Europe/Paris")
//!             .with_kwargs(serde_json::json!({"kind": "daily"})),
//!     )
//!     // Every 10 seconds: the sixth field is the seconds, as in Procrastinate.
//!     .periodic(
//!         Periodic::new::<Report>("* * * * * */10")
//!             .with_periodic_id("live")
//!             .with_kwargs(serde_json::json!({"kind": "live"})),
//!     )
//!     .database_url("postgres:///app")?
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # Cron syntax
//! Five fields, `minute hour day-of-month month day-of-week`, or six with the **seconds
//! last** (`minute hour day-of-month month day-of-week second`), which is how
//! Procrastinate (croniter) reads six fields: one string means the same schedule in both
//! languages. Lists, ranges, steps, names (`mon`, `jan`), `L`, `#` and the nicknames
//! (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`) are understood. When both
//! day fields are restricted, either matching is enough (as in cron and croniter).
//!
//! # Time zones
//! A schedule runs in UTC unless it names an IANA zone ([`Periodic::with_timezone`]).
//! In a zone with daylight saving time, a time in the skipped hour runs once the clocks
//! have moved, a time in the repeated hour runs once (its first occurrence), and a
//! schedule whose hour is a wildcard keeps its pace in real time (`docs/periodic.md`). Python's Procrastinate has no zones:
//! a Python worker sharing a zoned schedule would defer other ticks; register zoned
//! schedules on Rust workers only.

mod schedule;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use schedule::Schedule;

use crate::app::App;
use crate::job::{JobOptions, job_option_setters};
use crate::store::DeferJobParams;
use crate::task::{Task, TaskEntry};
use crate::{Error, Result};

/// How late a tick may be deferred (Procrastinate's `MAX_DELAY`): older ticks are
/// skipped, at start-up or after the database was unreachable.
pub const MAX_DELAY_DEFAULT: std::time::Duration = std::time::Duration::from_secs(600);

/// The keyword argument that carries the tick's timestamp.
pub const TIMESTAMP_KWARG: &str = "timestamp";

/// One periodic registration: a task, a cron schedule, and how to configure its jobs.
#[derive(Debug, Clone)]
#[must_use = "a periodic registration does nothing until added to an app or blueprint"]
pub struct Periodic {
    pub(crate) task_name: String,
    pub(crate) cron: String,
    pub(crate) periodic_id: String,
    pub(crate) timezone: Option<String>,
    pub(crate) kwargs: std::result::Result<serde_json::Value, String>,
    /// The jobs' options (unset ones come from the task).
    pub(crate) options: JobOptions,
    /// Parsed when the app is built.
    pub(crate) schedule: Option<Schedule>,
}

impl Periodic {
    /// Defers task `T` on this cron schedule (checked when the app is built).
    pub fn new<T: Task>(cron: impl Into<String>) -> Self {
        Self::by_name(T::name(), cron)
    }

    /// Defers the task registered under this name (in a blueprint: the name inside it).
    pub fn by_name(task_name: impl Into<String>, cron: impl Into<String>) -> Self {
        Self {
            task_name: task_name.into(),
            cron: cron.into(),
            periodic_id: String::new(),
            timezone: None,
            kwargs: Ok(serde_json::Value::Object(serde_json::Map::new())),
            options: JobOptions::default(),
            schedule: None,
        }
    }

    /// Tells apart several schedules of one task (default empty, as in Procrastinate).
    pub fn with_periodic_id(mut self, periodic_id: impl Into<String>) -> Self {
        self.periodic_id = periodic_id.into();
        self
    }

    /// Runs the schedule in this IANA time zone (`"Europe/Paris"`; default UTC).
    pub fn with_timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = Some(timezone.into());
        self
    }

    /// Fixed keyword arguments of every job (a JSON object; `timestamp` is added).
    pub fn with_kwargs(mut self, kwargs: impl Serialize) -> Self {
        self.kwargs = serde_json::to_value(kwargs).map_err(|e| e.to_string());
        self
    }

    // Queue, priority, lock, queueing lock (a tick that finds a waiting job with it is
    // skipped) and schedule of the jobs; each defaults to the task's.
    job_option_setters!(options);

    /// The task name (namespaced once the app is built).
    #[must_use]
    pub fn task_name(&self) -> &str {
        &self.task_name
    }

    /// The periodic id.
    #[must_use]
    pub fn periodic_id(&self) -> &str {
        &self.periodic_id
    }

    /// The cron expression as registered.
    #[must_use]
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The parsed schedule (set once the app is built).
    #[must_use]
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The registration as `task[periodic_id]`, for messages.
    pub(crate) fn label(&self) -> String {
        if self.periodic_id.is_empty() {
            format!("periodic task {:?}", self.task_name)
        } else {
            format!(
                "periodic task {:?} (periodic_id {:?})",
                self.task_name, self.periodic_id
            )
        }
    }

    /// The fixed kwargs as a map, checked.
    pub(crate) fn kwargs_map(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let invalid =
            |message: String| Error::InvalidInput(format!("{}: kwargs {message}", self.label()));
        match &self.kwargs {
            Err(e) => Err(invalid(format!("do not serialise: {e}"))),
            Ok(serde_json::Value::Object(map)) if map.contains_key(TIMESTAMP_KWARG) => {
                Err(invalid(format!(
                    "set `{TIMESTAMP_KWARG}`, which the deferrer sets to the tick: remove it"
                )))
            }
            Ok(serde_json::Value::Object(map)) => Ok(map.clone()),
            Ok(other) => Err(invalid(format!(
                "are {}, not a JSON object of keyword arguments",
                crate::task::json_kind(other)
            ))),
        }
    }
}

impl App {
    /// The job one tick of a periodic registration defers: the task's defaults, the
    /// registration's options, its kwargs and `timestamp`.
    pub(crate) fn periodic_job(
        &self,
        periodic: &Periodic,
        timestamp: i64,
    ) -> Result<DeferJobParams> {
        let mut kwargs = periodic.kwargs_map()?;
        kwargs.insert(TIMESTAMP_KWARG.to_owned(), timestamp.into());
        let job = self
            .configure_by_name(&periodic.task_name, serde_json::Value::Object(kwargs))
            .with_options(periodic.options.clone());
        job.into_spec().map_err(|e| {
            Error::InvalidInput(format!(
                "{}: {e} (its jobs get the registration's kwargs and `timestamp`)",
                periodic.label()
            ))
        })
    }

    /// Defers one tick of a periodic registration, once across all workers: the job id,
    /// or `None` when the tick was deferred already or its queueing lock is taken.
    pub(crate) async fn defer_periodic_tick(
        &self,
        periodic: &Periodic,
        timestamp: i64,
    ) -> Result<Option<i64>> {
        let job = self.periodic_job(periodic, timestamp)?;
        match self
            .store()
            .defer_periodic_job(&job, &periodic.periodic_id, timestamp)
            .await
        {
            Ok(Some(id)) => {
                tracing::info!(task = %periodic.task_name, periodic_id = %periodic.periodic_id, timestamp, job_id = id, "periodic job deferred");
                Ok(Some(id))
            }
            Ok(None) => {
                tracing::debug!(task = %periodic.task_name, periodic_id = %periodic.periodic_id, timestamp, "periodic tick already deferred");
                Ok(None)
            }
            Err(Error::AlreadyEnqueued { queueing_lock }) => {
                tracing::debug!(task = %periodic.task_name, periodic_id = %periodic.periodic_id, timestamp, %queueing_lock, "periodic tick skipped: a job with its queueing lock is waiting");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Defers, for every periodic registration, its latest tick at or before `at` (unless
    /// older than the max delay, or deferred already by anyone): what a worker starting at
    /// `at` would do. Returns the ids of the jobs deferred. Useful in tests.
    ///
    /// # Errors
    /// A database error; ticks deferred before it stay deferred.
    pub async fn defer_periodic_jobs(&self, at: DateTime<Utc>) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        for periodic in self.periodic_tasks() {
            let Some(schedule) = &periodic.schedule else {
                continue;
            };
            for tick in schedule.due_ticks(None, at, self.periodic_max_delay()) {
                ids.extend(self.defer_periodic_tick(periodic, tick).await?);
            }
        }
        Ok(ids)
    }
}

/// Resolves periodic registrations to their task's registered name, parses their
/// schedules and refuses duplicates.
pub(crate) fn check_registrations(
    periodic: Vec<Periodic>,
    tasks: &HashMap<String, Arc<TaskEntry>>,
) -> Result<Vec<Periodic>> {
    let mut seen: Vec<(String, String)> = Vec::new();
    periodic
        .into_iter()
        .map(|mut p| {
            let entry = tasks.get(&p.task_name).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: no task is registered under that name: register it (with .task::<T>() on the same app or blueprint) or fix the name",
                    p.label()
                ))
            })?;
            p.task_name.clone_from(&entry.name);
            let key = (p.task_name.clone(), p.periodic_id.clone());
            if seen.contains(&key) {
                return Err(Error::InvalidInput(format!(
                    "{} is registered twice: give each schedule of a task its own periodic_id",
                    p.label()
                )));
            }
            seen.push(key);
            let schedule = Schedule::parse(&p.cron, p.timezone.as_deref())
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", p.label())))?;
            p.schedule = Some(schedule);
            Ok(p)
        })
        .collect()
}
