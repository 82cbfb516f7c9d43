//! The heartbeat: tells the database this worker is alive (Procrastinate's
//! `_update_heartbeat`), so neither Python's nor our `get_stalled_jobs` lists its jobs.

use std::sync::Arc;

use crate::store::Store;

/// One heartbeat.
pub(crate) async fn run_once(store: &Arc<dyn Store>, worker_id: i64) {
    if let Err(error) = store.update_heartbeat(worker_id).await {
        tracing::warn!(%error, worker_id, "heartbeat failed");
    }
}
