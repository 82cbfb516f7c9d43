//! Job results: what a task returns, stored with its job, and a handle that waits for a
//! job's end (`docs/results.md`, `docs/adr/0017-job-results.md`).
//!
//! A task returns its result from `run` ([`TaskWithOutput`](crate::TaskWithOutput)), or
//! sets it with [`JobContext::set_result`](crate::task::JobContext::set_result) (what the
//! former does with the value it returns); the worker serialises it during the attempt
//! (a value serde refuses, or one over the app's
//! [`result_size_limit`](crate::AppBuilder::result_size_limit), fails the attempt with
//! [`RESULT_NOT_SERIALIZABLE`] or [`RESULT_TOO_LARGE`], by the task's retry policy), and
//! the completer writes it to `postpone_job_results` in the statement that writes the
//! job's `succeeded` outcome, beside the failed attempts' errors (`postpone_job_errors`):
//! one write, one cascade. A job the delete policy removes keeps no result, as it keeps no
//! error; `delete_old_jobs` and every other delete take the result with the job.
//!
//! A [`JobHandle`] waits for a job's end with a deadline: woken by the notification the
//! completer sends for the jobs someone waits for (`postpone_job_finished_v1`), and
//! reading the job every [`WAIT_POLL_INTERVAL_DEFAULT`] too, for the ends nobody
//! announces (a Python worker's, a cancel, a store in poll-only mode).
//!
//! ```
//! use postpone::{App, MemoryStore, Task, task::{JobContext, TaskError}};
//! use serde::{Deserialize, Serialize};
//! use std::{sync::Arc, time::Duration};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! impl Task for Add {
//!     async fn run(self, ctx: JobContext) -> Result<(), TaskError> {
//!         ctx.set_result(&(self.a + self.b))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> postpone::Result<()> {
//! let store = MemoryStore::new();
//! let app = App::builder().store(Arc::new(store.clone())).task::<Add>().build()?;
//! let job = app.defer_and_track(Add { a: 2, b: 3 }).await?;
//! store.run_all(&app).await?;
//! let outcome = job.wait(Duration::from_secs(5)).await?;
//! assert_eq!(outcome.result::<i64>()?, Some(5));
//! assert_eq!(app.job_result::<i64>(job.id()).await?, Some(5));
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::app::App;
use crate::job::JobStatus;
use crate::protocol::Notification;
use crate::store::{FailedAttempt, JobResultRow};
use crate::task::{Task, TaskError};
use crate::{Error, Result};

/// The longest result, in bytes of JSON, unless the app sets another
/// ([`AppBuilder::result_size_limit`](crate::AppBuilder::result_size_limit)): 1 MiB.
pub const RESULT_SIZE_LIMIT_DEFAULT: usize = 1 << 20;

/// How often a waiting handle reads the job, notifications or not, unless told otherwise
/// ([`JobHandle::with_poll_interval`]): the longest it takes to see an end nobody
/// announces (a Python worker's, a cancel, poll-only mode).
pub const WAIT_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// The error kind of an attempt whose result serde refused.
pub const RESULT_NOT_SERIALIZABLE: &str = "ResultNotSerializable";

/// The error kind of an attempt whose result was over the size limit.
pub const RESULT_TOO_LARGE: &str = "ResultTooLarge";

/// A writer that refuses to grow past `limit` bytes.
struct Capped {
    json: Vec<u8>,
    limit: usize,
    over: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.json.len().saturating_add(bytes.len()) > self.limit {
            self.over = true;
            return Err(io::Error::other("over the result size limit"));
        }
        self.json.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serialises job `job_id`'s result, stopping at `limit` bytes.
pub(crate) fn encode<R: Serialize + ?Sized>(
    job_id: i64,
    value: &R,
    limit: usize,
) -> std::result::Result<String, TaskError> {
    let mut out = Capped {
        json: Vec::new(),
        limit,
        over: false,
    };
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => String::from_utf8(out.json).map_err(|e| {
            TaskError::new(
                RESULT_NOT_SERIALIZABLE,
                format!("the result of job {job_id} is not UTF-8 JSON: {e}"),
            )
        }),
        Err(_) if out.over => Err(TaskError::new(
            RESULT_TOO_LARGE,
            format!(
                "the result of job {job_id} is over the size limit of {limit} bytes of JSON: return less (keep large data elsewhere and return its key), or raise AppBuilder::result_size_limit"
            ),
        )),
        Err(e) => Err(TaskError::new(
            RESULT_NOT_SERIALIZABLE,
            format!(
                "the result of job {job_id} cannot be serialised to JSON: {e}; return a value serde_json accepts (maps need string keys)"
            ),
        )),
    }
}

