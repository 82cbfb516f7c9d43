//! Helpers for your tests: run a worker over the in-memory store until nothing is due.
//!
//! [`MemoryStore::run_all`] and [`MemoryStore::run_all_with`] are methods of the memory
//! store, written here, above the storage layer, because they run a worker (the store
//! itself knows nothing of apps and workers). See [`crate::store::memory`] for a test that
//! uses them, and `docs/testing.md`.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::store::memory::MemoryStore;
use crate::worker::{WorkerConfig, WorkerStats};
use crate::{Error, Result};

/// How often [`MemoryStore::run_all`]'s worker polls, besides waking on the store's
/// notifications.
pub const RUN_ALL_POLLING_INTERVAL: Duration = Duration::from_millis(10);

impl MemoryStore {
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
    /// concurrency); one-shot, polling every [`RUN_ALL_POLLING_INTERVAL`], without signal
    /// handlers and without the periodic deferrer (defer ticks with
    /// [`App::defer_periodic_jobs`]).
    ///
    /// # Errors
    /// As [`Self::run_all`], and [`Error::InvalidInput`] for bad settings.
    pub async fn run_all_with(&self, app: &App, config: WorkerConfig) -> Result<Arc<WorkerStats>> {
        let store: &dyn Any = app.store().as_ref();
        if !store
            .downcast_ref::<Self>()
            .is_some_and(|theirs| theirs.same_as(self))
        {
            return Err(Error::InvalidInput(
                "run_all: the app does not run on this MemoryStore: build it with .store(Arc::new(store.clone()))"
                    .to_owned(),
            ));
        }
        let config = WorkerConfig {
            wait: false,
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
