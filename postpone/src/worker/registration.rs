//! The worker's row in `procrastinate_workers`: registered at start, renewed when another
//! worker pruned it as stalled, removed at stop.
//!
//! Its id is shared by the parts that use it (the producer claims under it, the heartbeat
//! beats for it) and changes when the row is renewed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::Result;
use crate::store::Store;

/// The worker's registration.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    store: Arc<dyn Store>,
    id: Arc<AtomicI64>,
}

impl Registration {
    /// Registers a new worker (`procrastinate_register_worker_v1`).
    pub(crate) async fn register(store: Arc<dyn Store>) -> Result<Self> {
        let id = store.register_worker().await?;
        Ok(Self {
            store,
            id: Arc::new(AtomicI64::new(id)),
        })
    }

    /// The worker's id now.
    pub(crate) fn id(&self) -> i64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Registers again after the row was found gone ([`crate::Error::WorkerNotRegistered`]:
    /// another worker pruned this one because its heartbeat was late). A failure is logged;
    /// the next claim finds the row still gone and calls this again.
    pub(crate) async fn renew(&self) {
        match self.store.register_worker().await {
            Ok(id) => {
                tracing::warn!(
                    old_id = self.id(),
                    new_id = id,
                    "this worker was pruned as stalled by another one; registered again"
                );
                self.id.store(id, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "registering the worker again failed"),
        }
    }

    /// Removes the row (`procrastinate_unregister_worker_v1`).
    pub(crate) async fn unregister(&self) -> Result<()> {
        self.store.unregister_worker(self.id()).await
    }
}
