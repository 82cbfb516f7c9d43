//! The producer's local queue: claimed jobs waiting for a slot, in start order (priority
//! DESC, id ASC), split by the worker's start watermark (`docs/adr/0011-rescue.md`).
//!
//! A job at or before the watermark the database has is *ready*: it may start now. A job
//! after it is *waiting*: it must not start until a statement has raised the watermark
//! past it, so that a rescue after a `kill -9` knows it never started (back to `todo`, no
//! attempt counted). Ready jobs always come before waiting ones in start order, so the
//! queue starts jobs in the same order as one undivided queue would.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::job::Job;
use crate::store::StartMark;

/// The sort key of a job in start order.
type Key = (Reverse<i32>, i64);

fn key(job: &Job) -> Key {
    (Reverse(job.priority), job.id)
}

/// Claimed jobs waiting for a slot.
#[derive(Debug)]
pub(crate) struct LocalQueue {
    /// At or before [`Self::mark`]: may start.
    ready: BTreeMap<Key, Job>,
    /// After it: not until the watermark is raised.
    waiting: BTreeMap<Key, Job>,
    /// The watermark the database holds for this worker.
    mark: StartMark,
}

impl Default for LocalQueue {
    fn default() -> Self {
        Self {
            ready: BTreeMap::new(),
            waiting: BTreeMap::new(),
            mark: StartMark::NONE,
        }
    }
}

impl LocalQueue {
    /// Adds a claimed job: ready when the watermark already covers it.
    pub(crate) fn push(&mut self, job: Job) {
        if self.mark.covers(&job) {
            self.ready.insert(key(&job), job);
        } else {
            self.waiting.insert(key(&job), job);
        }
    }

    /// The database now holds `mark` (or a later one already): the waiting jobs it covers
    /// become ready.
    pub(crate) fn raise(&mut self, mark: StartMark) {
        if mark <= self.mark {
            return;
        }
        self.mark = mark;
        // Everything before the key just after the mark is covered.
        let after = (Reverse(mark.priority), mark.job_id.saturating_add(1));
        let still_waiting = self.waiting.split_off(&after);
        self.ready.append(&mut self.waiting);
        self.waiting = still_waiting;
    }

    /// Forgets the watermark (a new registration starts with none).
    pub(crate) fn reset_mark(&mut self) {
        self.mark = StartMark::NONE;
        self.waiting.append(&mut self.ready);
    }

    /// The next ready job, first in start order.
    pub(crate) fn pop(&mut self) -> Option<Job> {
        self.ready.pop_first().map(|(_, job)| job)
    }

    /// The watermark that makes `n` more jobs ready (the last waiting one when fewer
    /// wait); `None` when `n` is 0 or none waits.
    pub(crate) fn mark_for(&self, n: usize) -> Option<StartMark> {
        let n = n.min(self.waiting.len());
        self.waiting
            .values()
            .nth(n.checked_sub(1)?)
            .map(StartMark::at)
    }

    /// Jobs that may start now.
    pub(crate) fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Jobs that wait for the watermark.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Every job held.
    pub(crate) fn len(&self) -> usize {
        self.ready.len() + self.waiting.len()
    }

    /// Keeps the jobs for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Job) -> bool) {
        self.ready.retain(|_, job| keep(job));
        self.waiting.retain(|_, job| keep(job));
    }

    /// Takes the jobs for which `take` is true, in start order.
    pub(crate) fn take_where(&mut self, mut take: impl FnMut(&Job) -> bool) -> Vec<Job> {
        let mut taken = Vec::new();
        for jobs in [&mut self.ready, &mut self.waiting] {
            let keys: Vec<Key> = jobs
                .iter()
                .filter(|(_, job)| take(job))
                .map(|(key, _)| *key)
                .collect();
            taken.extend(keys.iter().filter_map(|key| jobs.remove(key)));
        }
        taken
    }

    /// Takes every job, in start order.
    pub(crate) fn take_all(&mut self) -> Vec<Job> {
        let mut all: Vec<Job> = std::mem::take(&mut self.ready).into_values().collect();
        all.extend(std::mem::take(&mut self.waiting).into_values());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, priority: i32) -> Job {
        Job {
            id,
            queue_name: "q".to_owned(),
            task_name: "t".to_owned(),
            priority,
            lock: None,
            queueing_lock: None,
            args: serde_json::json!({}),
            status: crate::JobStatus::Doing,
            scheduled_at: None,
            attempts: 0,
            abort_requested: false,
            worker_id: Some(1),
            timeout: None,
            trace_context: None,
        }
    }

    fn ids(queue: &mut LocalQueue) -> Vec<i64> {
        std::iter::from_fn(|| queue.pop()).map(|j| j.id).collect()
    }

    #[test]
    fn only_jobs_the_watermark_covers_start_in_start_order() {
        let mut queue = LocalQueue::default();
        for (id, priority) in [(5, 0), (3, 0), (9, 2), (4, 0), (7, 1)] {
            queue.push(job(id, priority));
        }
        assert_eq!(
            (queue.ready(), queue.waiting()),
            (0, 5),
            "nothing covered yet"
        );
        assert_eq!(queue.pop().map(|j| j.id), None);
        assert_eq!(queue.mark_for(0), None, "no job asked for, no watermark");
        // Start order: 9 (p2), 7 (p1), 3, 4, 5 (p0).
        let mark = queue.mark_for(3).expect("jobs wait");
        assert_eq!(mark, StartMark::at(&job(3, 0)));
        queue.raise(mark);
        assert_eq!(ids(&mut queue), [9, 7, 3]);
        // A job claimed later that sorts before the watermark is ready at once.
        queue.push(job(2, 0));
        queue.push(job(8, 0));
        assert_eq!(ids(&mut queue), [2]);
        queue.raise(StartMark::at(&job(3, 0)));
        assert_eq!(
            queue.pop().map(|j| j.id),
            None,
            "a watermark never goes back"
        );
        queue.raise(queue.mark_for(10).expect("jobs wait"));
        assert_eq!(ids(&mut queue), [4, 5, 8]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn take_where_takes_ready_and_waiting_jobs_in_start_order() {
        let mut queue = LocalQueue::default();
        for (id, priority) in [(1, 0), (2, 5), (3, 0), (4, 5)] {
            queue.push(job(id, priority));
        }
        queue.raise(StartMark::at(&job(4, 5)));
        assert_eq!((queue.ready(), queue.waiting()), (2, 2));
        let taken: Vec<i64> = queue
            .take_where(|j| j.id % 2 == 0 || j.id == 1)
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(taken, [2, 4, 1]);
        assert_eq!(ids(&mut queue), Vec::<i64>::new(), "3 still waits");
        assert_eq!(queue.waiting(), 1);
    }

    #[test]
    fn a_reset_watermark_makes_every_job_wait_again() {
        let mut queue = LocalQueue::default();
        queue.push(job(1, 0));
        queue.push(job(2, 0));
        queue.raise(StartMark::at(&job(1, 0)));
        assert_eq!(queue.ready(), 1);
        queue.reset_mark();
        assert_eq!((queue.ready(), queue.waiting()), (0, 2));
        assert_eq!(queue.take_all().len(), 2);
    }
}
