//! The [`Store`] operations on the in-memory tables, one per named query of the
//! PostgreSQL store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::MemoryStore;
use super::inspect::check_limit;
use super::state::{Sets, State, apply_retry, count_name, older_than, refused};
use crate::job::{Job, JobStatus, RetryDecision};
use crate::protocol::Notification;
use crate::schema::{ApplyReport, ApplyScope};
use crate::store::rescue;
use crate::store::{
    CountBy, DeferJobParams, DeleteOldJobsParams, EstimatedCounts, EventTally, FailedAttempt,
    FetchJobsParams, FinishJobParams, HandedBack, JobCounts, JobEvent, JobFilter, JobPage,
    JobPageParams, JobResultRow, PeriodicDefer, QueuePause, QueueState, Rescue, RescueDecide,
    RescueParams, RescueReport, RetryJob, SessionSettings, StalledJobsParams, StartMark, Store,
    Subscription, WorkerRow,
};
use crate::store::{NodeParents, WorkflowParams, WorkflowRow};
use crate::{Error, Result};

#[async_trait]
impl Store for MemoryStore {
    async fn defer_jobs(&self, jobs: &[DeferJobParams]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.state().insert_jobs(jobs, self.now())?;
        let inserted: Vec<(i64, String)> = ids
            .iter()
            .zip(jobs)
            .map(|(id, job)| (*id, job.queue_name.clone()))
            .collect();
        self.announce_inserted(&inserted);
        Ok(ids)
    }

    async fn defer_periodic_job(
        &self,
        job: &DeferJobParams,
        periodic_id: &str,
        defer_timestamp: i64,
    ) -> Result<Option<i64>> {
        let id = {
            let mut state = self.state();
            let tick = (
                job.task_name.clone(),
                periodic_id.to_owned(),
                defer_timestamp,
            );
            if state.periodic_defers.contains_key(&tick) {
                return Ok(None); // another worker deferred this tick
            }
            // A failed insert (queueing lock taken) records no tick, as the rollback does.
            let ids = state.insert_jobs(std::slice::from_ref(job), self.now())?;
            state
                .periodic_defers
                .retain(|(task, periodic, timestamp), _| {
                    !(task == &tick.0 && periodic == &tick.1 && *timestamp < defer_timestamp)
                });
            state.periodic_defers.insert(tick, ids.first().copied());
            ids.first().copied()
        };
        if let Some(id) = id {
            self.announce_inserted(&[(id, job.queue_name.clone())]);
        }
        Ok(id)
    }

