//! The worker: takes jobs from the store, runs them, writes their outcomes.
//!
//! Its parts, one file each, joined by channels and sharing one start/stop lifecycle
//! (`run` wires them):
//! - [`producer`]: claims jobs in batches into a local queue, starts them as slots free;
//!   `admission` decides how many it may claim, and when;
//! - `executor`: runs one attempt per job in its own task (panics caught, aborts honoured);
//! - [`completer`]: writes outcomes in batches, retrying what it cannot write yet;
//! - `notifier`: the store's notifications (new jobs, abort requests), subscribing again
//!   when the link drops;
//! - `marker`: writes the start watermark the producer asks for, so a rescue knows which
//!   claimed jobs never started;
//! - `state`: what the parts share, in one owner: held jobs, unwritten outcomes, the
//!   lock-order protocol, run times, the [`WorkerStats`] (`stats`);
//! - `registration`: the worker's row, renewed if another worker pruned it;
//! - `shutdown`: graceful and forced stops, signals, winding down running jobs;
//! - the services beside the jobs, in `maintenance/`: heartbeat, pruner, aborter,
//!   periodic deferrer.
//!
//! A worker uses only the store it was given (PostgreSQL or memory): it names no driver
//! and opens no connection itself.
//!
//! Lifecycle (Procrastinate's `Worker.run`): register, rescue the jobs of dead workers (or
//! only prune them, with the rescue off), start the services and the parts; on stop, claim nothing more, hand the jobs of the local queue
//! back to `todo`, wait for running jobs up to the graceful timeout, abort the rest (reason
//! [`AbortReason::Shutdown`](crate::task::AbortReason::Shutdown)), write every outcome,
//! stop the services, unregister. A worker killed outright leaves its jobs `doing` with
//! its id: its heartbeat stops, and the rescue of a live worker finds them
//! (`maintenance/rescuer.rs`; `get_stalled_jobs`, ours or Python's, lists them).

mod admission;
mod backoff;
pub mod completer;
pub mod config;
mod emit;
mod executor;
mod local_queue;
mod marker;
mod notifier;
pub mod producer;
mod registration;
mod shutdown;
mod state;
mod stats;

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{DeleteJobs, WorkerConfig};
pub(crate) use emit::Emitter;
pub(crate) use registration::Registration;
pub(crate) use state::WorkerState;
pub use stats::WorkerStats;

use crate::app::App;
use crate::maintenance::Services;
use crate::maintenance::aborter::Aborter;
use crate::maintenance::heartbeat::Heartbeat;
use crate::maintenance::periodic::PeriodicDeferrer;
use crate::maintenance::pruner::Pruner;
use crate::maintenance::rescuer::Rescuer;
use crate::maintenance::workflows::WorkflowSync;
use crate::store::{SessionSettings, Store, Subscription};
use crate::{Error, Result};
use admission::Admission;
use completer::Completer;
use executor::Executor;
use marker::Marker;
use notifier::Notifier;
use producer::Producer;
use shutdown::Shutdown;

/// A running worker: stop it, force it, watch it, wait for it.
#[derive(Debug)]
pub struct WorkerHandle {
    registration: Registration,
    shutdown: Shutdown,
    stats: Arc<WorkerStats>,
    done: JoinHandle<Result<()>>,
}

impl WorkerHandle {
    /// The worker's id in `procrastinate_workers` (a new one if it was pruned as stalled
    /// by another worker and registered again).
    #[must_use]
    pub fn worker_id(&self) -> i64 {
        self.registration.id()
    }

    /// Graceful stop: claim nothing more, let running jobs finish (up to the graceful
    /// timeout), write their outcomes, unregister.
    pub fn stop(&self) {
        self.shutdown.stop();
    }

    /// Forced stop: abort running jobs now (reason shutdown), then as [`Self::stop`].
    pub fn abort(&self) {
        self.shutdown.force();
    }

