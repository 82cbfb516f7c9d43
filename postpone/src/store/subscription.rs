//! Notifications from a store: new jobs and abort requests, as Procrastinate's LISTEN/NOTIFY
//! delivers them (`procrastinate_any_queue_v1`, `procrastinate_queue_v1#<queue>`).
//!
//! A [`Subscription`] is one link: PostgreSQL's is one connection that LISTENs, the memory
//! store's a channel it writes to on every insert and abort request. When the link is lost
//! [`Subscription::recv`] says why, and the subscriber opens a new one; what was sent in
//! between is gone (NOTIFY makes a worker fast, polling keeps it correct).

use std::fmt;

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::protocol::Notification;
use crate::{Error, Result};

/// One link to a store's notifications; dropping it stops listening.
pub struct Subscription {
    receiver: mpsc::UnboundedReceiver<Result<Notification>>,
    /// The task that feeds the link (PostgreSQL's connection), stopped with it.
    _driver: Option<AbortOnDropHandle<()>>,
    /// What must live as long as the link (PostgreSQL's client: the connection closes
    /// when it is dropped).
    _guard: Option<Box<dyn std::any::Any + Send>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription and the sender that feeds it.
    pub(crate) fn channel() -> (SubscriptionSender, Self) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let subscription = Self {
            receiver,
            _driver: None,
            _guard: None,
        };
        (SubscriptionSender(sender), subscription)
    }

    /// Sets the task that feeds the subscription (aborted when it is dropped).
    pub(crate) fn with_driver(mut self, driver: tokio::task::JoinHandle<()>) -> Self {
        self._driver = Some(AbortOnDropHandle::new(driver));
        self
    }

    /// Keeps `guard` alive as long as the subscription.
    pub(crate) fn with_guard(mut self, guard: impl std::any::Any + Send) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// The next notification, waiting for it.
    ///
    /// # Errors
    /// The link is lost (connection closed or failed; why is in the error): subscribe
    /// again. Notifications sent meanwhile are not delivered.
    pub async fn recv(&mut self) -> Result<Notification> {
        match self.receiver.recv().await {
            Some(item) => item,
            None => Err(Error::Database(crate::DbError::other(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the notification link closed",
            )))),
        }
    }
}

/// The sending half of a [`Subscription`].
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSender(mpsc::UnboundedSender<Result<Notification>>);

impl SubscriptionSender {
    /// Delivers a notification (or the error that ends the link); false once the
    /// subscription is gone.
    pub(crate) fn send(&self, item: Result<Notification>) -> bool {
        self.0.send(item).is_ok()
    }
}
