//! The rescue's decisions, the same for every store: which stalled jobs go back to `todo`,
//! which are retried and which fail, and the rows that record it (`docs/adr/0011-rescue.md`).

use crate::job::{Job, RetryDecision};
use crate::store::{RescueDecide, RescueReport};

/// What a rescue pass does with the stalled jobs it locked.
#[derive(Debug, Default)]
pub(crate) struct RescuePlan {
    /// Never started: back to `todo` (the hand-back's rules: an abort request ends it
    /// `aborted`, a taken queueing lock keeps it for a later pass).
    pub(crate) hand_back: Vec<i64>,
    /// May have started, and its task retries it: a failed attempt.
    pub(crate) retry: Vec<(i64, RetryDecision)>,
    /// May have started, and no attempt is left (or the task is unknown here): `failed`.
    pub(crate) fail: Vec<i64>,
}

/// Splits `stalled` (each job with whether it may have started) by `decide`.
pub(crate) fn plan(stalled: &[(Job, bool)], decide: &RescueDecide<'_>) -> RescuePlan {
    let mut plan = RescuePlan::default();
    for (job, started) in stalled {
        if !started {
            plan.hand_back.push(job.id);
        } else if job.abort_requested {
            // Its abort was asked: a retry would end it failed anyway.
            plan.fail.push(job.id);
        } else {
            match decide(job) {
                Some(retry) => plan.retry.push((job.id, retry)),
                None => plan.fail.push(job.id),
            }
        }
    }
    plan
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
