//! The worker: takes jobs from the database, runs them, writes their outcomes.
//!
//! Its parts, one file each, joined by channels and sharing one start/stop lifecycle:
//! - [`producer`]: claims jobs in batches into a local queue, starts them as slots free;
//! - `executor`: runs one attempt per job in its own task (panics caught, aborts honoured);
//! - [`completer`]: writes outcomes in batches, retrying what it cannot write yet;
//! - [`notifier`]: LISTEN/NOTIFY wake-ups and abort requests, reconnecting on its own;
//! - `aborter`: polls abort requests NOTIFY may have missed;
//! - [`crate::maintenance::heartbeat`]: keeps the worker row alive;
//! - `maintenance::periodic`: defers the ticks of the app's periodic tasks.
//!
//! Lifecycle (Procrastinate's `Worker.run`): prune stalled workers, register, start the
//! parts; on stop, claim nothing more, hand the jobs of the local queue back to `todo`, wait
//! for running jobs up to the graceful timeout, abort the rest (reason
//! [`AbortReason::Shutdown`]), write every outcome, unregister.
//! A forced stop (second signal, [`WorkerHandle::abort`]) aborts running jobs at once.
//! A worker killed outright leaves its jobs `doing` with its id: its heartbeat stops,
//! and `get_stalled_jobs` (ours or Python's) finds them.

mod aborter;
pub mod completer;
pub mod config;
mod executor;
pub mod notifier;
pub mod producer;
mod running;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use completer::WorkerStats;
pub use config::{DeleteJobs, WorkerConfig};

use crate::app::App;
use crate::context::AbortReason;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::{Error, Result};

/// The worker's id in `procrastinate_workers`, shared by the parts that use it: it
/// changes if another worker prunes this one and it registers again.
#[derive(Debug, Clone)]
pub(crate) struct WorkerId(Arc<AtomicI64>);

impl WorkerId {
    fn new(id: i64) -> Self {
        Self(Arc::new(AtomicI64::new(id)))
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, id: i64) {
        self.0.store(id, Ordering::Relaxed);
    }
}

/// Fetched jobs whose outcome is not written yet: all of them (running, or waiting for the
/// completer), and the finished ones that hold a lock.
///
/// A job's lock stays taken in the database until its outcome is written, so the producer
/// does not fetch while a finished lock job is unwritten: the next job of that lock is then
/// eligible, and jobs run in the order a Procrastinate worker runs them. For the same
/// reason it starts no job of its local queue until it has claimed again after such a
/// write (the freed lock's next job may come before them): [`Self::locks_released`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Unwritten {
    all: Arc<AtomicUsize>,
    finished_with_lock: Arc<AtomicUsize>,
    locks_released: Arc<AtomicU64>,
}

impl Unwritten {
    pub(crate) fn fetched(&self, n: usize) {
        self.all.fetch_add(n, Ordering::SeqCst);
    }

    pub(crate) fn finished_with_lock(&self) {
        self.finished_with_lock.fetch_add(1, Ordering::SeqCst);
    }

    /// `n` outcomes written, `with_lock` of them for jobs holding a lock.
    pub(crate) fn written(&self, n: usize, with_lock: usize) {
        // Counted before the pending count drops, so that a reader never sees neither.
        self.locks_released
            .fetch_add(with_lock as u64, Ordering::SeqCst);
        self.finished_with_lock
            .fetch_sub(with_lock, Ordering::SeqCst);
        self.all.fetch_sub(n, Ordering::SeqCst);
    }

    /// `n` claimed jobs handed back to the database without running.
    pub(crate) fn handed_back(&self, n: usize) {
        self.all.fetch_sub(n, Ordering::SeqCst);
    }

    pub(crate) fn count(&self) -> usize {
        self.all.load(Ordering::SeqCst)
    }

    pub(crate) fn locks_pending(&self) -> bool {
        self.finished_with_lock.load(Ordering::SeqCst) > 0
    }

    /// Outcomes of lock jobs written so far: when it changed since a claim began, a lock
    /// was freed that the claim did not see.
    pub(crate) fn locks_released(&self) -> u64 {
        self.locks_released.load(Ordering::SeqCst)
    }
}

