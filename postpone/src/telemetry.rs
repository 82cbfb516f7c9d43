//! Telemetry: what workers do, as events, through one in-process interface.
//!
//! A worker emits an [`Event`] when it claims jobs, starts one, ends an attempt (with the
//! outcome and how long it ran), writes a batch of outcomes, rescues the jobs of a dead
//! worker, links again to the database's notifications, or meets a database error. The
//! same events feed everything that watches a worker: the Prometheus metrics of
//! `postpone-metrics` (`postpone worker --metrics-addr`), and your own code, as Oban's
//! `:telemetry` events or River's event subscriptions do.
//!
//! Subscribe with [`AppBuilder::subscribe`](crate::AppBuilder::subscribe): every worker
//! of the app calls each [`Subscriber`] in the order they were added, on the worker's own
//! tasks, as the event happens. So a subscriber must be quick and must not block: count,
//! record, or hand the event to a channel. An app without subscribers pays one branch per
//! event.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use postpone::telemetry::{Event, Outcome, Subscriber};
//!
//! /// Counts the attempts that failed for good.
//! #[derive(Debug, Default)]
//! struct Failures(AtomicU64);
//!
//! impl Subscriber for Failures {
//!     fn on_event(&self, event: &Event<'_>) {
//!         if let Event::Finished { outcome: Outcome::Failed, .. } = event {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! # fn main() -> postpone::Result<()> {
//! let failures = Arc::new(Failures::default());
//! let app = postpone::App::builder()
//!     .store(Arc::new(postpone::MemoryStore::new()))
//!     .subscribe(failures.clone())
//!     .build()?;
//! # drop(app);
//! # Ok(()) }
//! ```
//!
//! Events carry borrowed views (the [`Job`] as it was claimed, the [`Error`]): copy what
//! you keep. Tracing spans (`docs/observability.md`) are emitted beside these events, not
//! from them, so that a span can wrap the code it times.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::job::Job;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The task returned `Ok`: the job is `succeeded`.
    Succeeded,
    /// The attempt failed (an error, a panic, a timeout, an unknown task) and the job
    /// will run again (`todo`, maybe later).
    Retried,
    /// The attempt failed and no attempt is left: the job is `failed`.
    Failed,
    /// The job was aborted (on request, or by a forced stop), while it ran or waited.
    Aborted,
}

impl Outcome {
    /// Its name, as metrics label it: `succeeded`, `retried`, `failed`, `aborted`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rescue did with one job of a dead worker (`docs/adr/0011-rescue.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RescueAction {
    /// It never started there: back to `todo`, no attempt counted.
    HandedBack,
    /// It may have started: a failed attempt, retried.
    Retried,
    /// It may have started and no attempt is left: `failed`.
    Failed,
    /// It never started and its abort was requested: `aborted`.
    Aborted,
}

impl RescueAction {
    /// Its name, as metrics label it: `handed_back`, `retried`, `failed`, `aborted`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandedBack => "handed_back",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }
}

/// Which statement a batch of outcomes went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchKind {
    /// Jobs finished (`finish_jobs`) and retried (`retry_jobs`) by the completer, one
    /// round trip for both.
    Outcomes,
    /// Claimed jobs sent back to `todo` without running (a stop, a pause); its size
    /// counts the jobs that left the worker (not those it keeps and runs because a `todo`
    /// job took their queueing lock, nor those aborted: they end with
    /// [`Event::Finished`]).
    HandBack,
}

impl BatchKind {
    /// Its name, as metrics label it: `outcomes`, `hand_back`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outcomes => "outcomes",
            Self::HandBack => "hand_back",
        }
    }
}

/// Something a worker did. New variants may come (`#[non_exhaustive]`): match with a
/// catch-all arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A claim round trip returned (with no job, too).
    Claimed {
        /// The claiming worker.
        worker_id: i64,
        /// The jobs it claimed, in start order; each now `doing` and held by the worker.
        jobs: &'a [Job],
        /// The round trip.
        duration: Duration,
    },
    /// A job's attempt starts.
    Started {
        /// The worker running it.
        worker_id: i64,
        /// The job, as claimed (its `attempts` counts this one).
        job: &'a Job,
        /// How long it waited in the worker's local queue since its claim.
        waited_local: Duration,
        /// How long after its `scheduled_at` it starts, for a job that has one (deferred
        /// for later, or retried after a delay); `None` otherwise, or when this machine's
        /// clock is behind the database's. Procrastinate's table keeps no insert time, so
        /// for a job deferred to run at once the wait before its claim is not known here:
        /// the dashboard shows the age of the oldest runnable job per queue instead.
        since_scheduled: Option<Duration>,
    },
    /// A job's attempt ended. Its outcome is written by the completer in a later batch
    /// ([`Event::BatchWritten`]).
    Finished {
        /// The worker that ran it.
        worker_id: i64,
        /// The job, as claimed.
        job: &'a Job,
        /// How it ended.
        outcome: Outcome,
        /// How long the attempt ran; `None` when it never started (aborted while it
        /// waited in the local queue: no [`Event::Started`] came before).
        ran: Option<Duration>,
        /// The error's kind when it did not succeed (`Panic`, `Timeout`, `JobAborted`,
        /// the task's error kind).
        error_kind: Option<&'a str>,
    },
    /// A batch of job writes reached the database.
    BatchWritten {
        /// The writing worker.
        worker_id: i64,
        /// Which writes.
        kind: BatchKind,
        /// Jobs in the batch.
        size: usize,
        /// The round trip (with its retries).
        duration: Duration,
    },
    /// A rescue pass moved a job of a dead worker.
    Rescued {
        /// The worker whose rescue pass it was.
        worker_id: i64,
        /// The job, as it was when the pass locked it (its `worker_id` is the dead one's).
        job: &'a Job,
        /// What the pass did with it.
        action: RescueAction,
    },
    /// The link to the database's notifications dropped and is made again.
    ListenerReconnected {
        /// The worker.
        worker_id: i64,
        /// Since the link dropped.
        down_for: Duration,
    },
    /// A worker's statement failed (it will try again: nothing is lost).
    DatabaseError {
        /// The worker.
        worker_id: i64,
        /// What it was doing: `claim`, `write_outcomes`, `hand_back`, `heartbeat`,
        /// `rescue`, `listen`, `mark_started`, `abort_poll`.
        operation: &'static str,
        /// The error.
        error: &'a Error,
    },
}

/// Receives every worker [`Event`] of an app. See the module docs: quick, never blocking.
pub trait Subscriber: Send + Sync + fmt::Debug + 'static {
    /// One event, as it happens.
    fn on_event(&self, event: &Event<'_>);
}

/// An app's subscribers (cheap to clone). Workers emit through it.
#[derive(Clone, Default)]
pub struct Telemetry {
    subscribers: Arc<[Arc<dyn Subscriber>]>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.subscribers.iter()).finish()
    }
}

impl Telemetry {
    /// Telemetry with these subscribers, called in this order.
    #[must_use]
    pub fn new(subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        Self {
            subscribers: subscribers.into(),
        }
    }

    /// Whether anyone listens: emitters skip building events when not.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Hands an event to every subscriber.
    pub fn emit(&self, event: &Event<'_>) {
        for subscriber in self.subscribers.iter() {
            subscriber.on_event(event);
        }
    }
}
