//! Jobs as stored in `procrastinate_jobs`: their status and their row.
//!
//! Status names and meanings are Procrastinate's (`procrastinate_job_status`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
}
