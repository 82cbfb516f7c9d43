//! The in-memory store: [`MemoryStore`], a [`Store`](crate::store::Store) without a database, for users' tests.
//!
//! It keeps the PostgreSQL store's semantics, statement by statement (the integration
//! tests run the same scenarios against both, `tests/it/memory.rs`):
//! - ids increase from 1, for jobs, events and workers alike;
//! - `fetch_jobs` follows `postpone_fetch_jobs_v1` (`procrastinate_fetch_job_v2`'s rules):
//!   todo jobs of the given queues, not scheduled in the future, by priority DESC then id
//!   ASC; a job with a lock only if no job of that lock is doing and no todo job of that
//!   lock comes before it, so a batch holds at most one job per lock;
//! - a queueing lock allows one todo job: [`Error::AlreadyEnqueued`] otherwise, and a
//!   batch is all or nothing;
//! - finish, retry and cancel are `procrastinate_finish_job_v1`, `procrastinate_retry_job_v2`
//!   and `procrastinate_cancel_job_v1` (statuses, attempts, abort requests, deletes);
//! - events are recorded by the same rules as the schema's triggers, in the order
//!   PostgreSQL fires them (by trigger name): see [`MemoryStore::events`];
//! - workers register, heartbeat and are pruned; a removed worker's jobs lose their
//!   `worker_id` (`ON DELETE SET NULL`).
//!
//! Times come from the store's [`Clock`], one reading per operation, as `now()` is one per
//! transaction: the wall clock, unless the store was made with [`MemoryStore::with_clock`]
//! and a test moves it ([`Clock::advance`]) to make time pass without sleeping. Nothing
//! panics on input; a poisoned lock is recovered.
//!
//! What differs: there is no LISTEN/NOTIFY, so a worker finds new jobs by polling
//! (`fetch_job_polling_interval`; use a short one in tests), or [`MemoryStore::run_all`]
//! runs everything due now with a one-shot worker. [`MemoryStore::job_inserted`] is
//! signalled on every insert, and a worker running on this store is woken by it as by a
//! NOTIFY. A fetch under a worker id that is not registered fails as PostgreSQL's foreign
//! key does (SQLSTATE 23503), so a worker pruned by another one registers again. Counts per
//! name are sorted by bytes, where PostgreSQL sorts by the database's collation.
//!
//! # Testing a task with it
//!
//! ```
//! use std::sync::Arc;
//!
//! use postpone::task::{JobContext, TaskError};
//! use postpone::{App, JobStatus, MemoryStore, Task};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//! }
//!
//! impl Task for SendEmail {
//!     fn name() -> std::borrow::Cow<'static, str> {
//!         "emails.send_email".into()
//!     }
//!     async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
//!         if self.to.contains('@') {
//!             Ok(())
//!         } else {
//!             Err(TaskError::new("BadAddress", "no @ in the address"))
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> postpone::Result<()> {
//! let store = MemoryStore::new();
//! let app = App::builder()
//!     .task::<SendEmail>()
//!     .store(Arc::new(store.clone()))
//!     .build()?;
//!
//! // The code under test defers jobs...
//! app.defer(SendEmail { to: "ada@example.com".into() }).await?;
//! app.defer(SendEmail { to: "nobody".into() }).await?;
//! let deferred = store.deferred_jobs("emails.send_email");
//! assert_eq!(deferred.len(), 2);
//! assert_eq!(deferred[0].args["to"], "ada@example.com");
//!
//! // ...and the test runs them, now, with a one-shot worker.
//! let stats = store.run_all(&app).await?;
//! assert_eq!((stats.succeeded(), stats.failed()), (1, 1));
//! let statuses: Vec<JobStatus> = store.jobs().iter().map(|job| job.status).collect();
//! assert_eq!(statuses, [JobStatus::Succeeded, JobStatus::Failed]);
//! let events: Vec<&str> = store.events(2).iter().map(|e| e.event_type.as_str()).collect();
//! assert_eq!(events, ["deferred", "started", "failed"]);
//!
//! store.reset(); // as good as new: ids start again at 1
//! assert!(store.jobs().is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! The code: `events` (event types and rows), `state` (the tables and the trigger rules
//! applied to them), `store` (the [`Store`](crate::store::Store) operations, one per named query), and here
//! the [`MemoryStore`] handle with its test helpers.

mod clock;
mod events;
mod state;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub use clock::Clock;
pub use events::{EventType, JobEvent};
use state::State;

use crate::app::App;
use crate::job::Job;
use crate::worker::{WorkerConfig, WorkerStats};
use crate::{Error, Result};

/// How often [`MemoryStore::run_all`]'s worker polls (it has no NOTIFY to wake it).
pub const RUN_ALL_POLLING_INTERVAL: Duration = Duration::from_millis(10);

/// A [`Store`](crate::store::Store) in memory, with PostgreSQL's semantics, for tests (see the module docs).
///
/// Cheap to clone: clones share the same jobs. Give an app a clone with
/// `App::builder().store(Arc::new(store.clone()))` and keep the original to look inside.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    clock: Clock,
    inserted: Notify,
    /// Tells this store's clones from other stores (see [`MemoryStore::run_all`]).
    instance: u64,
}

