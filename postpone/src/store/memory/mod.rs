//! The in-memory store: [`MemoryStore`], a [`Store`](crate::store::Store) without a database, for users' tests.
//!
//! It keeps the PostgreSQL store's semantics, statement by statement (the integration
//! tests run the same scenarios against both, `tests/it/memory.rs`):
//! - ids increase from 1, for jobs, events and workers alike;
//! - `fetch_jobs` follows `postpone_fetch_jobs_v1` (`procrastinate_fetch_job_v2`'s rules):
//!   todo jobs of the given queues, not scheduled in the future, by priority DESC then id
//!   ASC; a job with a lock only if no job of that lock is doing and no todo job of that
//!   lock comes before it, so a batch holds at most one job per lock;
//! - a queueing lock allows one todo job: [`Error::AlreadyEnqueued`](crate::Error::AlreadyEnqueued) otherwise, and a
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
//! - notifications as the triggers send them: a `job_inserted` per queue for new `todo`
//!   jobs (and jobs handed back), an `abort_job_requested` when a running job's abort is
//!   requested, to the subscriptions of [`Store::listen`](crate::store::Store::listen)
//!   listening to that queue; a worker on this store wakes on them as on a NOTIFY.
//!
//! What differs: a claim under a worker id that is not registered fails with
//! [`Error::WorkerNotRegistered`](crate::Error::WorkerNotRegistered) before the foreign key is involved (so a worker pruned by
//! another one registers again, as with PostgreSQL); counts per name are sorted by bytes,
//! where PostgreSQL sorts by the database's collation; the schema is always current
//! (`apply_schema` has nothing to do). [`MemoryStore::run_all`] runs everything due now with
//! a one-shot worker, and [`MemoryStore::job_inserted`] is signalled on every insert.
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
//! The code: `clock` (the time it reads), `events` (event types and rows), `state` (the
//! tables and the trigger rules applied to them), `store` (the
//! [`Store`](crate::store::Store) operations, one per named query), and here the
//! [`MemoryStore`] handle with its test helpers and its notifications. `run_all` runs a
//! worker, so it lives above the storage layer, in the `testing` module.

mod clock;
mod events;
mod flow;
mod inspect;
mod state;
mod store;
mod workflows;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub use clock::Clock;
pub use events::{EventType, JobEvent};
use state::State;

use crate::job::Job;
use crate::protocol::Notification;
use crate::store::{Subscription, SubscriptionSender};

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
    /// Open subscriptions ([`crate::store::Store::listen`]) and their queues (`None`: all).
    subscribers: Mutex<Vec<(Option<Vec<String>>, SubscriptionSender)>>,
    /// Open subscriptions of waiting handles
    /// ([`crate::store::Store::listen_job_finished`]).
    finish_watchers: Mutex<Vec<SubscriptionSender>>,
    /// Tells this store's clones from other stores apart in `Debug`.
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

    /// Whether `other` is this store or one of its clones (they share the same jobs).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves whole rows behind: carry on.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<(Option<Vec<String>>, SubscriptionSender)>> {
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new subscription to this store's notifications for `queues` (`None`: all).
    fn subscribe(&self, queues: Option<&[String]>) -> Subscription {
        let (sender, subscription) = Subscription::channel();
        self.subscribers()
            .push((queues.map(<[String]>::to_vec), sender));
        subscription
    }

    /// Sends `notification` about a job of `queue` to the subscriptions listening to it (as
    /// the triggers notify `procrastinate_queue_v1#<queue>` and `procrastinate_any_queue_v1`),
    /// forgetting the closed ones.
    fn notify(&self, queue: &str, notification: Notification) {
        self.subscribers().retain(|(queues, sender)| {
            let listens = queues
                .as_ref()
                .is_none_or(|queues| queues.iter().any(|q| q == queue));
            !listens || sender.send(Ok(notification))
        });
    }

    /// A new subscription to the ends of jobs ([`Notification::JobFinished`]).
    fn watch_finished(&self) -> Subscription {
        let (sender, subscription) = Subscription::channel();
        self.finish_watchers().push(sender);
        subscription
    }

    fn finish_watchers(&self) -> MutexGuard<'_, Vec<SubscriptionSender>> {
        self.shared
            .finish_watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces the ends of jobs to the waiting handles (as `finish_jobs.sql` notifies
    /// `postpone_job_finished_v1`), forgetting the closed subscriptions. The memory store
    /// announces every end it writes (no waiter rows to consult).
    fn announce_finished(&self, ends: &[i64]) {
        let mut watchers = self.finish_watchers();
        if watchers.is_empty() {
            return;
        }
        for &job_id in ends {
            watchers.retain(|sender| sender.send(Ok(Notification::JobFinished { job_id })));
        }
    }

    /// Sends `notification` to every subscription (as `postpone_queue_pauses_v1`, which
    /// every worker listens to), forgetting the closed ones.
    fn notify_all(&self, notification: Notification) {
        self.subscribers()
            .retain(|(_, sender)| sender.send(Ok(notification)));
    }

    /// Announces inserted `todo` jobs, `(id, queue)`: one `job_inserted` per queue (the
    /// first id), as the set-wise writes do, and the [`Self::job_inserted`] signal.
    fn announce_inserted(&self, jobs: &[(i64, String)]) {
        let mut first: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for (id, queue) in jobs {
            first.entry(queue.as_str()).or_insert(*id);
        }
        for (queue, job_id) in first {
            self.notify(queue, Notification::JobInserted { job_id });
        }
        if !jobs.is_empty() {
            self.shared.inserted.notify_waiters();
        }
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
}