/// How a job ended, as a [`JobHandle`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The job.
    pub job_id: i64,
    /// Its end status: `Succeeded`, `Failed`, `Cancelled` or `Aborted`.
    pub status: JobStatus,
    /// What its successful attempt returned (none for a task that set none, and for a job
    /// a Python worker ran).
    pub result: Option<JobResultRow>,
    /// Why its last attempt did not succeed, when it did not and the reason was recorded
    /// (a Postpone worker records it; a Python worker does not).
    pub error: Option<FailedAttempt>,
}

impl JobOutcome {
    /// Whether the job succeeded.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status == JobStatus::Succeeded
    }

    /// The result as a `T` (`None`: no result stored).
    ///
    /// # Errors
    /// [`Error::InvalidResult`] when it does not fit `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.result.as_ref().map(JobResultRow::decode).transpose()
    }
}

/// A job to read or wait for: from [`App::defer_and_track`], or [`App::job_handle`] for
/// any job id (one a Python service deferred too).
#[derive(Clone)]
pub struct JobHandle {
    app: App,
    id: i64,
    poll_interval: Duration,
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.id)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl JobHandle {
    /// The job's id.
    #[must_use]
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Reads the job every `interval` while waiting (default
    /// [`WAIT_POLL_INTERVAL_DEFAULT`]), besides the notifications.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an interval of zero.
    pub fn with_poll_interval(mut self, interval: Duration) -> Result<Self> {
        if interval.is_zero() {
            return Err(Error::InvalidInput(
                "a wait's poll interval of 0 would read the job without pause: give at least 1 ms"
                    .to_owned(),
            ));
        }
        self.poll_interval = interval;
        Ok(self)
    }

    /// The job's stored result as a `T`, now (`None`: not succeeded yet, no result set,
    /// run by a Python worker, or gone).
    ///
    /// # Errors
    /// [`Error::InvalidResult`] when it does not fit `T`, or a database error.
    pub async fn result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.app.job_result(self.id).await
    }

    /// Waits until the job ends (`succeeded`, `failed`, `cancelled` or `aborted`), for at
    /// most `timeout`; its outcome, with its result or its last error.
    ///
    /// Woken by the notification of the worker that writes the end; an end nobody
    /// announces (a Python worker's, a cancel) is seen at the next poll.
    ///
    /// # Errors
    /// [`Error::WaitTimedOut`] when it has not ended within `timeout` (it may still);
    /// [`Error::JobNotFound`] when the job is gone (never deferred, or deleted: by the
    /// worker's delete policy, `delete_old_jobs`, a cancel with delete); a database error.
    pub async fn wait(&self, timeout: Duration) -> Result<JobOutcome> {
        let deadline = Instant::now() + timeout;
        let store = self.app.store();
        // Without a link (poll-only mode, a pooler in transaction mode without it, a lost
        // connection), polling alone still sees the end.
        let mut finished = FinishLink::join(&self.app).await;
        if finished.is_some() {
            // After the link listens, before the job is read: an end written from here on
            // is announced.
            if let Err(error) = store.wait_for_job(self.id).await {
                tracing::warn!(job_id = self.id, %error, "cannot record the wait; polling");
                finished = None;
            }
        }
        loop {
            let Some(job) = store.get_job(self.id).await? else {
                return Err(Error::JobNotFound { id: self.id });
            };
            if is_end(job.status) {
                return self.outcome(job.status).await;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimedOut {
                    id: self.id,
                    waited: timeout,
                    status: job.status.as_str().to_owned(),
                });
            }
            let wake = (now + self.poll_interval).min(deadline);
            if !self.announced(finished.as_mut(), wake).await {
                // The link is lost: poll from here on.
                finished = None;
            }
        }
    }

    /// Waits until `wake`, or until this job's end may have been announced; false when the
    /// link is lost.
    async fn announced(&self, finished: Option<&mut Joined>, wake: Instant) -> bool {
        let Some(joined) = finished else {
            tokio::time::sleep_until(wake).await;
            return true;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => return true,
                received = joined.ends.recv() => match received {
                    Ok(job_id) if job_id == self.id => return true,
                    Ok(_) => {}
                    // Missed some: this job's among them, maybe.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::warn!(job_id = self.id, "the link announcing job ends was lost; polling");
                        return false;
                    }
                },
            }
        }
    }

    /// The outcome of the job, ended in `status`.
    async fn outcome(&self, status: JobStatus) -> Result<JobOutcome> {
        let store = self.app.store();
        let (result, error) = if status == JobStatus::Succeeded {
            (store.get_job_result(self.id).await?, None)
        } else {
            (None, store.list_job_errors(&[self.id]).await?.pop())
        };
        Ok(JobOutcome {
            job_id: self.id,
            status,
            result,
            error,
        })
    }
}

/// How many announced ends a waiting handle may fall behind by before it reads its job
/// again for want of knowing whether its own was among them.
const FINISH_LINK_CAPACITY: usize = 1024;

