//! Flow control in memory: `postpone_flow_limits`, `postpone_job_flow` and
//! `postpone_flow_starts` (schema migration 0008), and the reading of
//! `postpone_fetch_jobs_flow_v1`'s rules that the memory store's claim applies: no job
//! starts beyond a bucket's running jobs (counted from the jobs `doing` now) or starts in
//! the last period.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};

use crate::job::{Job, JobStatus};
use crate::store::FlowBucket;

/// The flow-control tables.
#[derive(Debug, Default)]
pub(super) struct FlowState {
    /// `postpone_flow_limits`: bucket name to its limits.
    limits: BTreeMap<String, FlowBucket>,
    /// `postpone_job_flow`: job id to the buckets it counts against.
    jobs: BTreeMap<i64, Vec<String>>,
    /// `postpone_flow_starts`: the starts of rate-limited buckets, oldest first.
    starts: Vec<(String, DateTime<Utc>)>,
}

/// A rate's period as a time delta.
fn period_of(bucket: &FlowBucket) -> Option<(u32, TimeDelta)> {
    bucket.rate.map(|(rate, period)| {
        let ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
        (rate, TimeDelta::milliseconds(ms))
    })
}

impl FlowState {
    /// Whether any limit is stored.
    pub(super) fn in_use(&self) -> bool {
        !self.limits.is_empty()
    }

    /// The defer's writes: the job's buckets, and each bucket's limits (latest wins).
    pub(super) fn insert(&mut self, job_id: i64, buckets: &[FlowBucket]) {
        if buckets.is_empty() {
            return;
        }
        for bucket in buckets {
            self.limits.insert(bucket.name.clone(), bucket.clone());
        }
        self.jobs
            .insert(job_id, buckets.iter().map(|b| b.name.clone()).collect());
    }

    /// Deleted with its job.
    pub(super) fn delete_job(&mut self, job_id: i64) {
        self.jobs.remove(&job_id);
    }

    /// Whether this job counts against a bucket.
    pub(super) fn is_limited(&self, job_id: i64) -> bool {
        self.jobs.contains_key(&job_id)
    }

    /// Room left in each bucket in use now (`postpone_flow_room_v1`); buckets missing have
    /// their whole limit.
    fn room(&self, jobs: &BTreeMap<i64, Job>, now: DateTime<Utc>) -> HashMap<&str, i64> {
        let mut running: HashMap<&str, i64> = HashMap::new();
        for (id, buckets) in &self.jobs {
            if jobs.get(id).is_some_and(|j| j.status == JobStatus::Doing) {
                for bucket in buckets {
                    *running.entry(bucket.as_str()).or_default() += 1;
                }
            }
        }
        let mut started: HashMap<&str, i64> = HashMap::new();
        for (bucket, at) in &self.starts {
            let Some((_, period)) = self.limits.get(bucket).and_then(period_of) else {
                continue;
            };
            if *at > now - period {
                *started.entry(bucket.as_str()).or_default() += 1;
            }
        }
        self.limits
            .iter()
            .map(|(name, bucket)| {
                let used =
                    |counts: &HashMap<&str, i64>| counts.get(name.as_str()).copied().unwrap_or(0);
                let room = [
                    bucket
                        .max_running
                        .map(|max| i64::from(max) - used(&running)),
                    bucket
                        .rate
                        .map(|(rate, _)| i64::from(rate) - used(&started)),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(i64::MAX);
                (name.as_str(), room)
            })
            .collect()
    }

    /// Of `candidates` (job ids in fetch order), those that may start now within their
    /// buckets' limits, at most `limit`; their starts are recorded.
    pub(super) fn admit(
        &mut self,
        jobs: &BTreeMap<i64, Job>,
        candidates: &[i64],
        limit: usize,
        now: DateTime<Utc>,
    ) -> Vec<i64> {
        let mut room: HashMap<String, i64> = self
            .room(jobs, now)
            .into_iter()
            .map(|(name, room)| (name.to_owned(), room))
            .collect();
        let mut admitted = Vec::new();
        for &id in candidates {
            if admitted.len() >= limit {
                break;
            }
            let Some(buckets) = self.jobs.get(&id) else {
                admitted.push(id);
                continue;
            };
            let fits = buckets
                .iter()
                .all(|name| room.get(name).is_none_or(|room| *room > 0));
            if !fits {
                continue;
            }
            for name in buckets {
                if let Some(room) = room.get_mut(name) {
                    *room -= 1;
                }
                if self.limits.get(name).is_some_and(|b| b.rate.is_some()) {
                    self.starts.push((name.clone(), now));
                }
            }
            admitted.push(id);
        }
        // Starts older than their period (and 10 s more) are forgotten.
        let limits = &self.limits;
        self.starts.retain(|(name, at)| {
            limits
                .get(name)
                .and_then(period_of)
                .is_some_and(|(_, period)| *at >= now - period - TimeDelta::seconds(10))
        });
        admitted
    }

    /// How long until a rate-limited bucket next has room (`postpone_flow_next_start_v1`):
    /// the earliest time a bucket's rate-th newest start leaves its window, in the future
    /// or less than 50 ms ago (then: now).
    pub(super) fn next_start(&self, now: DateTime<Utc>) -> Option<std::time::Duration> {
        let mut per_bucket: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
        for (name, at) in &self.starts {
            per_bucket.entry(name.as_str()).or_default().push(*at);
        }
        per_bucket
            .into_iter()
            .filter_map(|(name, mut starts)| {
                let (rate, period) = self.limits.get(name).and_then(period_of)?;
                starts.sort_unstable_by(|a, b| b.cmp(a));
                let leaving = starts.get(usize::try_from(rate).ok()?.checked_sub(1)?)?;
                let due = *leaving + period;
                (due > now - TimeDelta::milliseconds(50)).then_some(due.max(now))
            })
            .min()
            .map(|due| (due - now).to_std().unwrap_or_default())
    }
}
