//! What Postpone shares with Procrastinate (Python) on the wire: channel names, NOTIFY
//! payloads, status names and name limits.
//!
//! Corresponds to `procrastinate/sql/schema.sql` (the notify trigger functions) and
//! `procrastinate/jobs.py`. Nothing here may change without breaking mixed fleets.

use serde::{Deserialize, Serialize};

/// The channel every `job_inserted` and `abort_job_requested` notification goes to.
pub const ANY_QUEUE_CHANNEL: &str = "procrastinate_any_queue_v1";

/// Postpone's own channel (Python never listens to it): pausing or resuming a queue
/// notifies it (`postpone_queue_pauses`, schema migration 0004), and every Postpone worker
/// listens to it besides Procrastinate's channels.
pub const PAUSES_CHANNEL: &str = "postpone_queue_pauses_v1";

/// Postpone's own channel (Python never listens to it): the `finish_jobs` statement that
/// writes the end of a job someone waits for (`postpone_job_waiters`, schema migration
/// 0007) notifies it with [`Notification::JobFinished`]; only waiting handles listen.
pub const JOB_FINISHED_CHANNEL: &str = "postpone_job_finished_v1";

/// Postpone's own channel (Python never listens to it): `defer_workflow` notifies it with
/// [`Notification::WorkflowDeferred`] (schema migration 0009), so that every listening
/// worker's finish statements record workflow nodes from then on (see
/// `store/postgres/queries/finish_jobs.sql`).
pub const WORKFLOWS_CHANNEL: &str = "postpone_workflows_v1";

/// The queue used when a task names none (Procrastinate's `DEFAULT_QUEUE`).
pub const DEFAULT_QUEUE: &str = "default";

/// Longest queue or task name the schema accepts (`character varying(128)`).
pub const MAX_NAME_LEN: usize = 128;

/// Prefix of the per-queue channel.
const QUEUE_CHANNEL_PREFIX: &str = "procrastinate_queue_v1#";

/// Longest queue name, in bytes, that can still be notified: PostgreSQL limits channel
/// names to 63 bytes and the channel is `procrastinate_queue_v1#<queue>`. The column takes
/// 128 characters, but inserting a `todo` job with a longer queue fails in the database's
/// NOTIFY trigger (in Python too), so we refuse it first, with a message.
pub const MAX_QUEUE_BYTES: usize = 63 - QUEUE_CHANNEL_PREFIX.len();

/// The per-queue channel: `procrastinate_queue_v1#<queue>`.
#[must_use]
pub fn queue_channel(queue: &str) -> String {
    format!("{QUEUE_CHANNEL_PREFIX}{queue}")
}

/// A NOTIFY payload sent by the schema's triggers (and, on [`PAUSES_CHANNEL`], by pausing
/// or resuming a queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notification {
    /// A `todo` job was inserted.
    JobInserted {
        /// Its id.
        job_id: i64,
    },
    /// Abort was requested for a `doing` job.
    AbortJobRequested {
        /// Its id.
        job_id: i64,
    },
    /// A queue was paused or resumed (Postpone's own, on [`PAUSES_CHANNEL`]): read the
    /// paused queues again.
    QueuePausesChanged,
    /// A job someone waits for has its end written (Postpone's own, on
    /// [`JOB_FINISHED_CHANNEL`]): read it.
    JobFinished {
        /// Its id.
        job_id: i64,
    },
    /// A workflow was deferred, its first nodes released (Postpone's own, on
    /// [`WORKFLOWS_CHANNEL`]).
    WorkflowDeferred {
        /// Its id.
        workflow_id: i64,
    },
}

impl Notification {
    /// Parses a payload; `None` for anything this version does not understand.
    #[must_use]
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

/// Checks a queue or task name: not empty, at most [`MAX_NAME_LEN`] characters.
///
/// # Errors
/// [`crate::Error::InvalidInput`] naming `what` and the limit.
pub fn check_name(what: &str, name: &str) -> crate::Result<()> {
    if name.is_empty() {
        return Err(crate::Error::InvalidInput(format!(
            "{what} name is empty: give a non-empty name"
        )));
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(crate::Error::InvalidInput(format!(
            "{what} name {:?}... is {len} characters long: the limit is {MAX_NAME_LEN}",
            name.chars().take(32).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks a queue name: as [`check_name`], and at most [`MAX_QUEUE_BYTES`] bytes.
///
/// # Errors
/// [`crate::Error::InvalidInput`] saying which limit and why.
pub fn check_queue_name(queue: &str) -> crate::Result<()> {
    check_name("queue", queue)?;
    if queue.len() > MAX_QUEUE_BYTES {
        return Err(crate::Error::InvalidInput(format!(
            "queue name {queue:?} is {} bytes long: at most {MAX_QUEUE_BYTES} fit, because PostgreSQL limits its NOTIFY channel ({QUEUE_CHANNEL_PREFIX}<queue>) to 63 bytes",
            queue.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_match_the_triggers() {
        assert_eq!(
            Notification::parse(r#"{"type": "job_inserted", "job_id": 12}"#),
            Some(Notification::JobInserted { job_id: 12 })
        );
        assert_eq!(
            Notification::parse(r#"{"type" : "abort_job_requested", "job_id" : 3}"#),
            Some(Notification::AbortJobRequested { job_id: 3 })
        );
        assert_eq!(
            Notification::parse(r#"{"type": "queue_pauses_changed"}"#),
            Some(Notification::QueuePausesChanged)
        );
        assert_eq!(
            Notification::parse(r#"{"type": "job_finished", "job_id": 7}"#),
            Some(Notification::JobFinished { job_id: 7 })
        );
        assert_eq!(
            Notification::parse(r#"{"type" : "workflow_deferred", "workflow_id" : 4}"#),
            Some(Notification::WorkflowDeferred { workflow_id: 4 })
        );
        // The payload the pause and resume statements send.
        let sql = include_str!("store/postgres/queries/pause_queue.sql");
        assert!(sql.contains(&format!(
            "pg_notify('{PAUSES_CHANNEL}', '{{\"type\": \"queue_pauses_changed\"}}')"
        )));
        assert_eq!(Notification::parse(r#"{"type": "other"}"#), None);
        assert_eq!(queue_channel("emails"), "procrastinate_queue_v1#emails");
    }

    #[test]
    fn names_are_limited() {
        assert!(check_name("queue", "a").is_ok());
        assert!(check_name("queue", &"é".repeat(128)).is_ok());
        let err = check_name("queue", &"q".repeat(129))
            .unwrap_err()
            .to_string();
        assert!(err.contains("129 characters"), "{err}");
        assert!(check_name("task", "").is_err());
        assert!(check_queue_name(&"q".repeat(40)).is_ok());
        let err = check_queue_name(&"q".repeat(41)).unwrap_err().to_string();
        assert!(
            err.contains("41 bytes") && err.contains("63 bytes"),
            "{err}"
        );
        assert_eq!(MAX_QUEUE_BYTES, 40);
    }
}
