//! The completer: writes job outcomes to the database in batches, and never loses one.
//!
//! Outcomes arrive over a bounded channel (its capacity is the back-pressure on the
//! executors). Each pass takes everything already waiting, up to [`BATCH_MAX`], and
//! writes it with one `finish_jobs` and one `retry_jobs` statement (Procrastinate writes
//! one `procrastinate_finish_job_v1` call per job). A batch that cannot be written for
//! lack of a connection is retried, with backoff, until it is; a batch the database
//! refuses is written job by job, and a retry the database refuses (say, its queueing
//! lock is taken again) ends the job `failed` instead, so every job ends visible. When
//! the channel closes (shutdown), the completer writes what is left, then returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::job::{Job, JobStatus};
use crate::store::{FinishJobParams, RetryJobParams, Store};
use crate::{Error, Result};

/// Most outcomes written by one statement.
pub const BATCH_MAX: usize = 1000;

/// What to write for one job.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Finish { status: JobStatus, delete_job: bool },
    Retry(RetryJobParams),
}

/// One job's outcome, on its way to the database.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) job: Job,
    pub(crate) write: Write,
}

/// Counts of written outcomes.
#[derive(Debug, Default)]
pub struct WorkerStats {
    fetches: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    aborted: AtomicU64,
    retried: AtomicU64,
}

impl WorkerStats {
    /// Fetch round trips made (each claims jobs for the free slots and the local queue).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub(crate) fn count_fetch(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs written as succeeded.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }
    /// Jobs written as failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Jobs written as aborted.
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }
    /// Jobs sent back to todo for a retry.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Every outcome written.
    pub fn completed(&self) -> u64 {
        self.succeeded() + self.failed() + self.aborted() + self.retried()
    }

    fn count(&self, write: &Write) {
        let counter = match write {
            Write::Finish {
                status: JobStatus::Succeeded,
                ..
            } => &self.succeeded,
            Write::Finish {
                status: JobStatus::Aborted,
                ..
            } => &self.aborted,
            Write::Finish { .. } => &self.failed,
            Write::Retry(_) => &self.retried,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The completer's handles.
pub(crate) struct Completer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) completions: mpsc::Receiver<Completion>,
    pub(crate) stats: Arc<WorkerStats>,
    /// Woken after writes that may make other jobs available (a lock freed, a retry),
    /// or after every write when `wake_always` (one-shot: it waits for the last writes).
    pub(crate) wake_producer: Arc<Notify>,
    pub(crate) wake_always: bool,
    /// Jobs fetched whose outcome is not written yet.
    pub(crate) unwritten: super::Unwritten,
    /// Cancelled on a forced stop: stop retrying unwritable batches.
    pub(crate) give_up: CancellationToken,
}

impl Completer {
    /// Runs until the channel closes and everything is written.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            if self.completions.recv_many(&mut batch, BATCH_MAX).await == 0 {
                return;
            }
            self.write_with_retries(&batch).await;
            let with_lock = batch.iter().filter(|c| c.job.lock.is_some()).count();
            self.unwritten.written(batch.len(), with_lock);
            let wake = self.wake_always
                || with_lock > 0
                || batch.iter().any(|c| matches!(c.write, Write::Retry(_)));
            if wake {
                self.wake_producer.notify_one();
            }
            batch.clear();
        }
    }

    async fn write_with_retries(&self, batch: &[Completion]) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.write_batch(batch).await {
                Ok(()) => return,
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, jobs = batch.len(), ?backoff, "cannot write job outcomes yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.give_up.cancelled() => {
                            let ids: Vec<i64> = batch.iter().map(|c| c.job.id).collect();
                            tracing::error!(?ids, "forced stop: these outcomes were not written; the jobs stay doing and will be found stalled");
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    tracing::warn!(%error, "batch refused; writing job by job");
                    for completion in batch {
                        self.write_one(completion).await;
                    }
                    return;
                }
            }
        }
    }

    async fn write_batch(&self, batch: &[Completion]) -> Result<()> {
        let mut finishes = Vec::new();
        let mut retries = Vec::new();
        for c in batch {
            match &c.write {
                Write::Finish { status, delete_job } => finishes.push(FinishJobParams {
                    id: c.job.id,
                    status: *status,
                    delete_job: *delete_job,
                }),
                Write::Retry(params) => retries.push((c.job.id, params.clone())),
            }
        }
        let (finished, retried) = tokio::try_join!(
            self.store.finish_jobs(&finishes),
            self.store.retry_jobs(&retries)
        )?;
        let mut done: Vec<i64> = finished.into_iter().chain(retried).collect();
        done.sort_unstable();
        let written = |c: &&Completion| done.binary_search(&c.job.id).is_ok();
        if done.len() < batch.len() {
            let skipped: Vec<i64> = batch
                .iter()
                .filter(|c| !written(c))
                .map(|c| c.job.id)
                .collect();
            tracing::warn!(
                ?skipped,
                "jobs no longer doing when their outcome was written; left as they are"
            );
        }
        // Only what was written counts (a job cancelled meanwhile is not a success).
        for c in batch.iter().filter(written) {
            self.stats.count(&c.write);
        }
        Ok(())
    }

    async fn write_one(&self, completion: &Completion) {
        let single = std::slice::from_ref(completion);
        if let Err(error) = self.write_batch(single).await {
            if let Write::Retry(_) = completion.write {
                tracing::error!(job_id = completion.job.id, %error, "retry refused by the database; the job fails instead");
                let failed = Completion {
                    job: completion.job.clone(),
                    write: Write::Finish {
                        status: JobStatus::Failed,
                        delete_job: false,
                    },
                };
                if let Err(error) = self.write_batch(std::slice::from_ref(&failed)).await {
                    tracing::error!(job_id = completion.job.id, %error, "cannot write the job's failure; it stays doing and will be found stalled");
                }
            } else {
                tracing::error!(job_id = completion.job.id, %error, "cannot write the job's outcome; it stays doing and will be found stalled");
            }
        }
    }
}

/// Errors worth retrying as they are: the connection, not the data.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Connect { .. } => true,
        Error::Database(db) => db.is_connection(),
        _ => false,
    }
}
