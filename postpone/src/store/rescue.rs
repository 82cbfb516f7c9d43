//! The rescue's decisions, the same for every store: which stalled jobs go back to `todo`,
//! which are retried and which fail, and the rows that record it (`docs/adr/0011-rescue.md`).

use std::time::Duration;

use crate::job::{Job, STALLED_ERROR_KIND};
use crate::store::{AttemptError, RescueDecide, RescueParams, RescueReport, RetryJob};

/// What a rescue pass does with the stalled jobs it locked.
#[derive(Debug, Default)]
pub(crate) struct RescuePlan {
    /// Never started: back to `todo` (the hand-back's rules: an abort request ends it
    /// `aborted`, a taken queueing lock keeps it for a later pass).
    pub(crate) hand_back: Vec<i64>,
    /// May have started, and its task retries it: a failed attempt.
    pub(crate) retry: Vec<RetryJob>,
    /// May have started, and no attempt is left (or the task is unknown here): `failed`,
    /// with the attempt's error.
    pub(crate) fail: Vec<(i64, AttemptError)>,
}

/// Splits `stalled` (each job with whether it may have started) by `decide`; a job that
/// may have started is a failed attempt whose error says its worker stopped.
pub(crate) fn plan(
    stalled: &[(Job, bool)],
    params: &RescueParams,
    decide: &RescueDecide<'_>,
) -> RescuePlan {
    let mut plan = RescuePlan::default();
    for (job, started) in stalled {
        if !started {
            plan.hand_back.push(job.id);
            continue;
        }
        let error = AttemptError::of(job, STALLED_ERROR_KIND, &stalled_message(job, params));
        if job.abort_requested {
            // Its abort was asked: a retry would end it failed anyway.
            plan.fail.push((job.id, error));
        } else {
            match decide(job) {
                Some(decision) => plan.retry.push(RetryJob {
                    id: job.id,
                    decision,
                    error: Some(error),
                }),
                None => plan.fail.push((job.id, error)),
            }
        }
    }
    plan
}

/// Why a job that may have started was rescued.
fn stalled_message(job: &Job, params: &RescueParams) -> String {
    let silent = Duration::from_secs_f64(params.seconds_since_heartbeat);
    match job.worker_id {
        Some(worker) => format!(
            "rescued: its worker {worker} stopped heartbeating for more than {silent:?} while the job ran"
        ),
        None => "rescued: its worker was gone (pruned) while the job ran".to_owned(),
    }
}

/// The `postpone_rescues` rows of a pass, as the columns `record_rescues` takes.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) job_ids: Vec<i64>,
    pub(crate) worker_ids: Vec<Option<i64>>,
    pub(crate) started: Vec<bool>,
    pub(crate) outcomes: Vec<&'static str>,
}

/// One row per job the pass changed (kept jobs are recorded when a later pass moves them).
pub(crate) fn records(stalled: &[(Job, bool)], report: &RescueReport) -> Records {
    let mut records = Records::default();
    for (job, started) in stalled {
        let outcome = if report.handed_back.contains(&job.id) {
            "todo"
        } else if report.retried.contains(&job.id) {
            "retried"
        } else if report.failed.contains(&job.id) {
            "failed"
        } else if report.aborted.contains(&job.id) {
            "aborted"
        } else {
            continue;
        };
        records.job_ids.push(job.id);
        records.worker_ids.push(job.worker_id);
        records.started.push(*started);
        records.outcomes.push(outcome);
    }
    records
}