/// A running worker: stop it, force it, watch it, wait for it.
#[derive(Debug)]
pub struct WorkerHandle {
    worker_id: WorkerId,
    stop: CancellationToken,
    abort: CancellationToken,
    stats: Arc<WorkerStats>,
    done: JoinHandle<Result<()>>,
}

impl WorkerHandle {
    /// The worker's id in `procrastinate_workers` (a new one if it was pruned as stalled
    /// by another worker and registered again).
    #[must_use]
    pub fn worker_id(&self) -> i64 {
        self.worker_id.get()
    }

    /// Graceful stop: claim nothing more, let running jobs finish (up to the graceful
    /// timeout), write their outcomes, unregister.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Forced stop: abort running jobs now (reason shutdown), then as [`Self::stop`].
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    /// A token that stops the worker gracefully when cancelled.
    #[must_use]
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Outcomes written so far.
    #[must_use]
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Waits until the worker has stopped and unregistered.
    ///
    /// # Errors
    /// A database error from unregistering.
    pub async fn join(self) -> Result<()> {
        self.done
            .await
            .map_err(|e| Error::InvalidInput(format!("the worker task failed: {e}")))?
    }
}

impl App {
    /// Runs a worker until it stops: from code ([`WorkerConfig::install_signal_handlers`]
    /// false and one-shot), or on SIGINT/SIGTERM (first graceful, second forced).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad settings (nothing starts), or a database error.
    pub async fn run_worker(&self, config: WorkerConfig) -> Result<()> {
        let signals = config.install_signal_handlers;
        let handle = self.start_worker(config).await?;
        if signals {
            let (stop, abort) = (handle.stop.clone(), handle.abort.clone());
            // Listeners are made once, before any signal can come, so none is missed.
            let mut signals = StopSignals::new();
            tokio::spawn(async move {
                signals.next().await;
                tracing::info!(
                    "stop requested: finishing running jobs (signal again to abort them)"
                );
                stop.cancel();
                signals.next().await;
                tracing::warn!("second stop request: aborting running jobs");
                abort.cancel();
            });
        }
        handle.join().await
    }

    /// Starts a worker in the background.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad settings (nothing starts), or a database error
    /// while registering.
    pub async fn start_worker(&self, config: WorkerConfig) -> Result<WorkerHandle> {
        config.validate()?;
        let store = self.worker_store(&config)?;
        let pruned = store
            .prune_stalled_workers(config.stalled_worker_timeout.as_secs_f64())
            .await?;
        if !pruned.is_empty() {
            tracing::info!(?pruned, "pruned stalled workers");
        }
        let worker_id = WorkerId::new(store.register_worker().await?);
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let stats = Arc::new(WorkerStats::default());
        let done = tokio::spawn(run(
            self.clone(),
            store,
            config,
            worker_id.clone(),
            stop.clone(),
            abort.clone(),
            stats.clone(),
        ));
        Ok(WorkerHandle {
            worker_id,
            stop,
            abort,
            stats,
            done,
        })
    }
}

impl App {
    /// The store a worker writes through: the app's, or with `asynchronous_commit` a
    /// pool of its own whose sessions commit without waiting for the WAL flush.
    fn worker_store(&self, config: &WorkerConfig) -> Result<Arc<dyn Store>> {
        match (config.asynchronous_commit, self.connect_config()) {
            (true, Some(connect)) => {
                let connect = connect.with_session_setting("synchronous_commit", "off");
                let pool = connect.pool(WORKER_POOL_SIZE)?;
                Ok(Arc::new(PgStore::new(pool, connect.target())))
            }
            _ => Ok(self.store().clone()),
        }
    }
}

/// Connections of a worker's own pool: the producer, the completer's two statements, and
/// the heartbeat or abort poll.
const WORKER_POOL_SIZE: usize = 4;

