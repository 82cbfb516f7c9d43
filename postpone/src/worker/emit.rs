//! The worker's side of [`crate::telemetry`]: its parts emit events under the worker's
//! current id (it changes when the registration is renewed), and build none when the app
//! has no subscriber.

use crate::telemetry::{Event, Telemetry};

use super::Registration;

/// Emits the worker's events.
#[derive(Debug, Clone)]
pub(crate) struct Emitter {
    telemetry: Telemetry,
    registration: Registration,
}

impl Emitter {
    /// Emits to `telemetry`'s subscribers, as the worker `registration` names.
    pub(crate) fn new(telemetry: Telemetry, registration: Registration) -> Self {
        Self {
            telemetry,
            registration,
        }
    }

    /// The worker's id now.
    pub(crate) fn worker_id(&self) -> i64 {
        self.registration.id()
    }

    /// Whether anyone listens.
    pub(crate) fn is_enabled(&self) -> bool {
        self.telemetry.is_enabled()
    }

    /// Builds the event (given the worker's id) only when someone listens, and emits it.
    pub(crate) fn emit<'a>(&self, event: impl FnOnce(i64) -> Event<'a>) {
        if self.telemetry.is_enabled() {
            self.telemetry.emit(&event(self.registration.id()));
        }
    }

    /// A failed statement of `operation`, which the worker will try again.
    pub(crate) fn database_error(&self, operation: &'static str, error: &crate::Error) {
        self.emit(|worker_id| Event::DatabaseError {
            worker_id,
            operation,
            error,
        });
    }
}
