//! The entry point: an [`App`] knows its tasks and its store (Procrastinate's `App`).
//!
//! Build one with [`App::builder`]: register tasks (alone or in [`Blueprint`]s) and
//! periodic schedules, say where the database is, `build()`. Building checks the whole
//! registry (names, aliases, duplicates, namespaces, cron expressions, time zones,
//! periodic ids and kwargs) and touches no database; the first query does. Every app also
//! has the builtin tasks ([`crate::builtin`]). An `App` is cheap to clone and share.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::any::Any;

use crate::blueprint::Blueprint;
use crate::connect::ConnectConfig;
use crate::manager::JobManager;
use crate::periodic::{MAX_DELAY_DEFAULT, Periodic};
use crate::protocol::{check_name, check_queue_name};
use crate::schema::{ApplyReport, ApplyScope};
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::task::{Task, TaskEntry};
use crate::telemetry::{Subscriber, Telemetry};
use crate::{Error, Result};

/// Connections kept by an app's pool unless told otherwise.
pub const POOL_SIZE_DEFAULT: usize = 10;

/// The largest [`AppBuilder::result_size_limit`]: PostgreSQL keeps at most 1 GiB in a value.
const RESULT_SIZE_LIMIT_MAX: usize = 1 << 30;

/// A task queue application: its tasks, and the store its jobs live in.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    store: Arc<dyn Store>,
    /// Task names and aliases to their entry.
    tasks: HashMap<String, Arc<TaskEntry>>,
    /// Registered task names (not aliases), sorted.
    task_names: Vec<String>,
    /// Periodic registrations, with their task's registered name and parsed schedule.
    periodic: Vec<Periodic>,
    periodic_max_delay: Duration,
    telemetry: Telemetry,
    /// The longest result a task may set, in bytes of JSON.
    result_size_limit: usize,
    /// The link announcing job ends, shared by the app's waiting handles while one waits.
    finish_link: crate::result::SharedFinishLink,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("store", &self.inner.store)
            .field("tasks", &self.inner.task_names)
            .field("periodic", &self.inner.periodic)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The longest result a task may set, in bytes of JSON
    /// ([`AppBuilder::result_size_limit`]).
    #[must_use]
    pub fn result_size_limit(&self) -> usize {
        self.inner.result_size_limit
    }

    /// The link announcing job ends that this app's waiting handles share.
    pub(crate) fn finish_link(&self) -> &crate::result::SharedFinishLink {
        &self.inner.finish_link
    }

    /// Starts building an app.
    #[must_use]
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// The store jobs live in.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The PostgreSQL store, when the app runs on PostgreSQL.
    #[must_use]
    pub fn pg(&self) -> Option<&PgStore> {
        let store: &dyn Any = self.inner.store.as_ref();
        store.downcast_ref::<PgStore>()
    }

    /// Where the app connects, when it runs on PostgreSQL.
    #[must_use]
    pub fn connect_config(&self) -> Option<&ConnectConfig> {
        self.pg().map(PgStore::connect_config)
    }

    /// The job manager: status, lists, cancel, retry, stalled jobs, cleanup.
    #[must_use]
    pub fn job_manager(&self) -> JobManager {
        JobManager::new(self.inner.store.clone())
    }

    /// The subscribers to its workers' events ([`AppBuilder::subscribe`]).
    #[must_use]
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Registered task names (aliases left out), sorted.
    #[must_use]
    pub fn task_names(&self) -> &[String] {
        &self.inner.task_names
    }

    /// The task registered under this name or alias.
    pub(crate) fn task(&self, name: &str) -> Option<&Arc<TaskEntry>> {
        self.inner.tasks.get(name)
    }

    /// Periodic registrations (task names as registered, namespaces included).
    pub fn periodic_tasks(&self) -> &[Periodic] {
        &self.inner.periodic
    }

    /// Ticks older than this are not deferred (see [`AppBuilder::periodic_max_delay`]).
    #[must_use]
    pub fn periodic_max_delay(&self) -> Duration {
        self.inner.periodic_max_delay
    }

    /// Checks the database schema is installed and current; returns its version (a
    /// worker checks it too before it starts).
    ///
    /// # Errors
    /// [`Error::SchemaMissing`], [`Error::SchemaOutdated`], [`Error::SchemaTooNew`], or a
    /// connection error naming where it tried.
    pub async fn check_schema(&self) -> Result<String> {
        self.inner.store.check_schema().await
    }

    /// Installs or upgrades the schema from code: applies this build's pending migrations
    /// in `scope` (as `postpone schema apply [--pre|--post]`), each in its own
    /// transaction, under a lock, so running it from every process at start is safe.
    /// A database set up by Procrastinate is adopted, not recreated. `ApplyScope::All`
    /// suits a new database or a deploy that stops every worker; see `docs/schema.md`
    /// for zero-downtime deploys.
    ///
    /// ```no_run
    /// # async fn f(app: postpone::App) -> postpone::Result<()> {
    /// use postpone::schema::ApplyScope;
    /// let report = app.apply_schema(ApplyScope::All).await?;
    /// print!("{report}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::SchemaTooNew`], [`Error::ProcrastinateSchemaTooOld`],
    /// [`Error::MigrationFailed`] (rolled back), or a connection error.
    pub async fn apply_schema(&self, scope: ApplyScope) -> Result<ApplyReport> {
        self.inner.store.apply_schema(scope).await
    }
}

