//! The notifier: receives the store's notifications, and listens again when the link drops.
//!
//! Notifications make the worker fast; polling keeps it correct. The notifier subscribes
//! to the store ([`Store::listen`]: PostgreSQL's LISTEN on `procrastinate_any_queue_v1`,
//! or on `procrastinate_queue_v1#<queue>` for each queue, and on
//! `postpone_queue_pauses_v1`), wakes the producer on `job_inserted`, aborts held jobs on
//! `abort_job_requested`, and has the producer read the paused queues again on
//! `queue_pauses_changed`. When the link drops it
//! subscribes again with backoff (capped at a second) and wakes the producer once (notifications sent while it
//! was away are lost; the fetch catches up). It never stops the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::emit::Emitter;
use super::state::WorkerState;
use crate::context::AbortReason;
use crate::protocol::Notification;
use crate::store::{Store, Subscription};
use crate::telemetry::Event;

/// The notifier's handles.
pub(crate) struct Notifier {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) queues: Option<Vec<String>>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) state: WorkerState,
    pub(crate) emitter: Emitter,
    /// The link made when the worker started, before it registered (so that a link that
    /// cannot work stops the start).
    pub(crate) first: Option<Subscription>,
}

/// First wait before subscribing again; doubled per failure up to a second.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

impl Notifier {
    /// Listens until `stop` fires.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_MIN);
        let mut first = self.first.take();
        // When the link dropped, while it is down.
        let mut lost_at: Option<Instant> = None;
        loop {
            let subscribed = match first.take() {
                Some(subscription) => Ok(Some(subscription)),
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    subscribed = self.store.listen(self.queues.as_deref()) => subscribed,
                },
            };
            let error = match subscribed {
                // The store stopped giving notifications: polling goes on.
                Ok(None) => return,
                Ok(Some(mut subscription)) => {
                    if let Some(lost_at) = lost_at.take() {
                        tracing::info!("listening for notifications again");
                        self.emitter.emit(|worker_id| Event::ListenerReconnected {
                            worker_id,
                            down_for: lost_at.elapsed(),
                        });
                    }
                    backoff.reset();
                    // Anything inserted (or paused) while we were not listening is found by
                    // this fetch (and this read of the paused queues).
                    self.state.pauses_changed();
                    self.wake.notify_one();
                    loop {
                        let received = tokio::select! {
                            () = stop.cancelled() => return,
                            received = subscription.recv() => received,
                        };
                        match received {
                            Ok(notification) => self.handle(notification),
                            Err(error) => break error,
                        }
                    }
                }
                Err(error) => error,
            };
            lost_at.get_or_insert_with(Instant::now);
            self.emitter.database_error("listen", &error);
            let wait = backoff.next();
            tracing::warn!(%error, ?wait, "notification link lost; listening again");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn handle(&self, notification: Notification) {
        match notification {
            Notification::JobInserted { .. } => self.wake.notify_one(),
            Notification::AbortJobRequested { job_id } => {
                if self.state.abort(job_id, AbortReason::UserRequest) {
                    tracing::info!(job_id, "abort requested");
                }
            }
            // A pause hands back waiting jobs; a resume calls for a claim.
            Notification::QueuePausesChanged => {
                self.state.pauses_changed();
                self.wake.notify_one();
            }
            // For waiting handles; a worker does not listen to their channel.
            Notification::JobFinished { .. } => {}
            // Taken by the store's LISTEN connection itself (it keeps what its finish
            // statements need), never passed on.
            Notification::WorkflowDeferred { .. } => {}
        }
    }
}
