//! Job events, recorded by the rules of the schema's triggers.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::JobStatus;

/// What happened to a job (`procrastinate_job_event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Inserted as todo.
    Deferred,
    /// todo -> doing.
    Started,
    /// doing -> todo.
    DeferredForRetry,
    /// doing -> failed.
    Failed,
    /// doing -> succeeded.
    Succeeded,
    /// todo -> cancelled (or finished without running).
    Cancelled,
    /// The abort request flag was raised.
    AbortRequested,
    /// doing -> aborted.
    Aborted,
    /// Written as todo with a `scheduled_at` (at that time).
    Scheduled,
    /// failed -> todo (manual retry).
    Retried,
}

impl EventType {
    /// Every event type, in the enum's order.
    pub const ALL: [Self; 10] = [
        Self::Deferred,
        Self::Started,
        Self::DeferredForRetry,
        Self::Failed,
        Self::Succeeded,
        Self::Cancelled,
        Self::AbortRequested,
        Self::Aborted,
        Self::Scheduled,
        Self::Retried,
    ];

    /// The name PostgreSQL uses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deferred => "deferred",
            Self::Started => "started",
            Self::DeferredForRetry => "deferred_for_retry",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
            Self::AbortRequested => "abort_requested",
            Self::Aborted => "aborted",
            Self::Scheduled => "scheduled",
            Self::Retried => "retried",
        }
    }

    /// The event a status change stands for
    /// (`procrastinate_trigger_function_status_events_update_v1`).
    pub(super) const fn for_change(old: JobStatus, new: JobStatus) -> Option<Self> {
        use JobStatus as S;
        match (old, new) {
            (S::Todo, S::Doing) => Some(Self::Started),
            (S::Todo, S::Cancelled | S::Failed | S::Succeeded) => Some(Self::Cancelled),
            (S::Doing, S::Todo) => Some(Self::DeferredForRetry),
            (S::Doing, S::Failed) => Some(Self::Failed),
            (S::Doing, S::Succeeded) => Some(Self::Succeeded),
            (S::Doing, S::Aborted) => Some(Self::Aborted),
            (S::Failed, S::Todo) => Some(Self::Retried),
            _ => None,
        }
    }
}

impl std::str::FromStr for EventType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| crate::Error::InvalidInput(format!("unknown event type {s:?}")))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `procrastinate_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    /// Increasing from 1.
    pub id: i64,
    /// The job.
    pub job_id: i64,
    /// What happened.
    pub event_type: EventType,
    /// When (for `scheduled`: the time the job is scheduled for).
    pub at: DateTime<Utc>,
}
