//! The notifier: LISTEN on Procrastinate's channels, and reconnect when the link drops.
//!
//! NOTIFY makes the worker fast; polling keeps it correct. The notifier has its own
//! connection (outside the pool), listens on `procrastinate_any_queue_v1` or on
//! `procrastinate_queue_v1#<queue>` for each queue, wakes the producer on
//! `job_inserted` and aborts running jobs on `abort_job_requested`. When the connection
//! drops it reconnects with backoff and wakes the producer once (notifications sent
//! while it was away are lost; the fetch catches up). It never stops the worker.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::running::Running;
use crate::connect::ConnectConfig;
use crate::context::AbortReason;
use crate::protocol::{ANY_QUEUE_CHANNEL, Notification, queue_channel};
use crate::store::postgres::queries;

/// The notifier's handles.
pub(crate) struct Notifier {
    pub(crate) connect: ConnectConfig,
    pub(crate) queues: Option<Vec<String>>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) running: Running,
    pub(crate) stop: CancellationToken,
}

impl Notifier {
    fn channels(&self) -> Vec<String> {
        match &self.queues {
            None => vec![ANY_QUEUE_CHANNEL.to_owned()],
            Some(queues) => queues.iter().map(|q| queue_channel(q)).collect(),
        }
    }

    /// Listens until stopped.
    pub(crate) async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut connected_once = false;
        loop {
            match self.listen_once(&mut connected_once, &mut backoff).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "LISTEN connection lost; reconnecting");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One connection's life: Ok when stopped, Err (why) when the link failed or closed.
    async fn listen_once(
        &self,
        connected_once: &mut bool,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let (client, mut connection) = self
            .connect
            .config()
            .connect(NoTls)
            .await
            .map_err(|e| e.to_string())?;
        // Notifications are handled in the connection's driver task; only a failure (or the
        // end of the connection, which is one too: reconnect) comes back through the channel.
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
        let handler = Handler {
            wake: self.wake.clone(),
            running: self.running.clone(),
        };
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => handler.handle(n.payload()),
                    Ok(_) => {}
                    Err(e) => {
                        let _ = failed_tx.send(e);
                        return;
                    }
                }
            }
        });
        let listen: String = self
            .channels()
            .iter()
            .map(|c| queries::listen(c) + ";")
            .collect();
        let result = async {
            client
                .batch_execute(&listen)
                .await
                .map_err(|e| e.to_string())?;
            if *connected_once {
                tracing::info!("LISTEN connection restored");
            }
            *connected_once = true;
            *backoff = Duration::from_millis(100);
            // Anything inserted while we were not listening is found by this fetch.
            self.wake.notify_one();
            tokio::select! {
                () = self.stop.cancelled() => Ok(()),
                failure = failed_rx.recv() => Err(match failure {
                    Some(e) => e.to_string(),
                    None => "the server closed the connection".to_owned(),
                }),
            }
        }
        .await;
        driver.abort();
        result
    }
}

/// What the notifier does with a notification.
struct Handler {
    wake: Arc<Notify>,
    running: Running,
}

impl Handler {
    fn handle(&self, payload: &str) {
        match Notification::parse(payload) {
            Some(Notification::JobInserted { .. }) => self.wake.notify_one(),
            Some(Notification::AbortJobRequested { job_id }) => {
                if self.running.abort(job_id, AbortReason::UserRequest) {
                    tracing::info!(job_id, "abort requested");
                }
            }
            None => tracing::debug!(payload, "ignoring unknown notification"),
        }
    }
}
