//! The producer: claims jobs in batches and hands them to the executor.
//!
//! It claims as many jobs as there are free slots (up to [`FETCH_BATCH_MAX`]) in one
//! round trip (`fetch_jobs`, same rules as `procrastinate_fetch_job_v2`). After a full
//! batch it fetches again as soon as a slot frees; after a short or empty one it sleeps
//! until woken: by a NOTIFY (through the notifier), by the completer (a lock freed, a job
//! retried), or by the polling interval. Wake-ups coalesce: a burst of a thousand
//! notifications while it fetches leads to one more fetch, not a thousand. In one-shot
//! mode it returns when a fetch with free slots finds nothing and every job it fetched has
//! its outcome written (a written outcome may free a lock or schedule a retry).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::WorkerId;
use super::executor::Executor;
use crate::Error;
use crate::store::Store;

/// Most jobs claimed by one fetch.
pub const FETCH_BATCH_MAX: usize = 500;

/// The producer's handles.
pub(crate) struct Producer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) worker_id: WorkerId,
    pub(crate) queues: Option<Vec<String>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) executor: Executor,
    pub(crate) wake: Arc<Notify>,
    pub(crate) polling_interval: Duration,
    pub(crate) wait: bool,
    pub(crate) stop: CancellationToken,
    /// Jobs fetched whose outcome is not written yet.
    pub(crate) unwritten: super::Unwritten,
    pub(crate) stats: Arc<super::WorkerStats>,
}

impl Producer {
    /// Runs until stopped (or, one-shot, until no job is left).
    pub(crate) async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let mut permits = vec![first];
            while permits.len() < FETCH_BATCH_MAX {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // A finished job's lock is released only when its outcome is written: wait for
            // that, so the next job of the lock can be chosen in its turn.
            while self.unwritten.locks_pending() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.wake.notified() => {}
                }
            }
            let wanted = permits.len();
            self.stats.count_fetch();
            let jobs = match self
                .store
                .fetch_jobs(self.queues.as_deref(), self.worker_id.get(), wanted)
                .await
            {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    jobs
                }
                Err(error) if is_missing_worker(&error) => {
                    // Another worker pruned this one as stalled (its heartbeat was late),
                    // so claiming jobs under its id breaks the foreign key: register again.
                    drop(permits);
                    match self.store.register_worker().await {
                        Ok(id) => {
                            tracing::warn!(
                                old_id = self.worker_id.get(),
                                new_id = id,
                                "this worker was pruned as stalled by another one; registered again"
                            );
                            self.worker_id.set(id);
                        }
                        Err(error) => tracing::warn!(%error, "registering the worker again failed"),
                    }
                    continue;
                }
                Err(error) => {
                    drop(permits);
                    tracing::warn!(%error, ?backoff, "fetching jobs failed; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let found = jobs.len();
            self.unwritten.fetched(found);
            tracing::trace!(wanted, found, "fetched jobs");
            for (job, permit) in jobs.into_iter().zip(permits.drain(..)) {
                self.executor.spawn(job, permit);
            }
            drop(permits);
            if found == wanted {
                continue;
            }
            if !self.wait {
                if found == 0 && self.unwritten.count() == 0 {
                    tracing::info!("no job left: stopping (one-shot)");
                    return;
                }
                if found > 0 {
                    continue;
                }
                // Outcomes still being written may free a lock or schedule a retry:
                // look again once the completer has written them.
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.polling_interval) => {}
            }
        }
    }
}

/// The claim broke `procrastinate_jobs.worker_id`'s foreign key: our worker row is gone.
fn is_missing_worker(error: &Error) -> bool {
    matches!(error, Error::Database(db) if db.code() == Some("23503"))
}
