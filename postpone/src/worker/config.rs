//! Worker settings (Procrastinate's `run_worker` arguments), validated before start.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::check_queue_name;
use crate::{Error, Result};

/// Jobs run at once unless told otherwise (Procrastinate's default is 1).
pub const CONCURRENCY_DEFAULT: usize = 1;
/// Most jobs one worker may run at once.
pub const CONCURRENCY_MAX: usize = 10_000;
/// Most jobs a worker claims beyond its free slots unless told otherwise (its local
/// queue; how many it claims depends on how long its jobs take: see `docs/worker.md`).
pub const PREFETCH_DEFAULT: usize = 400;
/// Largest prefetch accepted.
pub const PREFETCH_MAX: usize = 10_000;
/// Polling for new jobs when no notification came (seconds).
pub const FETCH_JOB_POLLING_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Polling for abort requests of running jobs.
pub const ABORT_JOB_POLLING_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Heartbeat period.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// A worker silent for this long is stalled.
pub const STALLED_WORKER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How often a worker rescues the jobs of dead workers.
pub const RESCUE_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Longest interval accepted for any of the periods above.
pub const INTERVAL_MAX: Duration = Duration::from_secs(24 * 3600);

/// Which finished jobs a worker deletes (Procrastinate's `delete_jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteJobs {
    /// Keep every job (default).
    #[default]
    Never,
    /// Delete jobs that succeeded.
    Successful,
    /// Delete every finished job.
    Always,
}

impl std::str::FromStr for DeleteJobs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "never" => Ok(Self::Never),
            "successful" => Ok(Self::Successful),
            "always" => Ok(Self::Always),
            other => Err(Error::InvalidInput(format!(
                "delete_jobs is {other:?}: expected never, successful or always"
            ))),
        }
    }
}

/// How a worker runs.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Its name, in logs and [`crate::task::JobContext::worker_name`] (default `worker`).
    pub name: Option<String>,
    /// Queues to take jobs from (`None`: all).
    pub queues: Option<Vec<String>>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Keep waiting for jobs (`true`), or stop once no job is left (one-shot).
    pub wait: bool,
    /// Wake on LISTEN/NOTIFY; polling alone when false.
    pub listen_notify: bool,
    /// Fetch at least this often when no notification comes.
    pub fetch_job_polling_interval: Duration,
    /// Look for abort requests of running jobs this often.
    pub abort_job_polling_interval: Duration,
    /// On stop, wait this long for running jobs before aborting them (`None`: wait).
    pub shutdown_graceful_timeout: Option<Duration>,
    /// Which finished jobs to delete.
    pub delete_jobs: DeleteJobs,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Workers silent for this long are dead: their jobs are rescued and their rows
    /// removed (pruned at start only when `rescue` is off).
    pub stalled_worker_timeout: Duration,
    /// Rescue the jobs of dead workers, Rust or Python, at start and every
    /// `rescue_interval`: never started ones back to `todo`, started ones retried by their
    /// strategy or failed (default true; one worker at a time does it).
    pub rescue: bool,
    /// How often to rescue.
    pub rescue_interval: Duration,
    /// A value every task can read with [`crate::task::JobContext::additional_context`].
    pub additional_context: Option<Arc<dyn Any + Send + Sync>>,
    /// First SIGINT/SIGTERM stops gracefully, the second aborts (used by `run_worker`).
    pub install_signal_handlers: bool,
    /// Write this worker's claims and outcomes with `synchronous_commit = off` (its own
    /// connections only; deferring is unaffected). Measured here: 1.3-1.4x the drain
    /// throughput. The price: after a PostgreSQL crash (not a worker crash) the last
    /// moments of claims and outcomes may be lost, so those jobs are claimed again or found
    /// stalled; none is lost, some may run twice. Default off.
    pub asynchronous_commit: bool,
    /// Middleware around every attempt (outside each task's own).
    pub middleware: Vec<Arc<dyn crate::middleware::Middleware>>,
    /// Run the periodic deferrer for the app's periodic tasks (default true, as every
    /// Procrastinate worker does; the database keeps each tick to one job).
    pub periodic: bool,
    /// Most jobs claimed beyond the free slots, waiting in the worker's local queue until
    /// a slot frees (`None`: [`PREFETCH_DEFAULT`]; `Some(0)`: claim only for free slots).
    /// The worker claims fewer when its jobs take long: only what its slots start within
    /// 100 ms at the pace of recent attempts. Jobs still waiting when it stops go back to
    /// `todo`.
    pub prefetch: Option<usize>,
    /// Longest an attempt may run when neither its defer call nor its task set a timeout
    /// (`None`: no limit). Past it the attempt is aborted and fails with error kind
    /// `Timeout`, then its task's retry strategy decides (`docs/worker.md`).
    pub task_timeout: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: None,
            queues: None,
            concurrency: CONCURRENCY_DEFAULT,
            wait: true,
            listen_notify: true,
            fetch_job_polling_interval: FETCH_JOB_POLLING_INTERVAL_DEFAULT,
            abort_job_polling_interval: ABORT_JOB_POLLING_INTERVAL_DEFAULT,
            shutdown_graceful_timeout: None,
            delete_jobs: DeleteJobs::Never,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            stalled_worker_timeout: STALLED_WORKER_TIMEOUT_DEFAULT,
            rescue: true,
            rescue_interval: RESCUE_INTERVAL_DEFAULT,
            additional_context: None,
            install_signal_handlers: false,
            asynchronous_commit: false,
            middleware: Vec::new(),
            periodic: true,
            prefetch: None,
            task_timeout: None,
        }
    }
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("name", &self.name)
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
            .field("wait", &self.wait)
            .field("listen_notify", &self.listen_notify)
            .field(
                "fetch_job_polling_interval",
                &self.fetch_job_polling_interval,
            )
            .field(
                "abort_job_polling_interval",
                &self.abort_job_polling_interval,
            )
            .field("shutdown_graceful_timeout", &self.shutdown_graceful_timeout)
            .field("delete_jobs", &self.delete_jobs)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("stalled_worker_timeout", &self.stalled_worker_timeout)
            .field("rescue", &self.rescue)
            .field("rescue_interval", &self.rescue_interval)
            .field("asynchronous_commit", &self.asynchronous_commit)
            .field("middleware", &self.middleware.len())
            .field("periodic", &self.periodic)
            .field("prefetch", &self.prefetch)
            .field("task_timeout", &self.task_timeout)
            .finish_non_exhaustive()
    }
}

