//! The dashboard's reads on the in-memory tables, with the PostgreSQL queries' semantics
//! (`postgres/queries/list_jobs_page.sql`, `queue_overview.sql`, ...): the same scan
//! window, caps, orders and clock readings.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::MemoryStore;
use super::state::refused;
use crate::Result;
use crate::job::{Job, JobStatus};
use crate::store::{
    EventCount, EventTally, JobEvent, JobPage, JobPageParams, OldestRunnable, PageCursor,
    PeriodicDefer, QueueState, WorkerRow,
};

/// A `LIMIT` PostgreSQL would take.
pub(super) fn check_limit(limit: i64) -> Result<()> {
    if limit < 0 {
        return Err(refused("LIMIT must not be negative"));
    }
    Ok(())
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Seconds from `at` to `now`, as `extract(epoch FROM now() - at)`.
fn seconds_between(at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    // Microseconds of any real interval fit f64's exact range well enough for display.
    #[allow(clippy::cast_precision_loss)]
    let micros = (now - at).num_microseconds().unwrap_or(i64::MAX) as f64;
    micros / 1_000_000.0
}

/// `args::text`: the JSON text PostgreSQL prints for a `jsonb` (object keys shorter first,
/// then by bytes; `", "` and `": "` between items), which the search matches.
pub(super) fn jsonb_text(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                if let Some(item) = map.get(key) {
                    write_jsonb(item, out);
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl MemoryStore {
    pub(super) fn inspect_list_jobs_page(&self, params: &JobPageParams) -> JobPage {
        let state = self.state();
        let filter = &params.filter;
        let matches = |j: &&Job| {
            filter.matches(j)
                && params
                    .search
                    .as_ref()
                    .is_none_or(|s| jsonb_text(&j.args).contains(s.as_str()))
        };
        // The jobs next to the cursor, nearest first.
        let beyond: Vec<&Job> = match params.cursor {
            PageCursor::Newest => state.jobs.values().rev().collect(),
            PageCursor::Before(id) => state.jobs.range(..id).map(|(_, j)| j).rev().collect(),
            PageCursor::After(id) => state
                .jobs
                .range(id.saturating_add(1)..)
                .map(|(_, j)| j)
                .collect(),
        };
        let window = &beyond[..beyond.len().min(to_usize(params.scan_limit))];
        let candidates = if filter.id.is_some() {
            &beyond[..]
        } else {
            window
        };
        let mut jobs: Vec<Job> = candidates
            .iter()
            .copied()
            .filter(matches)
            .take(to_usize(params.limit))
            .cloned()
            .collect();
        if matches!(params.cursor, PageCursor::After(_)) {
            jobs.reverse();
        }
        JobPage {
            jobs,
            scanned: i64::try_from(window.len()).unwrap_or(i64::MAX),
            scan_edge: window.last().map(|j| j.id),
        }
    }

    pub(super) fn inspect_queue_overview(&self, count_cap: i64) -> Vec<QueueState> {
        let now = self.now();
        let state = self.state();
        let mut queues: BTreeMap<&str, QueueState> = BTreeMap::new();
        let blank = |name: &str| QueueState {
            name: name.to_owned(),
            todo: 0,
            doing: 0,
            oldest_runnable: None,
            paused_at: None,
            open_capped: false,
        };
        // One pass over the first `count_cap` open jobs by id, as the partial index gives
        // them.
        let mut open_seen = 0;
        for job in state.jobs.values() {
            let queue = queues
                .entry(job.queue_name.as_str())
                .or_insert_with(|| blank(&job.queue_name));
            match job.status {
                JobStatus::Todo => {
                    if open_seen < count_cap {
                        open_seen += 1;
                        queue.todo += 1;
                    }
                    let due = job.scheduled_at.is_none_or(|at| at <= now);
                    if due && queue.oldest_runnable.is_none() {
                        let deferred = state
                            .events
                            .iter()
                            .filter(|e| {
                                e.job_id == job.id && e.event_type == super::EventType::Deferred
                            })
                            .map(|e| e.at)
                            .min();
                        // greatest() ignores NULLs.
                        let since = match (job.scheduled_at, deferred) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                        queue.oldest_runnable = Some(OldestRunnable {
                            job_id: job.id,
                            since,
                            age_seconds: since.map(|at| seconds_between(at, now)),
                        });
                    }
                }
                JobStatus::Doing if open_seen < count_cap => {
                    open_seen += 1;
                    queue.doing += 1;
                }
                _ => {}
            }
        }
        for (name, paused_at) in &state.pauses {
            queues
                .entry(name.as_str())
                .or_insert_with(|| blank(name))
                .paused_at = Some(*paused_at);
        }
        let mut queues: Vec<QueueState> = queues.into_values().collect();
        for queue in &mut queues {
            queue.open_capped = open_seen >= count_cap;
        }
        queues
    }

    pub(super) fn inspect_list_workers(&self) -> Vec<WorkerRow> {
        let now = self.now();
        let state = self.state();
        state
            .workers
            .iter()
            .map(|(id, at)| WorkerRow {
                id: *id,
                last_heartbeat: *at,
                heartbeat_age_seconds: seconds_between(*at, now),
                running_jobs: i64::try_from(
                    state
                        .jobs
                        .values()
                        .filter(|j| j.status == JobStatus::Doing && j.worker_id == Some(*id))
                        .count(),
                )
                .unwrap_or(i64::MAX),
            })
            .collect()
    }

    pub(super) fn inspect_list_events(&self, job_id: i64, limit: i64) -> Vec<JobEvent> {
        self.state()
            .events
            .iter()
            .filter(|e| e.job_id == job_id)
            .take(to_usize(limit))
            .cloned()
            .collect()
    }

    pub(super) fn inspect_events_since(&self, after_id: i64, limit: i64) -> EventTally {
        let state = self.state();
        let mut counts: BTreeMap<(Option<DateTime<Utc>>, &str), i64> = BTreeMap::new();
        let mut last_id = None;
        for event in state
            .events
            .iter()
            .filter(|e| e.id > after_id)
            .take(to_usize(limit))
        {
            let minute = event.at.duration_trunc(TimeDelta::minutes(1)).ok();
            *counts
                .entry((minute, event.event_type.as_str()))
                .or_insert(0) += 1;
            last_id = last_id.max(Some(event.id));
        }
        EventTally {
            last_id,
            counts: counts
                .into_iter()
                .map(|((minute, event_type), count)| EventCount {
                    minute,
                    event_type: event_type.to_owned(),
                    count,
                })
                .collect(),
        }
    }

    pub(super) fn inspect_list_periodic_defers(&self) -> Vec<PeriodicDefer> {
        self.state()
            .periodic_defers
            .iter()
            .map(
                |((task_name, periodic_id, timestamp), job_id)| PeriodicDefer {
                    task_name: task_name.clone(),
                    periodic_id: periodic_id.clone(),
                    defer_timestamp: Some(*timestamp),
                    job_id: *job_id,
                },
            )
            .collect()
    }

    pub(super) fn inspect_list_locked_jobs(&self, limit: i64) -> Vec<Job> {
        let state = self.state();
        let mut jobs: Vec<Job> = state
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Doing && j.lock.is_some())
            .cloned()
            .collect();
        jobs.sort_by(|a, b| a.lock.cmp(&b.lock));
        jobs.truncate(to_usize(limit));
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::jsonb_text;

    #[test]
    fn args_are_searched_in_jsonb_text() {
        let args = serde_json::json!({"bb": [1, "x\"y"], "a": {"z": null}});
        assert_eq!(
            jsonb_text(&args),
            r#"{"a": {"z": null}, "bb": [1, "x\"y"]}"#
        );
    }
}
