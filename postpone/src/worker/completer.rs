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
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::backoff::Backoff;
use super::emit::Emitter;
use super::shutdown::Shutdown;
use super::state::WorkerState;
use crate::Result;
use crate::job::{Job, JobStatus, RetryDecision};
use crate::store::{AttemptError, AttemptResult, FinishJobParams, RetryJob, Store};
use crate::telemetry::{BatchKind, Event, Outcome};

/// Most outcomes written by one statement.
pub const BATCH_MAX: usize = 1000;

/// What to write for one job.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Finish { status: JobStatus, delete_job: bool },
    Retry(RetryDecision),
}

impl Write {
    /// How the attempt ended.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::Finish {
                status: JobStatus::Succeeded,
                ..
            } => Outcome::Succeeded,
            Self::Finish {
                status: JobStatus::Aborted,
                ..
            } => Outcome::Aborted,
            Self::Finish { .. } => Outcome::Failed,
            Self::Retry(_) => Outcome::Retried,
        }
    }
}

/// One job's outcome, on its way to the database.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) job: Job,
    pub(crate) write: Write,
    /// Why the attempt did not succeed, written with its outcome.
    pub(crate) error: Option<AttemptError>,
    /// What the attempt returned, when it succeeded and set a result: written with its
    /// outcome.
    pub(crate) result: Option<AttemptResult>,
}

/// The completer's handles.
pub(crate) struct Completer {
    store: Arc<dyn Store>,
    completions: mpsc::Receiver<Completion>,
    state: WorkerState,
    emitter: Emitter,
    /// Woken after writes that may make other jobs available (a lock freed, a retry),
    /// or after every write when `wake_always` (one-shot: it waits for the last writes).
    wake_producer: Arc<Notify>,
    wake_always: bool,
    /// A forced stop ends the retries of unwritable batches.
    shutdown: Shutdown,
}

impl Completer {
    /// Starts the completer; outcomes go in through the returned sender (its capacity is
    /// the back-pressure on the executors), and the task ends once every sender is gone
    /// and everything is written.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        state: WorkerState,
        emitter: Emitter,
        wake_producer: Arc<Notify>,
        wake_always: bool,
        shutdown: Shutdown,
    ) -> (mpsc::Sender<Completion>, JoinHandle<()>) {
        let (sender, completions) = mpsc::channel(capacity);
        let completer = Self {
            store,
            completions,
            state,
            emitter,
            wake_producer,
            wake_always,
            shutdown,
        };
        (sender, tokio::spawn(completer.run()))
    }

    /// Runs until the channel closes and everything is written.
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            if self.completions.recv_many(&mut batch, BATCH_MAX).await == 0 {
                return;
            }
            let began = Instant::now();
            let span = tracing::info_span!(
                "postpone.complete",
                worker_id = self.emitter.worker_id(),
                jobs = batch.len(),
            );
            let written = self.write_with_retries(&batch).instrument(span).await;
            self.emitter.emit(|worker_id| Event::BatchWritten {
                worker_id,
                kind: BatchKind::Outcomes,
                size: batch.len(),
                duration: began.elapsed(),
            });
            let with_lock = batch.iter().filter(|c| c.job.lock.is_some()).count();
            let flow = self.state.flow();
            if flow {
                self.release_flow(&batch).await;
            }
            self.state.written(batch.len(), with_lock, written);
            let wake = self.wake_always
                || with_lock > 0
                || flow
                || batch.iter().any(|c| matches!(c.write, Write::Retry(_)));
            if wake {
                self.wake_producer.notify_one();
            }
            batch.clear();
        }
    }

    /// Under flow control (ADR 18): the outcomes just written freed the slots of their
    /// flow-limited jobs; the workers waiting for them (on any process) are told now, not
    /// at their next poll. A failure costs only that wake-up.
    async fn release_flow(&self, batch: &[Completion]) {
        let ids: Vec<i64> = batch.iter().map(|c| c.job.id).collect();
        if let Err(error) = self.store.notify_flow_released(&ids).await {
            self.emitter.database_error("notify_flow_released", &error);
            tracing::warn!(%error, "cannot tell the workers that flow-limited jobs ended; they find out at their next poll");
        }
    }

    /// Writes a batch, never losing an outcome: a lost connection is waited out (until a
    /// forced stop), a refused batch is written job by job. The outcomes the database took.
    async fn write_with_retries(&self, batch: &[Completion]) -> Vec<Outcome> {
        let mut backoff = Backoff::new(Duration::from_millis(50));
        loop {
            match self.write_batch(batch).await {
                Ok(written) => return written,
                Err(error) if error.is_transient() => {
                    self.emitter.database_error("write_outcomes", &error);
                    let wait = backoff.next();
                    tracing::warn!(%error, jobs = batch.len(), ?wait, "cannot write job outcomes yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.shutdown.forced() => {
                            let ids: Vec<i64> = batch.iter().map(|c| c.job.id).collect();
                            tracing::error!(?ids, "forced stop: these outcomes were not written; the jobs stay doing and will be found stalled");
                            return Vec::new();
                        }
                    }
                }
                Err(error) => {
                    self.emitter.database_error("write_outcomes", &error);
                    tracing::warn!(%error, "batch refused; writing job by job");
                    let mut written = Vec::new();
                    for completion in batch {
                        written.extend(self.write_one(completion).await);
                    }
                    return written;
                }
            }
        }
    }

    /// One `finish_jobs` and one `retry_jobs` statement; the outcomes written (a job no
    /// longer doing, cancelled meanwhile say, is left as it is and not counted).
    async fn write_batch(&self, batch: &[Completion]) -> Result<Vec<Outcome>> {
        let mut finishes = Vec::new();
        let mut retries = Vec::new();
        for c in batch {
            match &c.write {
                Write::Finish { status, delete_job } => finishes.push(FinishJobParams {
                    id: c.job.id,
                    status: *status,
                    delete_job: *delete_job,
                    error: c.error.clone(),
                    result: c.result.clone(),
                }),
                Write::Retry(decision) => retries.push(RetryJob {
                    id: c.job.id,
                    decision: decision.clone(),
                    error: c.error.clone(),
                }),
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
        Ok(batch
            .iter()
            .filter(written)
            .map(|c| c.write.outcome())
            .collect())
    }

    /// Writes one outcome; a retry the database refuses (its queueing lock is taken again,
    /// say) ends the job `failed` instead, so every job ends visible.
    async fn write_one(&self, completion: &Completion) -> Vec<Outcome> {
        let single = std::slice::from_ref(completion);
        let error = match self.write_batch(single).await {
            Ok(written) => return written,
            Err(error) => error,
        };
        if let Write::Retry(_) = completion.write {
            tracing::error!(job_id = completion.job.id, %error, "retry refused by the database; the job fails instead");
            let failed = Completion {
                job: completion.job.clone(),
                write: Write::Finish {
                    status: JobStatus::Failed,
                    delete_job: false,
                },
                error: completion.error.clone(),
                result: None,
            };
            match self.write_batch(std::slice::from_ref(&failed)).await {
                Ok(written) => return written,
                Err(error) => {
                    tracing::error!(job_id = completion.job.id, %error, "cannot write the job's failure; it stays doing and will be found stalled");
                }
            }
        } else {
            tracing::error!(job_id = completion.job.id, %error, "cannot write the job's outcome; it stays doing and will be found stalled");
        }
        Vec::new()
    }
}
