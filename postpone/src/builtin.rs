//! Tasks every app has (Procrastinate's `procrastinate.builtin_tasks`).
//!
//! [`RemoveOldJobs`] is registered under Procrastinate's name
//! `builtin:procrastinate.builtin_tasks.remove_old_jobs` and its alias
//! `procrastinate.builtin_tasks.remove_old_jobs`, in the `builtin` queue, so a job deferred
//! by Python (or by `postpone defer`) runs on a Rust worker listening to that queue, and
//! the reverse. Schedule it like any task:
//!
//! ```
//! use postpone::{App, builtin::RemoveOldJobs, periodic::Periodic};
//!
//! # fn main() -> postpone::Result<()> {
//! let app = App::builder()
//!     .periodic(
//!         Periodic::new::<RemoveOldJobs>("0 3 * * *")
//!             .with_kwargs(serde_json::json!({"max_hours": 72, "remove_failed": true})),
//!     )
//!     .database_url("postgres:///app")?
//!     .build()?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::manager::DeleteOldJobsOptions;
use crate::task::{JobContext, Task, TaskConfig, TaskError};

/// The namespace of the builtin tasks.
pub const NAMESPACE: &str = "builtin";

/// Whether a task name is one of the builtin tasks (`builtin:...`).
#[must_use]
pub fn is_builtin(task_name: &str) -> bool {
    task_name
        .strip_prefix(NAMESPACE)
        .is_some_and(|rest| rest.starts_with(':'))
}

/// The builtin queue.
pub const QUEUE: &str = "builtin";

/// Deletes finished jobs older than `max_hours` (and their events): succeeded ones, and
/// failed, cancelled or aborted ones when asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoveOldJobs {
    /// Jobs whose last event is older than this many hours.
    pub max_hours: u32,
    /// Only this queue (all when absent).
    #[serde(default)]
    pub queue: Option<String>,
    /// Also failed jobs.
    #[serde(default)]
    pub remove_failed: Option<bool>,
    /// Also cancelled jobs.
    #[serde(default)]
    pub remove_cancelled: Option<bool>,
    /// Also aborted jobs.
    #[serde(default)]
    pub remove_aborted: Option<bool>,
}

/// The name inside the builtin blueprint (Procrastinate's module path).
pub(crate) const REMOVE_OLD_JOBS_NAME: &str = "procrastinate.builtin_tasks.remove_old_jobs";

impl Task for RemoveOldJobs {
    /// `builtin:procrastinate.builtin_tasks.remove_old_jobs`, as in Procrastinate.
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{NAMESPACE}:{REMOVE_OLD_JOBS_NAME}"))
    }

    fn config() -> TaskConfig {
        TaskConfig::default()
            .with_queue(QUEUE)
            .with_alias(REMOVE_OLD_JOBS_NAME)
    }

    async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
        let deleted = ctx
            .app()
            .job_manager()
            .delete_old_jobs(&DeleteOldJobsOptions {
                nb_hours: self.max_hours,
                queue: self.queue,
                include_failed: self.remove_failed.unwrap_or(false),
                include_cancelled: self.remove_cancelled.unwrap_or(false),
                include_aborted: self.remove_aborted.unwrap_or(false),
            })
            .await?;
        tracing::info!(deleted, "removed old jobs");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_those_of_the_namespace() {
        assert!(is_builtin(&RemoveOldJobs::name()));
        assert!(
            !is_builtin(REMOVE_OLD_JOBS_NAME),
            "the alias is not namespaced"
        );
        assert!(!is_builtin("builtins:x"));
        assert!(!is_builtin("emails:send"));
    }
}
