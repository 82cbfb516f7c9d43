//! Flow control: at most K jobs running at once, and at most N starts per period, for a
//! task, a queue, or a key taken from the job's args (a tenant, say), across every
//! Postpone worker on the database (`docs/flow-control.md`, ADR 18).
//!
//! A [`FlowLimit`] is code-side configuration, like a task's queue or retry: on a task
//! ([`crate::TaskConfig::with_flow_limit`]) or a queue
//! ([`crate::AppBuilder::queue_flow_limit`]). It is checked when the app is built (a limit
//! of zero is refused) and applied when a job is deferred: the defer stores the job's
//! buckets (`postpone_job_flow`) and their limits (`postpone_flow_limits`) in its own
//! statement, refusing args without the key's field. Every Postpone worker honours what is
//! stored, whichever process deferred the job; jobs deferred without a limit (by a Python
//! client, or by an app that does not configure it) are outside it, and so are jobs run by
//! Python workers, whose claim knows nothing of these tables.
//!
//! Enforcement is the claim's (`postpone_fetch_jobs_flow_v1`): claims under flow control
//! are serialised by one advisory lock, running jobs are counted from the jobs `doing`
//! (so every way a job leaves `doing` frees its slot, nothing to leak), and starts are
//! logged per rate-limited bucket, a start being the claim (its `started` event).

use std::fmt;
use std::time::Duration;

use crate::store::FlowBucket;
use crate::{Error, Result};

/// A rate limit's shortest period: periods are stored in milliseconds.
pub const RATE_PERIOD_MIN: Duration = Duration::from_millis(1);

/// A flow-control limit: at most [`Self::max_running`] jobs `doing` at once and at most
/// [`Self::rate`] starts per period, for every job of its task or queue together, or per
/// value of a key field of their args ([`Self::per_key`]).
///
/// ```
/// use std::time::Duration;
/// use postpone::flow::FlowLimit;
///
/// // At most 3 jobs of one tenant at once, and 100 starts a second for the tenant.
/// let limit = FlowLimit::concurrency(3)
///     .with_rate(100, Duration::from_secs(1))
///     .per_key("tenant");
/// assert_eq!(limit.key(), Some("tenant"));
/// assert_eq!(limit.max_running(), Some(3));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
#[must_use = "a limit does nothing until it is given to a task or a queue"]
pub struct FlowLimit {
    key: Option<String>,
    max_running: Option<u32>,
    rate: Option<(u32, Duration)>,
}

impl fmt::Debug for FlowLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowLimit")
            .field("key", &self.key)
            .field("max_running", &self.max_running)
            .field("rate", &self.rate)
            .finish()
    }
}

impl FlowLimit {
    /// At most `max_running` jobs running (`doing`) at once.
    pub fn concurrency(max_running: u32) -> Self {
        Self {
            key: None,
            max_running: Some(max_running),
            rate: None,
        }
    }

    /// At most `starts` jobs started in any window of `period`.
    pub fn rate(starts: u32, period: Duration) -> Self {
        Self {
            key: None,
            max_running: None,
            rate: Some((starts, period)),
        }
    }

    /// Adds (or replaces) the concurrency limit.
    pub fn with_concurrency(mut self, max_running: u32) -> Self {
        self.max_running = Some(max_running);
        self
    }

    /// Adds (or replaces) the rate limit.
    pub fn with_rate(mut self, starts: u32, period: Duration) -> Self {
        self.rate = Some((starts, period));
        self
    }

    /// Applies the limit per value of this top-level field of the job's args (e.g.
    /// `"tenant"`): jobs with different values do not share it. A job whose args lack the
    /// field is refused at defer.
    pub fn per_key(mut self, field: impl Into<String>) -> Self {
        self.key = Some(field.into());
        self
    }

    /// The args field the limit is keyed on, if any.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The most jobs running at once, if limited.
    #[must_use]
    pub fn max_running(&self) -> Option<u32> {
        self.max_running
    }

