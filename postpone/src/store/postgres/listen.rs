//! LISTEN on Procrastinate's channels, on a connection of its own (outside the pool).
//!
//! The connection's driver task turns each NOTIFY into a [`Notification`] on the
//! subscription; when the connection fails or the server closes it, the subscription gets
//! the error and ends. Reconnecting is the subscriber's choice (the worker's notifier does,
//! with backoff). Payloads this version does not understand are skipped.

use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use super::queries;
use crate::connect::ConnectConfig;
use crate::protocol::{ANY_QUEUE_CHANNEL, Notification, PAUSES_CHANNEL, queue_channel};
use crate::store::Subscription;
use crate::{DbError, Error, Result};

/// Connects, LISTENs on the channels of `queues` (`None`: the any-queue channel) and on
/// [`PAUSES_CHANNEL`], and returns the subscription fed by that connection.
pub(super) async fn listen(
    connect: &ConnectConfig,
    queues: Option<&[String]>,
) -> Result<Subscription> {
    let (client, mut connection) = connect.open().await?;
    let (sender, subscription) = Subscription::channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => match Notification::parse(n.payload()) {
                    Some(notification) => {
                        if !sender.send(Ok(notification)) {
                            return;
                        }
                    }
                    None => tracing::debug!(payload = n.payload(), "ignoring unknown notification"),
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
    });
    let mut channels: Vec<String> = match queues {
        None => vec![ANY_QUEUE_CHANNEL.to_owned()],
        Some(queues) => queues.iter().map(|q| queue_channel(q)).collect(),
    };
    channels.push(PAUSES_CHANNEL.to_owned());
    let statements: String = channels.iter().map(|c| queries::listen(c) + ";").collect();
    // The subscription owns the driver from here: dropping it (on error too) closes the
    // connection.
    let subscription = subscription.with_driver(driver);
    client
        .batch_execute(&statements)
        .await
        .map_err(|e| Error::Database(e.into()))?;
    Ok(subscription.with_guard(client))
}