    async fn get_job(&self, id: i64) -> Result<Option<Job>> {
        Ok(self.state().jobs.get(&id).cloned())
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let limit = match filter.limit {
            Some(limit) if limit < 0 => {
                return Err(refused("LIMIT must not be negative"));
            }
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let matches = |j: &&Job| filter.matches(j);
        Ok(self
            .state()
            .jobs
            .values()
            .filter(matches)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn count_jobs(&self, by: CountBy, filter: &JobFilter) -> Result<Vec<JobCounts>> {
        let state = self.state();
        let mut counts: BTreeMap<&str, BTreeMap<JobStatus, i64>> = BTreeMap::new();
        for job in state.jobs.values().filter(|j| {
            filter
                .queue_name
                .as_ref()
                .is_none_or(|q| &j.queue_name == q)
                && filter.task_name.as_ref().is_none_or(|t| &j.task_name == t)
                && filter.status.is_none_or(|s| j.status == s)
                && filter
                    .lock
                    .as_ref()
                    .is_none_or(|l| j.lock.as_ref() == Some(l))
        }) {
            if let Some(name) = count_name(job, by) {
                *counts
                    .entry(name)
                    .or_default()
                    .entry(job.status)
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(name, stats)| JobCounts {
                name: name.to_owned(),
                jobs_count: stats.values().sum(),
                stats,
            })
            .collect())
    }

    async fn cancel_job(&self, id: i64, abort: bool, delete: bool) -> Result<Option<i64>> {
        let now = self.now();
        let mut state = self.state();
        let Some(status) = state.jobs.get(&id).map(|j| j.status) else {
            return Ok(None);
        };
        // Same steps as procrastinate_cancel_job_v1.
        if delete && status == JobStatus::Todo {
            state.delete_job(id);
            return Ok(Some(id));
        }
        if abort {
            if !matches!(status, JobStatus::Todo | JobStatus::Doing) {
                return Ok(None);
            }
            let sets = Sets {
                status: true,
                abort_requested: true,
            };
            let mut running_in = None;
            state.update(id, sets, now, |job| {
                job.abort_requested = true;
                if job.status == JobStatus::Todo {
                    job.status = JobStatus::Cancelled;
                } else {
                    running_in = Some(job.queue_name.clone());
                }
            });
            drop(state);
            // procrastinate_notify_queue_abort_job_v1: its worker hears of it at once.
            if let Some(queue) = running_in {
                self.notify(&queue, Notification::AbortJobRequested { job_id: id });
            }
            return Ok(Some(id));
        }
        if status != JobStatus::Todo {
            return Ok(None);
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        state.update(id, sets, now, |job| job.status = JobStatus::Cancelled);
        Ok(Some(id))
    }

    async fn retry_job(&self, id: i64, params: &RetryDecision) -> Result<()> {
        let now = self.now();
        let mut state = self.state();
        let Some(job) = state
            .jobs
            .get(&id)
            .filter(|j| matches!(j.status, JobStatus::Doing | JobStatus::Failed))
        else {
            return Err(refused(format!(
                "Job was not found or has an invalid status to retry (job id: {id})"
            )));
        };
        let status = job.status;
        retry_one(&mut state, id, status, params, now)
    }

    async fn retry_failed_job(&self, id: i64, params: &RetryDecision) -> Result<bool> {
        let now = self.now();
        let mut state = self.state();
        if state.jobs.get(&id).map(|j| j.status) != Some(JobStatus::Failed) {
            return Ok(false);
        }
        retry_one(&mut state, id, JobStatus::Failed, params, now).map(|()| true)
    }

    async fn list_stalled_jobs(&self, params: &StalledJobsParams) -> Result<Vec<Job>> {
        let now = self.now();
        let state = self.state();
        let mut stalled = Vec::new();
        for job in state.jobs.values() {
            if job.status != JobStatus::Doing
                || params.queue.as_ref().is_some_and(|q| &job.queue_name != q)
                || params
                    .task_name
                    .as_ref()
                    .is_some_and(|t| &job.task_name != t)
            {
                continue;
            }
            let heartbeat = job.worker_id.and_then(|w| state.workers.get(&w));
            let is_stalled = match heartbeat {
                None => true,
                Some(at) => older_than(*at, now, params.seconds_since_heartbeat)?,
            };
            if is_stalled {
                stalled.push(job.clone());
            }
        }
        Ok(stalled)
    }

    async fn delete_old_jobs(&self, params: &DeleteOldJobsParams) -> Result<u64> {
        let now = self.now();
        // Past the calendar's start, no event is older.
        let Some(threshold) = now.checked_sub_signed(TimeDelta::hours(i64::from(params.nb_hours)))
        else {
            return Ok(0);
        };
        let mut state = self.state();
        let mut latest: HashMap<i64, DateTime<Utc>> = HashMap::new();
        for event in &state.events {
            let at = latest.entry(event.job_id).or_insert(event.at);
            *at = (*at).max(event.at);
        }
        let doomed: Vec<i64> = state
            .jobs
            .values()
            .filter(|j| {
                params.statuses.contains(&j.status)
                    && params.queue.as_ref().is_none_or(|q| &j.queue_name == q)
                    && latest.get(&j.id).is_some_and(|at| *at < threshold)
            })
            .map(|j| j.id)
            .collect();
        let doomed_set: BTreeSet<i64> = doomed.iter().copied().collect();
        state.jobs.retain(|id, _| !doomed_set.contains(id));
        state.events.retain(|e| !doomed_set.contains(&e.job_id));
        // ON DELETE CASCADE of Postpone's tables.
        state.rescues.retain(|r| !doomed_set.contains(&r.job_id));
        state.errors.retain(|e| !doomed_set.contains(&e.job_id));
        state.results.retain(|id, _| !doomed_set.contains(id));
        state.timeouts.retain(|id, _| !doomed_set.contains(id));
        state.traces.retain(|id, _| !doomed_set.contains(id));
        for id in &doomed {
            state.flow.delete_job(*id);
        }
        state.delete_ended_workflows(&params.statuses, params.queue.as_deref(), threshold);
        Ok(doomed.len() as u64)
    }

    async fn register_worker(&self) -> Result<i64> {
        let mut state = self.state();
        state.last_worker_id += 1;
        let id = state.last_worker_id;
        state.workers.insert(id, self.now());
        state.starts.insert(id, StartMark::NONE);
        Ok(id)
    }

    async fn unregister_worker(&self, worker_id: i64) -> Result<()> {
        let mut state = self.state();
        state.starts.remove(&worker_id);
        state.delete_worker(worker_id, self.now());
        Ok(())
    }

    async fn update_heartbeat(&self, worker_id: i64) -> Result<()> {
        if let Some(at) = self.state().workers.get_mut(&worker_id) {
            *at = self.now();
        }
        Ok(())
    }

    async fn prune_stalled_workers(&self, seconds_since_heartbeat: f64) -> Result<Vec<i64>> {
        let now = self.now();
        let mut state = self.state();
        let mut pruned = Vec::new();
        for (id, at) in &state.workers {
            if older_than(*at, now, seconds_since_heartbeat)? {
                pruned.push(*id);
            }
        }
        for id in &pruned {
            state.delete_worker(*id, now);
        }
        Ok(pruned)
    }

    async fn fetch_jobs(&self, params: &FetchJobsParams<'_>) -> Result<Vec<Job>> {
        let FetchJobsParams {
            queues,
            worker_id,
            limit,
            start,
            mark,
            flow,
        } = *params;
        let now = self.now();
        let mut state = self.state();
        // Per lock: is a job doing, and which todo job comes first (priority DESC, id ASC)?
        let mut busy: HashSet<&str> = HashSet::new();
        let mut first: HashMap<&str, (i32, i64)> = HashMap::new();
        for job in state.jobs.values() {
            let Some(lock) = job.lock.as_deref() else {
                continue;
            };
            match job.status {
                JobStatus::Doing => {
                    busy.insert(lock);
                }
                JobStatus::Todo => {
                    let entry = first.entry(lock).or_insert((job.priority, job.id));
                    if job.priority > entry.0 {
                        *entry = (job.priority, job.id);
                    }
                }
                _ => {}
            }
        }
        let mut candidates: Vec<(i32, i64)> = state
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Todo
                    && queues.is_none_or(|qs| qs.contains(&j.queue_name))
                    && !state.pauses.contains_key(&j.queue_name)
                    && j.scheduled_at.is_none_or(|at| at <= now)
                    && j.lock.as_deref().is_none_or(|lock| {
                        !busy.contains(lock) && first.get(lock) == Some(&(j.priority, j.id))
                    })
            })
            .map(|j| (j.priority, j.id))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if flow && state.workers.contains_key(&worker_id) {
            // postpone_fetch_jobs_flow_v1: none beyond its buckets' limits.
            let ids: Vec<i64> = candidates.iter().map(|(_, id)| *id).collect();
            let state = &mut *state;
            let admitted = state.flow.admit(&state.jobs, &ids, limit, now);
            candidates.retain(|(_, id)| admitted.contains(id));
        }
        candidates.truncate(limit);
        if candidates.is_empty() {
            if let Some(mark) = mark {
                state.mark_started(worker_id, mark);
            }
            return Ok(Vec::new());
        }
        if !state.workers.contains_key(&worker_id) {
            // Where PostgreSQL's foreign key on worker_id refuses the claim.
            return Err(Error::WorkerNotRegistered { worker_id });
        }
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        let mut fetched = Vec::with_capacity(candidates.len());
        for (_, id) in candidates {
            state.update(id, sets, now, |job| {
                job.status = JobStatus::Doing;
                job.worker_id = Some(worker_id);
            });
            if let Some(job) = state.jobs.get(&id) {
                fetched.push(Job {
                    timeout: state.timeouts.get(&id).copied(),
                    trace_context: state.traces.get(&id).cloned(),
                    ..job.clone()
                });
            }
        }
        // postpone_fetch_jobs_v2's watermark: the mark asked, and the start-th claimed job.
        if let Some(mark) = mark {
            state.mark_started(worker_id, mark);
        }
        if start > 0 {
            if let Some(job) = fetched.get(start.min(fetched.len()) - 1) {
                state.mark_started(worker_id, StartMark::at(job));
            }
        }
        Ok(fetched)
    }

    async fn mark_started(&self, worker_id: i64, mark: StartMark) -> Result<()> {
        self.state().mark_started(worker_id, mark);
        Ok(())
    }

    async fn finish_jobs(&self, jobs: &[FinishJobParams]) -> Result<Vec<i64>> {
        let now = self.now();
        let mut state = self.state();
        let written = state.finish(jobs, now);
        // finish_jobs.sql's `nodes`, then advance_workflows for the workflows concerned.
        let node_ends: Vec<(i64, JobStatus, Option<String>)> = jobs
            .iter()
            .filter(|j| written.contains(&j.id))
            .map(|j| {
                let result = match j.status {
                    JobStatus::Succeeded => j.result.as_ref().map(|r| r.json.clone()),
                    _ => None,
                };
                (j.id, j.status, result)
            })
            .collect();
        let workflows = state.record_node_ends(&node_ends, now);
        let released = if workflows.is_empty() {
            Vec::new()
        } else {
            state.advance_workflows(&workflows, now)?
        };
        drop(state);
        self.announce_inserted(&released);
        self.announce_finished(&written);
        Ok(written)
    }

    async fn retry_jobs(&self, jobs: &[RetryJob]) -> Result<Vec<i64>> {
        let now = self.now();
        self.state().retry(jobs, now)
    }

    async fn flow_in_use(&self) -> Result<bool> {
        Ok(self.state().flow.in_use())
    }

    async fn flow_next_start(&self) -> Result<Option<std::time::Duration>> {
        let now = self.now();
        Ok(self.state().flow.next_start(now))
    }

    async fn notify_flow_released(&self, job_ids: &[i64]) -> Result<()> {
        let state = self.state();
        let released: Vec<(i64, String)> = job_ids
            .iter()
            .filter(|id| state.flow.is_limited(**id))
            .filter_map(|id| state.jobs.get(id))
            .filter(|job| job.status != JobStatus::Doing)
            .map(|job| (job.id, job.queue_name.clone()))
            .collect();
        drop(state);
        // As notify_flow_released.sql: one job_inserted per queue.
        self.announce_inserted(&released);
        Ok(())
    }

    async fn hand_back_jobs(&self, worker_id: i64, ids: &[i64]) -> Result<HandedBack> {
        let now = self.now();
        let mut state = self.state();
        let handed = state.hand_back(Some(worker_id), ids, now);
        let back = state.queues_of(&handed.todo);
        drop(state);
        // As the job_inserted NOTIFY of hand_back_jobs.sql: waiting workers take them.
        self.announce_inserted(&back);
        Ok(handed)
    }

    async fn list_jobs_to_abort(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let state = self.state();
        let wanted: BTreeSet<i64> = ids.iter().copied().collect();
        Ok(wanted
            .into_iter()
            .filter(|id| {
                state
                    .jobs
                    .get(id)
                    .is_some_and(|j| j.status == JobStatus::Doing && j.abort_requested)
            })
            .collect())
    }

    async fn rescue_stalled_jobs(
        &self,
        params: &RescueParams,
        decide: &RescueDecide<'_>,
    ) -> Result<Option<RescueReport>> {
        // One pass at a time, as the advisory lock makes it: the state's own lock.
        let now = self.now();
        let mut state = self.state();
        let mut stalled = Vec::new();
        for job in state.jobs.values().filter(|j| j.status == JobStatus::Doing) {
            let heartbeat = job.worker_id.and_then(|w| state.workers.get(&w));
            let dead = match heartbeat {
                None => true,
                Some(at) => older_than(*at, now, params.seconds_since_heartbeat)?,
            };
            if dead {
                // select_jobs_to_rescue.sql: no watermark, or at or before it: may have started.
                let mark = job.worker_id.and_then(|w| state.starts.get(&w));
                let started = mark.is_none_or(|mark| mark.covers(job));
                stalled.push((job.clone(), started));
            }
        }
        let plan = rescue::plan(&stalled, params, decide);
        let mut report = RescueReport::default();
        let handed = state.hand_back(None, &plan.hand_back, now);
        report.handed_back = handed.todo;
        report.aborted = handed.abort_requested;
        report.kept = handed.queueing_lock_taken;
        let mut ends: Vec<FinishJobParams> = report
            .aborted
            .iter()
            .map(|&id| FinishJobParams {
                id,
                status: JobStatus::Aborted,
                delete_job: false,
                error: None,
                result: None,
            })
            .collect();
        ends.extend(plan.fail.iter().map(|(id, error)| FinishJobParams {
            id: *id,
            status: JobStatus::Failed,
            delete_job: false,
            error: Some(error.clone()),
            result: None,
        }));
        let written = state.finish(&ends, now);
        report.failed.extend(
            plan.fail
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| written.contains(id)),
        );
        report.retried = state.retry(&plan.retry, now)?;
        let records = rescue::records(&stalled, &report);
        for (i, job_id) in records.job_ids.iter().enumerate() {
            state.rescues.push(Rescue {
                job_id: *job_id,
                worker_id: records.worker_ids[i],
                rescued_at: now,
                started: records.started[i],
                outcome: records.outcomes[i].to_owned(),
            });
        }
        // prune_rescued_workers.sql: the dead workers, then the watermarks left without one.
        let mut pruned = Vec::new();
        for (id, at) in &state.workers {
            if older_than(*at, now, params.seconds_since_heartbeat)? {
                pruned.push(*id);
            }
        }
        for id in &pruned {
            state.delete_worker(*id, now);
        }
        let State {
            starts, workers, ..
        } = &mut *state;
        starts.retain(|worker, _| workers.contains_key(worker));
        report.pruned_workers = pruned;
        let back = state.queues_of(&report.handed_back);
        drop(state);
        self.announce_inserted(&back);
        report.jobs = stalled.into_iter().map(|(job, _)| job).collect();
        Ok(Some(report))
    }

    async fn list_rescues(&self, job_ids: &[i64]) -> Result<Vec<Rescue>> {
        Ok(self
            .state()
            .rescues
            .iter()
            .filter(|r| job_ids.contains(&r.job_id))
            .cloned()
            .collect())
    }

    async fn get_job_result(&self, job_id: i64) -> Result<Option<JobResultRow>> {
        Ok(self.state().results.get(&job_id).cloned())
    }

    async fn listen_job_finished(&self) -> Result<Option<Subscription>> {
        Ok(Some(self.watch_finished()))
    }

    async fn wait_for_job(&self, _job_id: i64) -> Result<()> {
        // Every end is announced: nothing to record.
        Ok(())
    }

    async fn list_job_errors(&self, job_ids: &[i64]) -> Result<Vec<FailedAttempt>> {
        let mut errors: Vec<FailedAttempt> = self
            .state()
            .errors
            .iter()
            .filter(|e| job_ids.contains(&e.job_id))
            .cloned()
            .collect();
        // By job, oldest first (the rows are in the order written).
        errors.sort_by_key(|e| e.job_id);
        Ok(errors)
    }

    async fn defer_workflow(&self, workflow: &WorkflowParams) -> Result<i64> {
        let (id, inserted) = self.state().defer_workflow(workflow, self.now())?;
        self.announce_inserted(&inserted);
        Ok(id)
    }

    async fn get_workflow(&self, id: i64) -> Result<Option<WorkflowRow>> {
        Ok(self.state().get_workflow(id))
    }

    async fn list_workflows(&self, limit: i64) -> Result<Vec<WorkflowRow>> {
        check_limit(limit)?;
        Ok(self
            .state()
            .list_workflows(usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    async fn list_parent_outcomes(&self, job_id: i64) -> Result<Option<NodeParents>> {
        Ok(self.state().parent_outcomes(job_id))
    }

    async fn sync_workflows(&self) -> Result<u64> {
        let now = self.now();
        let mut state = self.state();
        let workflows = state.sync_workflows(now);
        let released = state.advance_workflows(&workflows, now)?;
        drop(state);
        self.announce_inserted(&released);
        Ok(workflows.len() as u64)
    }

    async fn pause_queue(&self, queue: &str) -> Result<bool> {
        let now = self.now();
        let changed = {
            let mut state = self.state();
            if state.pauses.contains_key(queue) {
                false
            } else {
                state.pauses.insert(queue.to_owned(), now);
                true
            }
        };
        if changed {
            self.notify_all(Notification::QueuePausesChanged);
        }
        Ok(changed)
    }

    async fn resume_queue(&self, queue: &str) -> Result<bool> {
        let changed = self.state().pauses.remove(queue).is_some();
        if changed {
            self.notify_all(Notification::QueuePausesChanged);
        }
        Ok(changed)
    }

    async fn list_queue_pauses(&self) -> Result<Vec<QueuePause>> {
        Ok(self
            .state()
            .pauses
            .iter()
            .map(|(queue_name, paused_at)| QueuePause {
                queue_name: queue_name.clone(),
                paused_at: *paused_at,
            })
            .collect())
    }

    async fn list_jobs_page(&self, params: &JobPageParams) -> Result<JobPage> {
        check_limit(params.limit)?;
        check_limit(params.scan_limit)?;
        Ok(self.inspect_list_jobs_page(params))
    }

    async fn queue_overview(&self, count_cap: i64) -> Result<Vec<QueueState>> {
        check_limit(count_cap)?;
        Ok(self.inspect_queue_overview(count_cap))
    }

    async fn estimate_job_counts(&self, _sample_pages: i64) -> Result<EstimatedCounts> {
        // Memory is never large: always counted.
        Ok(EstimatedCounts {
            exact: true,
            counts: self
                .count_jobs(CountBy::Queue, &JobFilter::default())
                .await?,
        })
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRow>> {
        Ok(self.inspect_list_workers())
    }

    async fn list_events(&self, job_id: i64, limit: i64) -> Result<Vec<JobEvent>> {
        check_limit(limit)?;
        Ok(self.inspect_list_events(job_id, limit))
    }

    async fn last_event_id(&self) -> Result<Option<i64>> {
        Ok(self.state().events.iter().map(|e| e.id).max())
    }

    async fn events_since(&self, after_id: i64, limit: i64) -> Result<EventTally> {
        check_limit(limit)?;
        Ok(self.inspect_events_since(after_id, limit))
    }

    async fn list_periodic_defers(&self) -> Result<Vec<PeriodicDefer>> {
        Ok(self.inspect_list_periodic_defers())
    }

    async fn list_locked_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        check_limit(limit)?;
        Ok(self.inspect_list_locked_jobs(limit))
    }

    async fn get_job_timeout(&self, job_id: i64) -> Result<Option<std::time::Duration>> {
        Ok(self.state().timeouts.get(&job_id).copied())
    }

    async fn listen(&self, queues: Option<&[String]>) -> Result<Option<Subscription>> {
        Ok(Some(self.subscribe(queues)))
    }

    fn with_session(&self, _settings: &SessionSettings) -> Result<Arc<dyn Store>> {
        // No sessions here: nothing to set.
        Ok(Arc::new(self.clone()))
    }

    async fn apply_schema(&self, scope: ApplyScope) -> Result<ApplyReport> {
        // The tables are this build's schema from the start.
        Ok(ApplyReport {
            already_present: crate::schema::migrations()
                .iter()
                .filter(|m| scope.includes(m.phase))
                .map(crate::schema::Migration::label)
                .collect(),
            ..ApplyReport::default()
        })
    }

    async fn check_schema(&self) -> Result<String> {
        Ok(crate::schema::newest_version(crate::schema::migrations()))
    }
}

/// procrastinate_retry_job_v2's steps for job `id`, found with `status` (doing or failed)
/// under the state's lock.
fn retry_one(
    state: &mut State,
    id: i64,
    status: JobStatus,
    params: &RetryDecision,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(job) = state.jobs.get(&id) else {
        return Err(refused(format!(
            "Job was not found or has an invalid status to retry (job id: {id})"
        )));
    };
    if status == JobStatus::Doing && job.abort_requested {
        let sets = Sets {
            status: true,
            abort_requested: false,
        };
        state.update(id, sets, now, |job| job.status = JobStatus::Failed);
        return Ok(());
    }
    if job.abort_requested {
        return Err(refused(
            "new row for relation \"procrastinate_jobs\" violates check constraint \"check_not_todo_abort_requested\"",
        ));
    }
    if let Some(queueing_lock) = &job.queueing_lock {
        if state.queueing_lock_taken(queueing_lock, Some(id)) {
            return Err(Error::AlreadyEnqueued {
                queueing_lock: queueing_lock.clone(),
            });
        }
    }
    let sets = Sets {
        status: true,
        abort_requested: false,
    };
    state.update(id, sets, now, |job| {
        job.status = JobStatus::Todo;
        job.attempts = job.attempts.saturating_add(1);
        job.scheduled_at = Some(params.retry_at.unwrap_or(now));
        apply_retry(job, params);
    });
    Ok(())
}
