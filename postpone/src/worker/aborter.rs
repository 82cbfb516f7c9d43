//! The abort poller: finds abort requests that no NOTIFY delivered.
//!
//! Every `abort_job_polling_interval`, when jobs run here, asks which of them have
//! `abort_requested` set (`list_jobs_to_abort`) and aborts those. With LISTEN/NOTIFY on,
//! the notifier usually gets there first; this makes it certain.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::running::Running;
use crate::context::AbortReason;
use crate::store::Store;

/// The abort poller's handles.
pub(crate) struct Aborter {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) running: Running,
    pub(crate) interval: Duration,
    pub(crate) stop: CancellationToken,
}

impl Aborter {
    /// Polls until stopped.
    pub(crate) async fn run(self) {
        let stop = self.stop.clone();
        crate::maintenance::run_every(self.interval, stop, || self.run_once()).await;
    }

    /// One pass.
    pub(crate) async fn run_once(&self) {
        let ids = self.running.ids();
        if ids.is_empty() {
            return;
        }
        match self.store.list_jobs_to_abort(&ids).await {
            Ok(to_abort) => {
                for id in to_abort {
                    if self.running.abort(id, AbortReason::UserRequest) {
                        tracing::info!(job_id = id, "abort requested");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "polling abort requests failed"),
        }
    }
}
