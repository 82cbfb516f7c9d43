//! The aborter: finds abort requests that no notification delivered.
//!
//! Every `abort_job_polling_interval`, when the worker holds jobs (running, or waiting in
//! its local queue), asks which of them have `abort_requested` set (`list_jobs_to_abort`)
//! and aborts those. With notifications on, the notifier usually gets there first; this
//! makes it certain.

use std::sync::Arc;
use std::time::Duration;

use super::{Next, Service, Start};
use crate::context::AbortReason;
use crate::store::Store;
use crate::worker::{Emitter, WorkerState};

/// The aborter service.
#[derive(Debug)]
pub(crate) struct Aborter {
    store: Arc<dyn Store>,
    state: WorkerState,
    interval: Duration,
    emitter: Emitter,
}

impl Aborter {
    /// Polls the abort requests of the jobs `state` holds every `interval`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        state: WorkerState,
        interval: Duration,
        emitter: Emitter,
    ) -> Self {
        Self {
            store,
            state,
            interval,
            emitter,
        }
    }
}

impl Service for Aborter {
    const NAME: &'static str = "aborter";

    fn start(&self) -> Start {
        Start::After(self.interval)
    }

    async fn run_once(&mut self) -> Next {
        let ids = self.state.held_ids();
        if !ids.is_empty() {
            match self.store.list_jobs_to_abort(&ids).await {
                Ok(to_abort) => {
                    for id in to_abort {
                        if self.state.abort(id, AbortReason::UserRequest) {
                            tracing::info!(job_id = id, "abort requested");
                        }
                    }
                }
                Err(error) => {
                    self.emitter.database_error("abort_poll", &error);
                    tracing::warn!(%error, "polling abort requests failed");
                }
            }
        }
        Next::After(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{DeferJobParams, FetchJobsParams};
    use crate::telemetry::Telemetry;
    use crate::worker::{Registration, WorkerStats};

    #[tokio::test]
    async fn a_pass_aborts_the_held_jobs_whose_abort_was_requested() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let job = DeferJobParams {
            queue_name: "q".to_owned(),
            task_name: "t".to_owned(),
            priority: 0,
            lock: None,
            queueing_lock: None,
            args: serde_json::json!({}),
            scheduled_at: None,
            timeout: None,
            trace_context: None,
            flow: Vec::new(),
        };
        store.defer_jobs(&[job.clone(), job]).await.expect("defer");
        let registration = Registration::register(store.clone())
            .await
            .expect("register");
        let jobs = store
            .fetch_jobs(&FetchJobsParams::new(None, registration.id(), 2))
            .await
            .expect("fetch");
        let state = WorkerState::new(Arc::new(WorkerStats::default()));
        state.claimed(&jobs);
        state.started(jobs[0].id);
        store
            .cancel_job(jobs[1].id, true, false)
            .await
            .expect("abort");

        let emitter = Emitter::new(Telemetry::default(), registration);
        let mut aborter = Aborter::new(store, state.clone(), Duration::from_secs(5), emitter);
        assert_eq!(
            aborter.run_once().await,
            Next::After(Duration::from_secs(5))
        );
        assert!(!state.is_aborted(jobs[0].id));
        assert!(state.is_aborted(jobs[1].id), "a waiting job is aborted too");
        assert!(state.take_waiting_abort());
    }
}