/// SIGINT and SIGTERM, listened to from creation on.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt.as_mut()) => {}
                () = recv(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(
    app: App,
    store: Arc<dyn Store>,
    config: WorkerConfig,
    worker_id: WorkerId,
    stop: CancellationToken,
    abort: CancellationToken,
    stats: Arc<WorkerStats>,
) -> Result<()> {
    let name: Arc<str> = Arc::from(config.name.clone().unwrap_or_else(|| "worker".to_owned()));
    tracing::info!(worker_id = worker_id.get(), name = %name, queues = ?config.queues, concurrency = config.concurrency, "worker started");
    let services = CancellationToken::new();
    let running = running::Running::default();
    let wake = Arc::new(Notify::new());
    let unwritten = Unwritten::default();
    let run_times = executor::RunTimes::default();
    let tracker = TaskTracker::new();
    let (completions_tx, completions_rx) = mpsc::channel(config.concurrency.max(64) * 2);

    let completer = tokio::spawn(
        completer::Completer {
            store: store.clone(),
            completions: completions_rx,
            stats: stats.clone(),
            wake_producer: wake.clone(),
            wake_always: !config.wait,
            unwritten: unwritten.clone(),
            give_up: abort.clone(),
        }
        .run(),
    );
    let mut side = Vec::new();
    if config.listen_notify {
        if let Some(connect) = app.connect_config() {
            side.push(tokio::spawn(
                notifier::Notifier {
                    connect: connect.clone(),
                    queues: config.queues.clone(),
                    wake: wake.clone(),
                    running: running.clone(),
                    stop: services.clone(),
                }
                .run(),
            ));
        }
    }
    if store.job_inserted().is_some() {
        // A store without LISTEN/NOTIFY (the in-memory one) signals inserts itself.
        let store = store.clone();
        let wake = wake.clone();
        let stop = services.clone();
        side.push(tokio::spawn(async move {
            if let Some(inserted) = store.job_inserted() {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = inserted.notified() => wake.notify_one(),
                    }
                }
            }
        }));
    }
    side.push(tokio::spawn(
        aborter::Aborter {
            store: store.clone(),
            running: running.clone(),
            interval: config.abort_job_polling_interval,
            stop: services.clone(),
        }
        .run(),
    ));
    {
        let store = store.clone();
        let worker_id = worker_id.clone();
        side.push(tokio::spawn(crate::maintenance::run_every(
            config.heartbeat_interval,
            services.clone(),
            move || {
                let store = store.clone();
                let id = worker_id.get();
                async move { crate::maintenance::heartbeat::run_once(&store, id).await }
            },
        )));
    }

    if config.periodic {
        side.push(tokio::spawn(crate::maintenance::periodic::run(
            app.clone(),
            services.clone(),
        )));
    }

    let executor = executor::Executor {
        app: app.clone(),
        worker_name: name.clone(),
        worker_queues: config.queues.clone().map(Arc::from),
        additional_context: config.additional_context.clone(),
        delete_jobs: config.delete_jobs,
        middleware: config.middleware.clone().into(),
        running: running.clone(),
        unwritten: unwritten.clone(),
        completions: completions_tx,
        tracker: tracker.clone(),
        run_times: run_times.clone(),
    };
    let producer = producer::Producer {
        store: store.clone(),
        worker_id: worker_id.clone(),
        queues: config.queues.clone(),
        concurrency: config.concurrency,
        slots: Arc::new(Semaphore::new(config.concurrency)),
        prefetch: config.prefetch(),
        run_times,
        executor,
        running: running.clone(),
        wake,
        polling_interval: config.fetch_job_polling_interval,
        wait: config.wait,
        stop: stop.clone(),
        give_up: abort.clone(),
        unwritten,
        stats,
    };
    producer.run().await;

    // Shutdown: no new job; let the running ones end, up to the graceful timeout.
    tracker.close();
    if !tracker.is_empty() {
        tracing::info!(running = running.len(), "waiting for running jobs");
    }
    let graceful = async {
        match config.shutdown_graceful_timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = tracker.wait() => {}
        () = graceful => {
            tracing::warn!(running = running.len(), "graceful timeout over: aborting running jobs");
            running.abort_all(AbortReason::Shutdown);
        }
        () = abort.cancelled() => running.abort_all(AbortReason::Shutdown),
    }
    // A forced stop may still come while aborted jobs wind down.
    tokio::select! {
        () = tracker.wait() => {}
        () = abort.cancelled() => {
            running.abort_all(AbortReason::Shutdown);
            tracker.wait().await;
        }
    }
    // Every executor task is done, so the completions channel is closed: flush it.
    if let Err(error) = completer.await {
        tracing::error!(%error, "completer task failed");
    }
    services.cancel();
    for task in side {
        let _ = task.await;
    }
    let worker_id = worker_id.get();
    store.unregister_worker(worker_id).await?;
    tracing::info!(worker_id, "worker stopped");
    Ok(())
}
