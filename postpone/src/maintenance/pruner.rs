//! The pruner: removes the rows of workers whose heartbeat stopped longer than
//! `stalled_worker_timeout` ago, Rust or Python alike (Procrastinate's
//! `_prune_stalled_workers`, `procrastinate_prune_stalled_workers_v1`). Their `doing` jobs
//! lose their `worker_id` (`ON DELETE SET NULL`) and stay listed as stalled. It runs once,
//! as a worker starts, before it takes any job (as a Procrastinate worker does).

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::store::Store;

/// The pruner service.
#[derive(Debug)]
pub(crate) struct Pruner {
    store: Arc<dyn Store>,
    stalled_worker_timeout: Duration,
}

impl Pruner {
    /// Prunes workers silent for longer than `stalled_worker_timeout`.
    pub(crate) fn new(store: Arc<dyn Store>, stalled_worker_timeout: Duration) -> Self {
        Self {
            store,
            stalled_worker_timeout,
        }
    }
}

impl Service for Pruner {
    const NAME: &'static str = "pruner";

    fn start(&self) -> Start {
        Start::Inline
    }

    async fn run_once(&mut self) -> Next {
        let seconds = self.stalled_worker_timeout.as_secs_f64();
        match self.store.prune_stalled_workers(seconds).await {
            Ok(pruned) if !pruned.is_empty() => tracing::info!(?pruned, "pruned stalled workers"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning stalled workers failed"),
        }
        Next::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{Clock, MemoryStore};

    #[tokio::test]
    async fn a_pass_prunes_the_silent_workers_once() {
        let clock = Clock::frozen(chrono::DateTime::UNIX_EPOCH);
        let memory = MemoryStore::with_clock(clock.clone());
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        let silent = store.register_worker().await.expect("register");
        clock.advance(Duration::from_secs(3600));
        let live = store.register_worker().await.expect("register");
        let mut pruner = Pruner::new(store, Duration::from_secs(60));
        assert_eq!(pruner.start(), Start::Inline);
        assert_eq!(pruner.run_once().await, Next::Done);
        let workers: Vec<i64> = memory.workers().iter().map(|(id, _)| *id).collect();
        assert_eq!(workers, [live], "{silent} is pruned");
    }
}
