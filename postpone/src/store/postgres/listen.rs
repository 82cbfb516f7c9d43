//! LISTEN on Procrastinate's channels, on a connection of its own (outside the pool).
//!
//! The connection's driver task turns each NOTIFY into a [`Notification`] on the
//! subscription; when the connection fails or the server closes it, the subscription gets
//! the error and ends. Reconnecting is the subscriber's choice (the worker's notifier does,
//! with backoff). Payloads this version does not understand are skipped.
//!
//! Before it LISTENs on the real channels, the connection proves that notifications reach
//! it: it LISTENs on a channel of its own and the store's pool sends a test notification
//! there. Behind a pooler in transaction mode (PgBouncer's `pool_mode = transaction`) the
//! LISTEN lands on whichever server session was free and the notification never comes
//! back; the subscription then fails with [`Error::ListenNotDelivered`] within
//! [`PROBE_TIMEOUT`] instead of leaving a worker that waits for notifications forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_postgres::AsyncMessage;

use super::{PgStore, queries};
use crate::protocol::{
    ANY_QUEUE_CHANNEL, Notification, PAUSES_CHANNEL, WORKFLOWS_CHANNEL, queue_channel,
};
use crate::store::Subscription;
use crate::{DbError, Error, Result};

/// How long the test notification may take to arrive.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes each probe channel of this process its own.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// Connects, proves notifications arrive, LISTENs on the channels of `queues` (`None`:
/// the any-queue channel), on [`PAUSES_CHANNEL`] and on [`WORKFLOWS_CHANNEL`] (whose
/// notifications it keeps: they tell `store`'s finishes to record workflow nodes), and
/// returns the subscription fed by that connection.
pub(super) async fn listen(store: &PgStore, queues: Option<&[String]>) -> Result<Subscription> {
    let mut channels: Vec<String> = match queues {
        None => vec![ANY_QUEUE_CHANNEL.to_owned()],
        Some(queues) => queues.iter().map(|q| queue_channel(q)).collect(),
    };
    channels.push(PAUSES_CHANNEL.to_owned());
    channels.push(WORKFLOWS_CHANNEL.to_owned());
    listen_on(store, &channels).await
}

/// Connects, proves notifications arrive, LISTENs on `channels`, and returns the
/// subscription fed by that connection.
pub(super) async fn listen_on(store: &PgStore, channels: &[String]) -> Result<Subscription> {
    let connect = store.connect_config();
    let (client, mut connection) = connect.open().await?;
    let (sender, subscription) = Subscription::channel();
    let probe_channel = format!(
        "postpone_probe_{}_{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let (probed, probe_arrived) = oneshot::channel();
    let driver = {
        let probe_channel = probe_channel.clone();
        let mut probed = Some(probed);
        let nodes_may_run = store.nodes_may_run.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == probe_channel => {
                        if let Some(probed) = probed.take() {
                            let _ = probed.send(());
                        }
                    }
                    Ok(AsyncMessage::Notification(n)) => match Notification::parse(n.payload()) {
                        // Kept here: this store's finishes record workflow nodes from now.
                        Some(Notification::WorkflowDeferred { .. }) => {
                            nodes_may_run.store(true, Ordering::Relaxed);
                        }
                        Some(notification) => {
                            if !sender.send(Ok(notification)) {
                                return;
                            }
                        }
                        None => {
                            tracing::debug!(payload = n.payload(), "ignoring unknown notification");
                        }
                    },
                    Ok(_) => {}
                    Err(error) => {
                        sender.send(Err(Error::Database(error.into())));
                        return;
                    }
                }
            }
            // The end of the connection is a lost link too.
            sender.send(Err(Error::Database(DbError::other(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server closed the LISTEN connection",
            )))));
        })
    };
    // The subscription owns the driver from here: dropping it (on error too) closes the
    // connection.
    let subscription = subscription.with_driver(driver);
    let database = |e: tokio_postgres::Error| Error::Database(e.into());

    client
        .batch_execute(&queries::listen(&probe_channel))
        .await
        .map_err(database)?;
    store
        .get()
        .await?
        .batch_execute(&queries::notify(&probe_channel))
        .await
        .map_err(database)?;
    match tokio::time::timeout(PROBE_TIMEOUT, probe_arrived).await {
        Ok(Ok(())) => {}
        // The driver ended: the connection is gone.
        Ok(Err(_)) => {
            return Err(Error::Database(DbError::other(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the LISTEN connection closed before its test notification arrived",
            ))));
        }
        Err(_) => {
            // Best effort: behind a pooler this may reach another session.
            let _ = client
                .batch_execute(&queries::unlisten(&probe_channel))
                .await;
            return Err(Error::ListenNotDelivered {
                target: connect.target(),
                waited: PROBE_TIMEOUT,
            });
        }
    }

    let mut statements: String = channels.iter().map(|c| queries::listen(c) + ";").collect();
    statements.push_str(&(queries::unlisten(&probe_channel) + ";"));
    client.batch_execute(&statements).await.map_err(database)?;
    Ok(subscription.with_guard(client))
}
