//! The tables, and the trigger rules applied when they change.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use super::events::{EventType, JobEvent};
use crate::job::{Job, JobStatus, RetryDecision};
use crate::store::{
    AttemptError, CountBy, DeferJobParams, FailedAttempt, FinishJobParams, HandedBack,
    JobResultRow, Rescue, RetryJob, StartMark,
};
use crate::{DbError, Error, Result};

/// Longest queue or task name (`character varying(128)`).
pub(super) const NAME_MAX: usize = 128;

/// What the in-memory store refuses, worded as PostgreSQL would.
#[derive(Debug)]
pub(super) struct Refused(pub(super) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub(super) fn refused(message: impl Into<String>) -> Error {
    Error::Database(DbError::other(Refused(message.into())))
}

/// The tables.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) jobs: BTreeMap<i64, Job>,
    pub(super) events: Vec<JobEvent>,
    /// Worker id to last heartbeat.
    pub(super) workers: BTreeMap<i64, DateTime<Utc>>,
    pub(super) last_job_id: i64,
    pub(super) last_event_id: i64,
    pub(super) last_worker_id: i64,
    /// `procrastinate_periodic_defers`: (task name, periodic id, tick timestamp) to the
    /// job it deferred.
    pub(super) periodic_defers: BTreeMap<(String, String, i64), Option<i64>>,
    /// `postpone_worker_starts`: worker id to its start watermark.
    pub(super) starts: BTreeMap<i64, StartMark>,
    /// `postpone_rescues`, oldest first.
    pub(super) rescues: Vec<Rescue>,
    /// `postpone_job_errors`, oldest first.
    pub(super) errors: Vec<FailedAttempt>,
    /// `postpone_job_results`: what successful attempts returned.
    pub(super) results: BTreeMap<i64, JobResultRow>,
    /// `postpone_job_timeouts`: the timeouts defer calls set.
    pub(super) timeouts: BTreeMap<i64, std::time::Duration>,
    /// `postpone_job_traces`: the trace contexts of the spans that deferred jobs.
    pub(super) traces: BTreeMap<i64, String>,
    /// `postpone_queue_pauses`: the paused queues, since when.
    pub(super) pauses: BTreeMap<String, DateTime<Utc>>,
    /// `postpone_flow_limits`, `postpone_job_flow`, `postpone_flow_starts`.
    pub(super) flow: super::flow::FlowState,
    /// `postpone_workflows` and `postpone_workflow_nodes`.
    pub(super) workflows: super::workflows::Workflows,
}

/// Which columns an `UPDATE` sets: `AFTER UPDATE OF column` triggers look at this list,
/// not at whether the value changed.
#[derive(Clone, Copy)]
pub(super) struct Sets {
    pub(super) status: bool,
    pub(super) abort_requested: bool,
}

impl State {
    pub(super) fn event(&mut self, job_id: i64, event_type: EventType, at: DateTime<Utc>) {
        self.last_event_id += 1;
        self.events.push(JobEvent {
            id: self.last_event_id,
            job_id,
            event_type,
            at,
        });
    }