/// Builds an [`App`].
#[derive(Default)]
pub struct AppBuilder {
    root: Blueprint,
    periodic_max_delay: Option<Duration>,
    connect: Option<ConnectConfig>,
    pool_size: Option<usize>,
    poll_only: Option<bool>,
    result_size_limit: Option<usize>,
    store: Option<Arc<dyn Store>>,
    subscribers: Vec<Arc<dyn Subscriber>>,
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("registry", &self.root)
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// Registers a task.
    #[must_use]
    pub fn task<T: Task>(mut self) -> Self {
        self.root = self.root.task::<T>();
        self
    }

    /// Registers a periodic schedule for a task (checked by [`Self::build`]).
    #[must_use]
    pub fn periodic(mut self, periodic: Periodic) -> Self {
        self.root = self.root.periodic(periodic);
        self
    }

    /// Adds a blueprint's tasks and periodic schedules under `namespace`
    /// (`namespace:task`).
    #[must_use]
    pub fn blueprint(mut self, namespace: impl Into<String>, blueprint: Blueprint) -> Self {
        self.root = self.root.blueprint(namespace, blueprint);
        self
    }

    /// Periodic ticks older than this are skipped, at start-up or after an outage
    /// (default [`MAX_DELAY_DEFAULT`], 10 minutes, as Procrastinate).
    #[must_use]
    pub fn periodic_max_delay(mut self, max_delay: Duration) -> Self {
        self.periodic_max_delay = Some(max_delay);
        self
    }

    /// Connects to this database (a URL or `key=value` conninfo) when jobs are first used.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the URL does not parse.
    pub fn database_url(mut self, url: &str) -> Result<Self> {
        self.connect = Some(ConnectConfig::parse(url)?);
        Ok(self)
    }

    /// Connects as `config` says.
    #[must_use]
    pub fn connect(mut self, config: ConnectConfig) -> Self {
        self.connect = Some(config);
        self
    }

    /// Keeps at most this many connections (default [`POOL_SIZE_DEFAULT`]).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// Connects in poll-only mode (`on`) or not, whatever the connection configuration
    /// says: for PgBouncer in transaction mode ([`ConnectConfig::with_poll_only`]). Without
    /// this call, the configuration decides (off by default).
    #[must_use]
    pub fn poll_only(mut self, on: bool) -> Self {
        self.poll_only = Some(on);
        self
    }

    /// The longest result a task may set ([`JobContext::set_result`](crate::task::JobContext::set_result)),
    /// in bytes of JSON (default [`RESULT_SIZE_LIMIT_DEFAULT`](crate::result::RESULT_SIZE_LIMIT_DEFAULT),
    /// 1 MiB): a longer one fails its attempt with the error kind `ResultTooLarge`.
    /// Checked by [`Self::build`]: not 0, at most 1 GiB (PostgreSQL's limit for a value).
    #[must_use]
    pub fn result_size_limit(mut self, bytes: usize) -> Self {
        self.result_size_limit = Some(bytes);
        self
    }

