//! The heartbeat: tells the database this worker is alive (Procrastinate's
//! `_update_heartbeat`), so neither Python's nor our `get_stalled_jobs` lists its jobs and
//! no other worker prunes it. Every `heartbeat_interval`; a failed beat is logged and the
//! next one comes on time.

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::store::Store;
use crate::worker::{Emitter, Registration};

/// The heartbeat service.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    store: Arc<dyn Store>,
    registration: Registration,
    interval: Duration,
    emitter: Emitter,
}

impl Heartbeat {
    /// Beats for `registration`'s worker every `interval`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        registration: Registration,
        interval: Duration,
        emitter: Emitter,
    ) -> Self {
        Self {
            store,
            registration,
            interval,
            emitter,
        }
    }
}

impl Service for Heartbeat {
    const NAME: &'static str = "heartbeat";

    fn start(&self) -> Start {
        // Registering wrote the first heartbeat.
        Start::After(self.interval)
    }

    async fn run_once(&mut self) -> Next {
        let worker_id = self.registration.id();
        if let Err(error) = self.store.update_heartbeat(worker_id).await {
            self.emitter.database_error("heartbeat", &error);
            tracing::warn!(%error, worker_id, "heartbeat failed");
        }
        Next::After(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{Clock, MemoryStore};
    use crate::telemetry::Telemetry;

    #[tokio::test]
    async fn a_pass_records_the_heartbeat_now() {
        let clock = Clock::frozen(chrono::DateTime::UNIX_EPOCH);
        let memory = MemoryStore::with_clock(clock.clone());
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        let registration = Registration::register(store.clone())
            .await
            .expect("register");
        clock.advance(Duration::from_secs(3600));
        let emitter = Emitter::new(Telemetry::default(), registration.clone());
        let mut heartbeat = Heartbeat::new(
            store,
            registration.clone(),
            Duration::from_secs(10),
            emitter,
        );
        assert_eq!(heartbeat.start(), Start::After(Duration::from_secs(10)));
        assert_eq!(
            heartbeat.run_once().await,
            Next::After(Duration::from_secs(10))
        );
        assert_eq!(memory.workers(), [(registration.id(), clock.now())]);
    }
}
