//! The workflow service: finds the ends of workflow nodes that no finish of this
//! process recorded, and advances their workflows (docs/adr/0019-workflows.md).
//!
//! A Rust worker records a node's end in the statement that finishes its job, and
//! advances the workflow at once. A job ended elsewhere (run by a Python worker, cancelled
//! by a user, failed by the rescue) is found here, every `fetch_job_polling_interval`:
//! one `sync_workflows` statement (an index scan of the released nodes), then
//! `advance_workflows` for the workflows it found. So a Python parent releases its
//! children within one interval of a Rust worker's pass.

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::store::Store;
use crate::worker::Emitter;

/// The workflow service.
#[derive(Debug)]
pub(crate) struct WorkflowSync {
    store: Arc<dyn Store>,
    interval: Duration,
    emitter: Emitter,
}

impl WorkflowSync {
    /// A pass every `interval`.
    pub(crate) fn new(store: Arc<dyn Store>, interval: Duration, emitter: Emitter) -> Self {
        Self {
            store,
            interval,
            emitter,
        }
    }
}

impl Service for WorkflowSync {
    const NAME: &'static str = "workflows";

    fn start(&self) -> Start {
        Start::Now
    }

    async fn run_once(&mut self) -> Next {
        match self.store.sync_workflows().await {
            Ok(0) => {}
            Ok(advanced) => tracing::debug!(advanced, "workflows advanced by the service"),
            Err(error) => {
                self.emitter.database_error("sync_workflows", &error);
                tracing::warn!(%error, "syncing workflows failed");
            }
        }
        Next::After(self.interval)
    }
}
