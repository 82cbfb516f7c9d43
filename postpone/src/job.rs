//! Jobs as stored in `procrastinate_jobs`: their status and their row.
//!
//! Status names and meanings are Procrastinate's (`procrastinate_job_status`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The error kind of a job rescued from a dead worker after it may have started (the
/// worker's heartbeat stopped while it ran): name it in a retry strategy's
/// `with_retry_on` to retry such jobs (also `postpone::retry::STALLED_ERROR_KIND`).
pub const STALLED_ERROR_KIND: &str = "Stalled";

/// The status of a job, as in `procrastinate_job_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to be fetched.
    Todo,
    /// Fetched by a worker, running.
    Doing,
    /// Ended successfully.
    Succeeded,
    /// Ended with an error (and no retry left).
    Failed,
    /// Cancelled before it started.
    Cancelled,
    /// Legacy status, unused since Procrastinate 3.0.
    Aborting,
    /// Aborted while running.
    Aborted,
}

impl JobStatus {
    /// Every status, in the enum's order.
    pub const ALL: [Self; 7] = [
        Self::Todo,
        Self::Doing,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Aborting,
        Self::Aborted,
    ];

    /// The name PostgreSQL uses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::Doing => "doing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Aborting => "aborting",
            Self::Aborted => "aborted",
        }
    }

    /// True for statuses a job never leaves by itself.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Aborted
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                crate::Error::InvalidInput(format!(
                    "unknown job status {s:?}: expected one of todo, doing, succeeded, failed, cancelled, aborting, aborted"
                ))
            })
    }
}

/// One row of `procrastinate_jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job id.
    pub id: i64,
    /// Its queue.
    pub queue_name: String,
    /// The task that runs it.
    pub task_name: String,
    /// Higher runs first.
    pub priority: i32,
    /// Jobs sharing a lock never run at the same time, and run in priority/id order.
    pub lock: Option<String>,
    /// At most one `todo` job per queueing lock.
    pub queueing_lock: Option<String>,
    /// The task's keyword arguments, a JSON object.
    pub args: serde_json::Value,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// Not fetched before this time.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// How many times it ran.
    pub attempts: i32,
    /// Someone asked for it to be aborted.
    pub abort_requested: bool,
    /// The worker running it, while it runs.
    pub worker_id: Option<i64>,
    /// The timeout its defer call set (`postpone_job_timeouts`), read when it is claimed;
    /// not a column of `procrastinate_jobs`. `None`: the task's, else the worker's applies.
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
    /// The W3C `traceparent` of the span that deferred it (`postpone_job_traces`), read
    /// when it is claimed; not a column of `procrastinate_jobs`.
    #[serde(skip)]
    pub trace_context: Option<String>,
}

/// Where and when a job runs: its queue, priority, lock, queueing lock and schedule, each
/// left unset (`None`) to take the value of the layer below.
///
/// One type for every layer that sets them, as overlays (River's `InsertOpts`): what a
/// defer call sets ([`crate::Configured`]) over a periodic registration's
/// ([`crate::Periodic`]) over the task's ([`crate::TaskConfig`]) over the defaults (queue
/// `"default"`, priority 0, no lock, now). A value equal to the default is still "set".
/// The `with_*` setters of those types all write into one of these, and the store's
/// `DeferJobParams` is these options resolved (`DeferJobParams::resolve`, where the
/// defaults live).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "options do nothing until a job is deferred with them"]
pub struct JobOptions {
    /// Queue.
    pub queue: Option<String>,
    /// Priority (higher runs first).
    pub priority: Option<i32>,
    /// Lock shared by jobs that must not run at the same time.
    pub lock: Option<String>,
    /// At most one waiting (`todo`) job per queueing lock.
    pub queueing_lock: Option<String>,
    /// Not run before this time.
    pub schedule_at: Option<DateTime<Utc>>,
    /// Not run before this delay from the moment the job is deferred.
    pub schedule_in: Option<std::time::Duration>,
    /// Aborted and failed (error kind `Timeout`, retried by its strategy) once it has run
    /// this long. A defer call's timeout is stored with the job; a task's applies when
    /// its jobs run (`docs/worker.md`).
    pub timeout: Option<std::time::Duration>,
}

impl JobOptions {
    /// These options, with every unset one taken from `under`. A schedule counts as one
    /// option: set in either form here, `under`'s is not taken.
    pub fn over(self, under: &Self) -> Self {
        let scheduled = self.schedule_at.is_some() || self.schedule_in.is_some();
        Self {
            queue: self.queue.or_else(|| under.queue.clone()),
            priority: self.priority.or(under.priority),
            lock: self.lock.or_else(|| under.lock.clone()),
            queueing_lock: self.queueing_lock.or_else(|| under.queueing_lock.clone()),
            schedule_at: if scheduled {
                self.schedule_at
            } else {
                under.schedule_at
            },
            schedule_in: if scheduled {
                self.schedule_in
            } else {
                under.schedule_in
            },
            timeout: self.timeout.or(under.timeout),
        }
    }
}