/// An app's one link to the store's job-end announcements, shared by its waiting handles
/// (so a thousand waits hold one connection, not a thousand); it closes when the last
/// handle stops waiting, and is opened again by the next.
#[derive(Default)]
pub(crate) struct SharedFinishLink(tokio::sync::Mutex<Weak<FinishLink>>);

impl fmt::Debug for SharedFinishLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFinishLink").finish_non_exhaustive()
    }
}

/// One open link: a task forwarding the store's announcements to every waiting handle.
struct FinishLink {
    /// A receiver to make the others from (it never reads).
    template: Mutex<broadcast::Receiver<i64>>,
    /// The task reading the store's subscription; stopping it closes the link.
    driver: AbortOnDropHandle<()>,
}

/// A waiting handle's place on a link.
struct Joined {
    ends: broadcast::Receiver<i64>,
    /// Keeps the link open while this handle waits.
    _link: Arc<FinishLink>,
}

impl FinishLink {
    /// Joins the app's link, opening it when none is open; `None` when the store gives no
    /// notifications or the link cannot be made (the handle then polls).
    async fn join(app: &App) -> Option<Joined> {
        // Held while a link opens: handles that start waiting together share it.
        let mut shared = app.finish_link().0.lock().await;
        let open = shared.upgrade().filter(|link| !link.driver.is_finished());
        if let Some(link) = open {
            let ends = link
                .template
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .resubscribe();
            return Some(Joined { ends, _link: link });
        }
        let mut subscription = match app.store().listen_job_finished().await {
            Ok(subscription) => subscription?,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for job ends; waiting handles poll");
                return None;
            }
        };
        let (sender, ends) = broadcast::channel(FINISH_LINK_CAPACITY);
        let driver = tokio::spawn(async move {
            loop {
                match subscription.recv().await {
                    Ok(Notification::JobFinished { job_id }) => {
                        // No receiver left: the link is about to be dropped.
                        let _ = sender.send(job_id);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "the link announcing job ends closed");
                        return;
                    }
                }
            }
        });
        let link = Arc::new(Self {
            template: Mutex::new(ends.resubscribe()),
            driver: AbortOnDropHandle::new(driver),
        });
        *shared = Arc::downgrade(&link);
        Some(Joined { ends, _link: link })
    }
}

/// Whether a job in `status` has ended (a failed job may still be retried by hand).
fn is_end(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled | JobStatus::Aborted
    )
}

impl App {
    /// The stored result of job `id` as a `T`: `None` when it has not succeeded (yet), its
    /// task set no result, a Python worker ran it, or it is gone. See `docs/results.md`.
    ///
    /// # Errors
    /// [`Error::InvalidResult`] when the result does not fit `T` (the message names the
    /// field), or a database error.
    pub async fn job_result<T: DeserializeOwned>(&self, id: i64) -> Result<Option<T>> {
        self.store()
            .get_job_result(id)
            .await?
            .as_ref()
            .map(JobResultRow::decode)
            .transpose()
    }

    /// A handle on job `id`, to read its result or wait for its end.
    #[must_use]
    pub fn job_handle(&self, id: i64) -> JobHandle {
        JobHandle {
            app: self.clone(),
            id,
            poll_interval: WAIT_POLL_INTERVAL_DEFAULT,
        }
    }

    /// Defers one job as [`App::defer`] does; a handle on it.
    ///
    /// # Errors
    /// As [`App::defer`].
    pub async fn defer_and_track<T: Task>(&self, args: T) -> Result<JobHandle> {
        let id = self.defer(args).await?;
        Ok(self.job_handle(id))
    }

    /// Waits for job `id`'s end for at most `timeout`: [`JobHandle::wait`].
    ///
    /// # Errors
    /// As [`JobHandle::wait`].
    pub async fn wait_for_job(&self, id: i64, timeout: Duration) -> Result<JobOutcome> {
        self.job_handle(id).wait(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_encodes_within_the_limit() {
        assert_eq!(encode(1, &5, 10).unwrap(), "5");
        assert_eq!(encode(1, &(), 10).unwrap(), "null");
    }

    #[test]
    fn a_value_over_the_limit_is_refused_with_its_kind() {
        let error = encode(7, &"x".repeat(20), 10).unwrap_err();
        assert_eq!(error.kind(), RESULT_TOO_LARGE);
        assert!(error.message().contains("job 7"), "{error}");
        assert!(error.message().contains("10 bytes"), "{error}");
    }

    #[test]
    fn a_value_serde_refuses_is_refused_with_its_kind() {
        let map: std::collections::BTreeMap<(i32, i32), i32> = [((1, 2), 3)].into();
        let error = encode(7, &map, 1000).unwrap_err();
        assert_eq!(error.kind(), RESULT_NOT_SERIALIZABLE);
        assert!(error.message().contains("key must be a string"), "{error}");
    }
}