    /// A token that stops the worker gracefully when cancelled.
    #[must_use]
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown.stop_token()
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
        // Listening before the start: a signal that comes while the worker starts stops it
        // once it runs, where it would have killed the process with jobs claimed.
        let signals = config
            .install_signal_handlers
            .then(shutdown::StopSignals::new);
        let handle = self.start_worker(config).await?;
        if let Some(signals) = signals {
            handle.shutdown.on_signals(signals);
        }
        handle.join().await
    }

    /// Starts a worker in the background: registers it, prunes stalled workers, and
    /// returns once it runs.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad settings (nothing starts), or a database error
    /// while registering.
    pub async fn start_worker(&self, config: WorkerConfig) -> Result<WorkerHandle> {
        config.validate()?;
        // Claims and outcomes go through sessions with the worker's own settings.
        let settings =
            SessionSettings::default().with_asynchronous_commit(config.asynchronous_commit);
        let store = self.store().with_session(&settings)?;
        // Before the worker registers, so that a link that cannot work (LISTEN behind a
        // pooler in transaction mode) stops the start with nothing changed.
        let subscription = if config.listen_notify {
            let subscription = store.listen(config.queues.as_deref()).await?;
            if subscription.is_none() {
                tracing::info!(polling_interval = ?config.fetch_job_polling_interval, "poll-only mode: no LISTEN; new jobs, pauses and abort requests are found by polling");
            }
            subscription
        } else {
            None
        };
        let registration = Registration::register(store.clone()).await?;
        let emitter = Emitter::new(self.telemetry().clone(), registration.clone());
        let services = Services::new();
        // Before any job is taken: the dead workers' jobs rescued (or, without the rescue,
        // the dead workers pruned, as Procrastinate does).
        if config.rescue {
            let rescuer = Rescuer::new(
                store.clone(),
                self.clone(),
                config.stalled_worker_timeout,
                config.rescue_interval,
                emitter.clone(),
            );
            services.start(rescuer).await;
        } else {
            let pruner = Pruner::new(store.clone(), config.stalled_worker_timeout);
            services.start(pruner).await;
        }
        let shutdown = Shutdown::default();
        let stats = Arc::new(WorkerStats::default());
        let state = WorkerState::new(stats.clone());
        // Flow control (ADR 18): this app's limits, or limits other processes stored.
        if self.has_flow_limits() || store.flow_in_use().await? {
            tracing::info!("flow-control limits in use: claims honour them");
            state.flow_on();
        }
        let done = tokio::spawn(run(
            self.clone(),
            store,
            config,
            registration.clone(),
            services,
            shutdown.clone(),
            state,
            emitter,
            subscription,
        ));
        Ok(WorkerHandle {
            registration,
            shutdown,
            stats,
            done,
        })
    }
}

/// The worker's life once registered: the services beside the jobs, the pipeline
/// (producer -> executor -> completer) until a stop, then the shutdown in order.
#[allow(clippy::too_many_arguments)] // what start_worker made, handed over once
async fn run(
    app: App,
    store: Arc<dyn Store>,
    config: WorkerConfig,
    registration: Registration,
    services: Services,
    shutdown: Shutdown,
    state: WorkerState,
    emitter: Emitter,
    subscription: Option<Subscription>,
) -> Result<()> {
    tracing::info!(worker_id = registration.id(), name = config.name.as_deref().unwrap_or("worker"), queues = ?config.queues, concurrency = config.concurrency, "worker started");
    // Asks the producer to claim: notifications, and the completer after some writes.
    let wake = Arc::new(Notify::new());

    let heartbeat = Heartbeat::new(
        store.clone(),
        registration.clone(),
        config.heartbeat_interval,
        emitter.clone(),
    );
    services.start(heartbeat).await;
    let aborter = Aborter::new(
        store.clone(),
        state.clone(),
        config.abort_job_polling_interval,
        emitter.clone(),
    );
    services.start(aborter).await;
    let workflows = WorkflowSync::new(
        store.clone(),
        config.fetch_job_polling_interval,
        emitter.clone(),
    );
    services.start(workflows).await;
    if config.periodic {
        services.start(PeriodicDeferrer::new(app.clone())).await;
    }
    let marker = Marker {
        store: store.clone(),
        state: state.clone(),
        registration: registration.clone(),
        emitter: emitter.clone(),
    };
    services.spawn(|stop| marker.run(stop));
    if subscription.is_some() {
        let notifier = Notifier {
            store: store.clone(),
            queues: config.queues.clone(),
            wake: wake.clone(),
            state: state.clone(),
            emitter: emitter.clone(),
            first: subscription,
        };
        services.spawn(|stop| notifier.run(stop));
    }

    let capacity = config.concurrency.max(64) * 2;
    let (completions, completer) = Completer::start(
        store.clone(),
        capacity,
        state.clone(),
        emitter.clone(),
        wake.clone(),
        !config.wait,
        shutdown.clone(),
    );
    let executor = Executor::new(app, &config, state.clone(), emitter.clone(), completions);
    let jobs = executor.jobs().clone();
    Producer {
        store: store.clone(),
        registration: registration.clone(),
        queues: config.queues.clone(),
        slots: Arc::new(Semaphore::new(config.concurrency)),
        admission: Admission::new(config.concurrency, config.prefetch(), state.clone()),
        state: state.clone(),
        emitter,
        executor,
        wake,
        polling_interval: config.fetch_job_polling_interval,
        wait: config.wait,
        shutdown: shutdown.clone(),
    }
    .run()
    .await;

    // Nothing new starts: running jobs end, every outcome is written, then the services
    // (the heartbeat last of all) stop and the worker unregisters.
    shutdown::wind_down(&jobs, &state, config.shutdown_graceful_timeout, &shutdown).await;
    // Every executor task is done, so the completions channel is closed: flush it.
    if let Err(error) = completer.await {
        tracing::error!(%error, "completer task failed");
    }
    services.stop().await;
    registration.unregister().await?;
    tracing::info!(worker_id = registration.id(), "worker stopped");
    Ok(())
}