/// Writes the `with_*` setters of [`JobOptions`] for a type that keeps its options in a
/// field, so every type that sets them has the same setters, written once.
macro_rules! job_option_setters {
    ($($field:ident).*) => {
        /// Runs on this queue.
        pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
            self$(.$field)*.queue = Some(queue.into());
            self
        }

        /// Runs with this priority (higher first).
        pub fn with_priority(mut self, priority: i32) -> Self {
            self$(.$field)*.priority = Some(priority);
            self
        }

        /// Never runs while another job with this lock runs; jobs sharing a lock run in
        /// priority then id order.
        pub fn with_lock(mut self, lock: impl Into<String>) -> Self {
            self$(.$field)*.lock = Some(lock.into());
            self
        }

        /// Refused ([`crate::Error::AlreadyEnqueued`]) while another job with this
        /// queueing lock waits.
        pub fn with_queueing_lock(mut self, queueing_lock: impl Into<String>) -> Self {
            self$(.$field)*.queueing_lock = Some(queueing_lock.into());
            self
        }

        /// Not run before `at`.
        pub fn schedule_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
            self$(.$field)*.schedule_at = Some(at);
            self
        }

        /// Not run before `delay` from the moment the job is deferred.
        pub fn schedule_in(mut self, delay: std::time::Duration) -> Self {
            self$(.$field)*.schedule_in = Some(delay);
            self
        }

        /// Aborted and failed (error kind `Timeout`, then retried by its strategy) once it
        /// has run this long (more than 0, at most 30 days).
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self$(.$field)*.timeout = Some(timeout);
            self
        }
    };
}
pub(crate) use job_option_setters;

impl JobOptions {
    job_option_setters!();
}

/// Longest timeout accepted for a job.
pub const TIMEOUT_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Checks a timeout: more than 0, at most [`TIMEOUT_MAX`].
///
/// # Errors
/// [`crate::Error::InvalidInput`] naming `what` and the accepted range.
pub(crate) fn check_timeout(what: &str, timeout: std::time::Duration) -> crate::Result<()> {
    if timeout.is_zero() || timeout > TIMEOUT_MAX {
        return Err(crate::Error::InvalidInput(format!(
            "{what} timeout is {timeout:?}: give a duration above 0 and at most 30 days"
        )));
    }
    Ok(())
}

/// When and how a job runs again: Procrastinate's `RetryDecision`, and the arguments of
/// `procrastinate_retry_job_v2`. One type for what a task's retry policy decides
/// (`postpone::retry::Retry`), what a person asks
/// ([`crate::JobManager::retry_job_by_id`]) and what the store writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryDecision {
    /// Not before this time; `None` means now.
    pub retry_at: Option<DateTime<Utc>>,
    /// New priority, if it changes.
    pub priority: Option<i32>,
    /// New queue, if it changes.
    pub queue: Option<String>,
    /// New lock, if it changes.
    pub lock: Option<String>,
}

impl RetryDecision {
    /// Retry after `delay` from now.
    #[must_use]
    pub fn retry_in(delay: std::time::Duration) -> Self {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        Self {
            retry_at: Utc::now().checked_add_signed(delay),
            ..Self::default()
        }
    }

    /// Retry at `at`.
    #[must_use]
    pub fn retry_at(at: DateTime<Utc>) -> Self {
        Self {
            retry_at: Some(at),
            ..Self::default()
        }
    }

    /// Also change the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Also move the job to another queue.
    #[must_use]
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Also change the lock.
    #[must_use]
    pub fn with_lock(mut self, lock: impl Into<String>) -> Self {
        self.lock = Some(lock.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_overlay_keeps_what_is_set() {
        let task = JobOptions::default()
            .with_queue("emails")
            .with_priority(5)
            .with_lock("l")
            .schedule_in(std::time::Duration::from_secs(60));
        let call = JobOptions::default()
            .with_priority(0)
            .schedule_at(DateTime::<Utc>::UNIX_EPOCH);
        let resolved = call.over(&task);
        assert_eq!(resolved.queue.as_deref(), Some("emails"));
        assert_eq!(
            resolved.priority,
            Some(0),
            "a value equal to the default is set"
        );
        assert_eq!(resolved.lock.as_deref(), Some("l"));
        assert_eq!(resolved.schedule_at, Some(DateTime::<Utc>::UNIX_EPOCH));
        assert_eq!(
            resolved.schedule_in, None,
            "one schedule: the upper layer's"
        );
    }
}