static INSTANCES: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(
            f,
            "MemoryStore #{} {{ jobs: {}, workers: {} }}",
            self.shared.instance,
            state.jobs.len(),
            state.workers.len()
        )
    }
}

impl MemoryStore {
    /// An empty store on the wall clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// An empty store that reads the time from `clock` (keep a clone to move it).
    #[must_use]
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
                clock,
                ..Shared::default()
            }),
        }
    }

    /// The clock this store reads: `store.clock().advance(..)` makes time pass for it.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// The store's time now.
    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves whole rows behind: carry on.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every job, by id.
    #[must_use]
    pub fn jobs(&self) -> Vec<Job> {
        self.state().jobs.values().cloned().collect()
    }

    /// Every job of this task (any status), by id.
    #[must_use]
    pub fn deferred_jobs(&self, task_name: &str) -> Vec<Job> {
        self.state()
            .jobs
            .values()
            .filter(|j| j.task_name == task_name)
            .cloned()
            .collect()
    }

    /// A job's events, oldest first (empty once the job is deleted, as `ON DELETE CASCADE`).
    #[must_use]
    pub fn events(&self, job_id: i64) -> Vec<JobEvent> {
        self.state()
            .events
            .iter()
            .filter(|e| e.job_id == job_id)
            .cloned()
            .collect()
    }

    /// Registered workers and their last heartbeat, by id.
    #[must_use]
    pub fn workers(&self) -> Vec<(i64, DateTime<Utc>)> {
        self.state()
            .workers
            .iter()
            .map(|(id, at)| (*id, *at))
            .collect()
    }

    /// Forgets everything, ids included: as good as a new store (a worker still running
    /// on it is unregistered, and its next fetch fails).
    pub fn reset(&self) {
        *self.state() = State::default();
    }

    /// Signalled (`notify_waiters`) after every insert, as PostgreSQL sends
    /// `job_inserted`: `store.job_inserted().notified().await` waits for the next one.
    #[must_use]
    pub fn job_inserted(&self) -> &Notify {
        &self.shared.inserted
    }

    /// Runs every job due now with a one-shot worker (concurrency 1, so in fetch order),
    /// including retries due at once, and returns what it wrote. `app` must run on this
    /// store (built with `.store(Arc::new(store.clone()))`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `app` runs on another store, or the worker's error.
    pub async fn run_all(&self, app: &App) -> Result<Arc<WorkerStats>> {
        self.run_all_with(app, WorkerConfig::default()).await
    }

    /// As [`Self::run_all`], with these worker settings (say, `additional_context` or a
    /// concurrency); one-shot, without NOTIFY, polling every [`RUN_ALL_POLLING_INTERVAL`],
    /// and without the periodic deferrer (defer ticks with [`App::defer_periodic_jobs`]).
    ///
    /// # Errors
    /// As [`Self::run_all`], and [`Error::InvalidInput`] for bad settings.
    pub async fn run_all_with(&self, app: &App, config: WorkerConfig) -> Result<Arc<WorkerStats>> {
        // The same store shares the same insert signal.
        let ours = app
            .store()
            .job_inserted()
            .is_some_and(|signal| std::ptr::eq(signal, &self.shared.inserted));
        if !ours {
            return Err(Error::InvalidInput(
                "run_all: the app does not run on this MemoryStore: build it with .store(Arc::new(store.clone()))"
                    .to_owned(),
            ));
        }
        let config = WorkerConfig {
            wait: false,
            listen_notify: false,
            install_signal_handlers: false,
            fetch_job_polling_interval: RUN_ALL_POLLING_INTERVAL,
            periodic: false,
            ..config
        };
        let handle = app.start_worker(config).await?;
        let stats = handle.stats();
        handle.join().await?;
        Ok(stats)
    }
}