    /// Updates one job and fires the update triggers, in PostgreSQL's order (by name):
    /// abort_requested, then scheduled, then status events.
    pub(super) fn update(
        &mut self,
        id: i64,
        sets: Sets,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Job),
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let old_status = job.status;
        change(job);
        let new = job.clone();
        if sets.abort_requested && new.abort_requested {
            self.event(id, EventType::AbortRequested, now);
        }
        if let (Some(at), JobStatus::Todo) = (new.scheduled_at, new.status) {
            self.event(id, EventType::Scheduled, at);
        }
        if sets.status {
            if let Some(event) = EventType::for_change(old_status, new.status) {
                self.event(id, event, now);
            }
        }
    }

    pub(super) fn delete_job(&mut self, id: i64) {
        self.jobs.remove(&id);
        self.events.retain(|e| e.job_id != id);
        self.rescues.retain(|r| r.job_id != id);
        self.errors.retain(|e| e.job_id != id);
        self.results.remove(&id);
        self.timeouts.remove(&id);
        self.traces.remove(&id);
        self.flow.delete_job(id);
    }

    /// `finish_jobs.sql`: jobs still todo or doing deleted, or set to their end status
    /// (attempts + 1 when doing); the ids written, deleted ones first.
    pub(super) fn finish(&mut self, jobs: &[FinishJobParams], now: DateTime<Utc>) -> Vec<i64> {
        let mut deleted = Vec::new();
        let mut updated = Vec::new();
        for finish in jobs {
            let open = self
                .jobs
                .get(&finish.id)
                .is_some_and(|j| matches!(j.status, JobStatus::Todo | JobStatus::Doing));
            if !open {
                continue;
            }
            if finish.delete_job {
                self.delete_job(finish.id);
                deleted.push(finish.id);
            } else {
                let sets = Sets {
                    status: true,
                    abort_requested: true,
                };
                self.update(finish.id, sets, now, |job| {
                    if job.status == JobStatus::Doing {
                        job.attempts = job.attempts.saturating_add(1);
                    }
                    job.status = finish.status;
                    job.abort_requested = false;
                });
                self.record_error(finish.id, finish.error.as_ref(), now);
                if let (Some(result), JobStatus::Succeeded) = (&finish.result, finish.status) {
                    self.results
                        .entry(finish.id)
                        .or_insert_with(|| JobResultRow {
                            job_id: finish.id,
                            attempt: result.attempt,
                            worker_id: result.worker_id,
                            json: result.json.clone(),
                            finished_at: now,
                        });
                }
                updated.push(finish.id);
            }
        }
        deleted.extend(updated);
        deleted
    }

    /// `retry_jobs.sql`: doing jobs back to todo at their retry time (attempts + 1), or
    /// failed when their abort was requested; the ids written. A job back in todo must not
    /// collide on its queueing lock (the unique index): the whole statement is checked
    /// before anything is written, as PostgreSQL fails it whole.
    pub(super) fn retry(&mut self, jobs: &[RetryJob], now: DateTime<Utc>) -> Result<Vec<i64>> {
        let mut batch_locks = HashSet::new();
        for RetryJob { id, .. } in jobs {
            let Some(job) = self.jobs.get(id) else {
                continue;
            };
            if job.status != JobStatus::Doing || job.abort_requested {
                continue;
            }
            if let Some(queueing_lock) = &job.queueing_lock {
                if !batch_locks.insert(queueing_lock.clone())
                    || self.queueing_lock_taken(queueing_lock, Some(*id))
                {
                    return Err(Error::AlreadyEnqueued {
                        queueing_lock: queueing_lock.clone(),
                    });
                }
            }
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        let mut written = Vec::new();
        for RetryJob {
            id,
            decision,
            error,
        } in jobs
        {
            if self
                .jobs
                .get(id)
                .is_none_or(|j| j.status != JobStatus::Doing)
            {
                continue;
            }
            self.update(*id, sets, now, |job| {
                if job.abort_requested {
                    job.status = JobStatus::Failed;
                } else {
                    job.status = JobStatus::Todo;
                    job.attempts = job.attempts.saturating_add(1);
                    job.scheduled_at = Some(decision.retry_at.unwrap_or(now));
                    apply_retry(job, decision);
                }
            });
            self.record_error(*id, error.as_ref(), now);
            written.push(*id);
        }
        Ok(written)
    }

    /// The `postpone_job_errors` row of an outcome written with an error.
    fn record_error(&mut self, job_id: i64, error: Option<&AttemptError>, now: DateTime<Utc>) {
        if let Some(error) = error {
            self.errors.push(FailedAttempt {
                job_id,
                attempt: error.attempt,
                worker_id: error.worker_id,
                kind: error.kind.clone(),
                message: error.message.clone(),
                failed_at: now,
            });
        }
    }

    /// `hand_back_jobs.sql`: doing jobs of `worker` (any worker when `None`), or orphaned,
    /// back to todo with no worker, unless their abort was requested or a todo job holds
    /// their queueing lock.
    pub(super) fn hand_back(
        &mut self,
        worker: Option<i64>,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> HandedBack {
        let mut handed = HandedBack::default();
        let held: BTreeSet<i64> = ids.iter().copied().collect();
        for id in held {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let theirs = worker.is_some_and(|w| job.worker_id.is_some_and(|j| j != w));
            if job.status != JobStatus::Doing || theirs {
                continue;
            }
            if job.abort_requested {
                handed.abort_requested.push(id);
                continue;
            }
            if let Some(queueing_lock) = job.queueing_lock.clone() {
                if self.queueing_lock_taken(&queueing_lock, Some(id)) {
                    handed.queueing_lock_taken.push(id);
                    continue;
                }
            }
            let sets = Sets {
                status: true,
                abort_requested: false,
            };
            self.update(id, sets, now, |job| {
                job.status = JobStatus::Todo;
                job.worker_id = None;
            });
            handed.todo.push(id);
        }
        handed
    }

    /// `postpone_mark_started_v1`: raises a worker's watermark, never lowers it.
    pub(super) fn mark_started(&mut self, worker_id: i64, mark: StartMark) {
        let current = self.starts.entry(worker_id).or_insert(mark);
        *current = (*current).max(mark);
    }

    /// `(id, queue)` of these jobs, for their notifications.
    pub(super) fn queues_of(&self, ids: &[i64]) -> Vec<(i64, String)> {
        ids.iter()
            .filter_map(|id| self.jobs.get(id).map(|j| (*id, j.queue_name.clone())))
            .collect()
    }

    /// Deletes a worker: its jobs lose their `worker_id` (`ON DELETE SET NULL`, an
    /// update that fires the scheduled trigger on todo jobs).
    pub(super) fn delete_worker(&mut self, worker_id: i64, now: DateTime<Utc>) {
        self.workers.remove(&worker_id);
        let ids: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.worker_id == Some(worker_id))
            .map(|j| j.id)
            .collect();
        let sets = Sets {
            status: false,
            abort_requested: false,
        };
        for id in ids {
            self.update(id, sets, now, |job| job.worker_id = None);
        }
    }

    /// Inserts jobs, all or nothing, with their insert-trigger events; their ids.
    pub(super) fn insert_jobs(
        &mut self,
        jobs: &[DeferJobParams],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        // All or nothing: check every row before writing one.
        let mut batch_locks = HashSet::new();
        for (n, job) in (1_i64..).zip(jobs) {
            check_defer(job)?;
            if let Some(queueing_lock) = &job.queueing_lock {
                if !batch_locks.insert(queueing_lock.as_str())
                    || self.queueing_lock_taken(queueing_lock, None)
                {
                    // The rows up to the collision took ids from the sequence, and a
                    // rollback does not give them back.
                    self.last_job_id += n;
                    return Err(Error::AlreadyEnqueued {
                        queueing_lock: queueing_lock.clone(),
                    });
                }
            }
        }
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            self.last_job_id += 1;
            let id = self.last_job_id;
            self.jobs.insert(
                id,
                Job {
                    id,
                    queue_name: job.queue_name.clone(),
                    task_name: job.task_name.clone(),
                    priority: job.priority,
                    lock: job.lock.clone(),
                    queueing_lock: job.queueing_lock.clone(),
                    args: job.args.clone(),
                    status: JobStatus::Todo,
                    scheduled_at: job.scheduled_at,
                    attempts: 0,
                    abort_requested: false,
                    worker_id: None,
                    timeout: None,
                    trace_context: None,
                },
            );
            if let Some(timeout) = job.timeout {
                self.timeouts.insert(id, timeout);
            }
            if let Some(trace) = &job.trace_context {
                self.traces.insert(id, trace.clone());
            }
            self.flow.insert(id, &job.flow);
            // Insert triggers by name: scheduled, then status (deferred).
            if let Some(at) = job.scheduled_at {
                self.event(id, EventType::Scheduled, at);
            }
            self.event(id, EventType::Deferred, now);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Is a todo job already holding this queueing lock (other than `except`)?
    pub(super) fn queueing_lock_taken(&self, queueing_lock: &str, except: Option<i64>) -> bool {
        self.jobs.values().any(|j| {
            j.status == JobStatus::Todo
                && Some(j.id) != except
                && j.queueing_lock.as_deref() == Some(queueing_lock)
        })
    }
}

/// `at < now - seconds`, as `make_interval(secs => seconds)` compares.
pub(super) fn older_than(at: DateTime<Utc>, now: DateTime<Utc>, seconds: f64) -> Result<bool> {
    if !seconds.is_finite() {
        return Err(refused(format!("interval out of range: {seconds} seconds")));
    }
    // Saturating float-to-int cast: out-of-range delays clamp to the widest interval.
    #[allow(clippy::cast_possible_truncation)]
    let micros = (seconds * 1_000_000.0).round() as i64;
    let threshold = now.checked_sub_signed(TimeDelta::microseconds(micros));
    Ok(match threshold {
        Some(threshold) => at < threshold,
        // Past the calendar's ends: everything is newer (delay > 0) or older (delay < 0).
        None => micros < 0,
    })
}

pub(super) fn check_defer(job: &DeferJobParams) -> Result<()> {
    for (what, value) in [
        ("queue_name", &job.queue_name),
        ("task_name", &job.task_name),
    ] {
        if value.chars().count() > NAME_MAX {
            return Err(refused(format!(
                "value too long for type character varying({NAME_MAX}) ({what})"
            )));
        }
    }
    Ok(())
}

pub(super) fn count_name(job: &Job, by: CountBy) -> Option<&str> {
    match by {
        CountBy::Queue => Some(&job.queue_name),
        CountBy::Task => Some(&job.task_name),
        CountBy::Lock => job.lock.as_deref(),
    }
}

/// The new priority, queue and lock of a retry, when given (`coalesce(new, old)`).
pub(super) fn apply_retry(job: &mut Job, params: &RetryDecision) {
    if let Some(priority) = params.priority {
        job.priority = priority;
    }
    if let Some(queue) = &params.queue {
        job.queue_name.clone_from(queue);
    }
    if let Some(lock) = &params.lock {
        job.lock = Some(lock.clone());
    }
}