    /// The most starts per period, and the period, if limited.
    #[must_use]
    pub fn rate_limit(&self) -> Option<(u32, Duration)> {
        self.rate
    }

    /// Refuses a limit that lets nothing run, or a key with no name; `owner` says whose
    /// limit it is (`task "x"`, `queue "q"`).
    pub(crate) fn check(&self, owner: &str) -> Result<()> {
        if self.max_running == Some(0) {
            return Err(Error::InvalidInput(format!(
                "{owner}: a concurrency limit of 0 lets no job run: give at least 1, or remove the limit"
            )));
        }
        if let Some((starts, period)) = self.rate {
            if starts == 0 {
                return Err(Error::InvalidInput(format!(
                    "{owner}: a rate limit of 0 starts per {period:?} lets no job run: give at least 1, or remove the limit"
                )));
            }
            if period < RATE_PERIOD_MIN {
                return Err(Error::InvalidInput(format!(
                    "{owner}: a rate limit's period of {period:?} is too short: give at least 1 ms"
                )));
            }
        }
        if self.max_running.is_none() && self.rate.is_none() {
            return Err(Error::InvalidInput(format!(
                "{owner}: a flow limit with neither a concurrency nor a rate limits nothing: set one"
            )));
        }
        if self.key.as_deref().is_some_and(str::is_empty) {
            return Err(Error::InvalidInput(format!(
                "{owner}: a flow limit's key field is empty: name a top-level field of the args"
            )));
        }
        Ok(())
    }

    /// The bucket a job with these args counts against: `scope` (`task:<name>` or
    /// `queue:<name>`), then `|<field>=<value>` when keyed.
    ///
    /// # Errors
    /// [`Error::InvalidArgs`] naming the task and the field when the args lack the key.
    pub(crate) fn bucket(
        &self,
        scope: &str,
        task_name: &str,
        args: &serde_json::Value,
    ) -> Result<FlowBucket> {
        let name = match &self.key {
            None => scope.to_owned(),
            Some(field) => {
                let value = args.get(field).ok_or_else(|| Error::InvalidArgs {
                    task: task_name.to_owned(),
                    message: format!(
                        "the flow limit of {scope} is keyed on field {field:?}, which the args do not have: add it to the args, or key the limit on a field they have"
                    ),
                })?;
                let value = match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                format!("{scope}|{field}={value}")
            }
        };
        Ok(FlowBucket {
            name,
            max_running: self.max_running,
            rate: self.rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_and_periods_are_refused_with_their_owner() {
        let refused = |limit: FlowLimit| limit.check("task \"t\"").unwrap_err().to_string();
        assert!(refused(FlowLimit::concurrency(0)).contains("concurrency limit of 0"));
        assert!(refused(FlowLimit::rate(0, Duration::from_secs(1))).contains("rate limit of 0"));
        assert!(refused(FlowLimit::rate(5, Duration::ZERO)).contains("too short"));
        assert!(refused(FlowLimit::concurrency(1).per_key("")).contains("key field is empty"));
        assert!(refused(FlowLimit::concurrency(0)).starts_with("task \"t\""));
        FlowLimit::concurrency(1)
            .with_rate(1, Duration::from_millis(1))
            .check("task \"t\"")
            .unwrap();
    }

    #[test]
    fn buckets_are_named_by_scope_and_key_value() {
        let args = serde_json::json!({"tenant": "acme", "n": 3});
        let bucket = |limit: FlowLimit| limit.bucket("task:t", "t", &args).unwrap().name;
        assert_eq!(bucket(FlowLimit::concurrency(1)), "task:t");
        assert_eq!(
            bucket(FlowLimit::concurrency(1).per_key("tenant")),
            "task:t|tenant=acme"
        );
        assert_eq!(bucket(FlowLimit::concurrency(1).per_key("n")), "task:t|n=3");
        let missing = FlowLimit::concurrency(1)
            .per_key("region")
            .bucket("task:t", "t", &args)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("\"t\"") && missing.contains("\"region\""),
            "{missing}"
        );
    }
}
