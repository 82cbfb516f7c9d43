//! The marker: writes the start watermark the producer asks for (`mark_started`, ADR 11)
//! and tells it once the database holds it, so the jobs it covers may start.
//!
//! It runs on its own, one write at a time, so that neither claims nor outcome writes wait
//! for it (they would contend for the worker's watermark row); a request that comes while
//! a write is in flight is folded into the next one. A write that fails for want of the
//! database is tried again with backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Registration;
use super::backoff::Backoff;
use super::emit::Emitter;
use super::state::WorkerState;
use crate::store::Store;

/// The marker's handles.
pub(crate) struct Marker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) state: WorkerState,
    pub(crate) registration: Registration,
    pub(crate) emitter: Emitter,
}

impl Marker {
    /// Writes the watermarks asked for until `stop` fires.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(50));
        loop {
            let Some(mark) = self.state.mark_to_write() else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.state.mark_requested() => continue,
                }
            };
            let sent = std::time::Instant::now();
            match self.store.mark_started(self.registration.id(), mark).await {
                Ok(()) => {
                    backoff.reset();
                    self.state.record_mark_round_trip(sent.elapsed());
                    self.state.mark_written(mark);
                }
                Err(error) => {
                    self.emitter.database_error("mark_started", &error);
                    let wait = backoff.next();
                    tracing::warn!(%error, ?wait, "cannot write the start watermark yet; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}