fn check_interval(what: &str, value: Duration) -> Result<()> {
    if value.is_zero() || value > INTERVAL_MAX {
        return Err(Error::InvalidInput(format!(
            "{what} is {value:?}: give a duration above 0 and at most 24 hours"
        )));
    }
    Ok(())
}

impl WorkerConfig {
    /// Most jobs claimed beyond the free slots.
    pub(crate) fn prefetch(&self) -> usize {
        self.prefetch.unwrap_or(PREFETCH_DEFAULT)
    }

    /// Sets the concurrency.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the queues.
    #[must_use]
    pub fn with_queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// One-shot: stop once no job is left.
    #[must_use]
    pub fn one_shot(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Checks every setting; nothing starts with a bad one.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the setting and the accepted range.
    pub fn validate(&self) -> Result<()> {
        if self.concurrency == 0 || self.concurrency > CONCURRENCY_MAX {
            return Err(Error::InvalidInput(format!(
                "concurrency is {}: give a number from 1 to {CONCURRENCY_MAX}",
                self.concurrency
            )));
        }
        if self.prefetch.is_some_and(|p| p > PREFETCH_MAX) {
            return Err(Error::InvalidInput(format!(
                "prefetch is {}: give a number from 0 to {PREFETCH_MAX}",
                self.prefetch.unwrap_or_default()
            )));
        }
        check_interval(
            "fetch_job_polling_interval",
            self.fetch_job_polling_interval,
        )?;
        check_interval(
            "abort_job_polling_interval",
            self.abort_job_polling_interval,
        )?;
        check_interval("heartbeat_interval", self.heartbeat_interval)?;
        check_interval("stalled_worker_timeout", self.stalled_worker_timeout)?;
        check_interval("rescue_interval", self.rescue_interval)?;
        if let Some(timeout) = self.shutdown_graceful_timeout {
            if timeout > INTERVAL_MAX {
                return Err(Error::InvalidInput(format!(
                    "shutdown_graceful_timeout is {timeout:?}: give at most 24 hours"
                )));
            }
        }
        if let Some(timeout) = self.task_timeout {
            crate::job::check_timeout("the worker's task", timeout)?;
        }
        if self.stalled_worker_timeout <= self.heartbeat_interval {
            return Err(Error::InvalidInput(format!(
                "stalled_worker_timeout ({:?}) must be longer than heartbeat_interval ({:?}), or live workers look stalled",
                self.stalled_worker_timeout, self.heartbeat_interval
            )));
        }
        if let Some(queues) = &self.queues {
            if queues.is_empty() {
                return Err(Error::InvalidInput(
                    "the queue list is empty: name at least one queue, or none for all queues"
                        .to_owned(),
                ));
            }
            for queue in queues {
                check_queue_name(queue)?;
            }
        }
        if let Some(name) = &self.name {
            if name.is_empty() {
                return Err(Error::InvalidInput("worker name is empty".to_owned()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let err = |c: WorkerConfig| c.validate().unwrap_err().to_string();
        assert!(err(WorkerConfig::default().with_concurrency(0)).contains("concurrency is 0"));
        assert!(err(WorkerConfig::default().with_concurrency(1_000_000)).contains("concurrency"));
        let c = WorkerConfig {
            fetch_job_polling_interval: Duration::ZERO,
            ..WorkerConfig::default()
        };
        assert!(err(c).contains("fetch_job_polling_interval"));
        let c = WorkerConfig {
            heartbeat_interval: Duration::from_secs(3600 * 48),
            ..WorkerConfig::default()
        };
        assert!(err(c).contains("heartbeat_interval"));
        let c = WorkerConfig {
            stalled_worker_timeout: Duration::from_secs(5),
            ..WorkerConfig::default()
        };
        assert!(err(c).contains("stalled_worker_timeout"));
        let c = WorkerConfig {
            rescue_interval: Duration::ZERO,
            ..WorkerConfig::default()
        };
        assert!(err(c).contains("rescue_interval"));
        assert!(err(WorkerConfig::default().with_queues(["q".repeat(200)])).contains("200"));
        let c = WorkerConfig {
            prefetch: Some(PREFETCH_MAX + 1),
            ..WorkerConfig::default()
        };
        assert!(err(c).contains("prefetch"));
        assert!(WorkerConfig::default().validate().is_ok());
    }
}