    /// Hands every event of this app's workers (claims, starts, outcomes, batches written,
    /// rescues, reconnections, database errors) to `subscriber`, after the ones added
    /// before: see [`crate::telemetry`].
    #[must_use]
    pub fn subscribe(mut self, subscriber: Arc<dyn Subscriber>) -> Self {
        self.subscribers.push(subscriber);
        self
    }

    /// Uses this store instead of PostgreSQL.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Checks the registry and builds the app. Without a database URL, connects as
    /// [`ConnectConfig::resolve`] says (`DATABASE_URL`, libpq variables, local server).
    ///
    /// # Errors
    /// [`Error::InvalidInput`], before anything runs, for: a task name or alias that is
    /// empty, too long, or registered twice; a blueprint namespace added twice, or taken by
    /// the builtin tasks; a periodic registration for an unknown task, with an invalid cron
    /// expression (the message names the field), an unknown time zone, a periodic id used
    /// twice for one task, or kwargs the task's type does not accept.
    pub fn build(self) -> Result<App> {
        let (entries, periodic) = self.root.flatten_root()?;
        let mut tasks: HashMap<String, Arc<TaskEntry>> = HashMap::new();
        let mut task_names = Vec::new();
        for entry in entries {
            check_name("task", &entry.name)?;
            let entry = Arc::new(entry);
            let names = std::iter::once(&entry.name).chain(entry.config.aliases.iter());
            for name in names {
                check_name("task", name)?;
                if let Some(previous) = tasks.insert(name.clone(), entry.clone()) {
                    return Err(Error::InvalidInput(format!(
                        "task name {name:?} is registered twice (by {:?} and {:?}): give each task its own name and aliases",
                        previous.name, entry.name
                    )));
                }
            }
            if let Some(queue) = &entry.config.options.queue {
                check_queue_name(queue)?;
            }
            if let Some(timeout) = entry.config.options.timeout {
                crate::job::check_timeout(&format!("task {:?}'s", entry.name), timeout)?;
            }
            task_names.push(entry.name.clone());
        }
        task_names.sort();
        let result_size_limit = self
            .result_size_limit
            .unwrap_or(crate::result::RESULT_SIZE_LIMIT_DEFAULT);
        if result_size_limit == 0 || result_size_limit > RESULT_SIZE_LIMIT_MAX {
            return Err(Error::InvalidInput(format!(
                "result_size_limit of {result_size_limit} bytes is out of range: give 1 to {RESULT_SIZE_LIMIT_MAX} bytes (PostgreSQL keeps at most 1 GiB in a value)"
            )));
        }
        let periodic = crate::periodic::check_registrations(periodic, &tasks)?;
        let store: Arc<dyn Store> = match (self.store, self.connect) {
            (Some(_), Some(connect)) => {
                return Err(Error::InvalidInput(format!(
                    "the app was given both a store and a database ({}): give one of them",
                    connect.target()
                )));
            }
            (Some(store), None) => store,
            (None, connect) => {
                let mut connect = match connect {
                    Some(connect) => connect,
                    None => ConnectConfig::resolve(None)?,
                };
                if let Some(on) = self.poll_only {
                    connect = connect.with_poll_only(on);
                }
                let pool_size = self.pool_size.unwrap_or(POOL_SIZE_DEFAULT);
                Arc::new(PgStore::new(connect, pool_size)?)
            }
        };
        let app = App {
            inner: Arc::new(AppInner {
                store,
                tasks,
                task_names,
                periodic,
                periodic_max_delay: self.periodic_max_delay.unwrap_or(MAX_DELAY_DEFAULT),
                telemetry: Telemetry::new(self.subscribers),
                result_size_limit,
                finish_link: crate::result::SharedFinishLink::default(),
            }),
        };
        // Each registration must make a valid job (queue, lock and kwargs included).
        for periodic in app.periodic_tasks() {
            app.periodic_job(periodic, 0)?;
        }
        Ok(app)
    }
}
