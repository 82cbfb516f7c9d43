//! What the store gives people who look at a busy queue (the dashboard, `postpone-web`):
//! reads that stay cheap on a table of millions of jobs. Plain data, shared by both stores.
//!
//! Each read is bounded by an index or a cap, never by the table's size: a page of jobs reads
//! at most [`JobPageParams::scan_limit`] rows (keyset pagination, no OFFSET); counts of
//! waiting and running jobs stop at a cap; counts of finished jobs come from a sample of
//! the table's pages once it is large ([`EstimatedCounts::exact`] says which); throughput
//! comes from the events after an id ([`EventTally`]), through the primary key.

use chrono::{DateTime, Utc};

use super::JobFilter;
use crate::job::Job;

/// Where a page of jobs starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageCursor {
    /// The newest jobs.
    #[default]
    Newest,
    /// Jobs with an id below this one ("older").
    Before(i64),
    /// Jobs with an id above this one ("newer").
    After(i64),
}

/// Which page of jobs to read ([`Store::list_jobs_page`](super::Store::list_jobs_page)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPageParams {
    /// The filters (`limit` is not used: see [`Self::limit`]).
    pub filter: JobFilter,
    /// Only jobs whose args, as JSON text, contain this (case sensitive).
    pub search: Option<String>,
    /// Where the page starts.
    pub cursor: PageCursor,
    /// At most this many jobs.
    pub limit: i64,
    /// Look at no more than this many jobs next to the cursor (the scan window): a page
    /// never reads more rows than that, however rare its matches. Not applied to an id
    /// filter.
    pub scan_limit: i64,
}

/// A page of jobs ([`Store::list_jobs_page`](super::Store::list_jobs_page)).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobPage {
    /// The matching jobs, newest first.
    pub jobs: Vec<Job>,
    /// How many jobs the scan window held (at most `scan_limit`).
    pub scanned: i64,
    /// The window's far end: its lowest id (cursor `Newest` or `Before`) or its highest
    /// (`After`); `None` when the window was empty.
    pub scan_edge: Option<i64>,
}

impl JobPage {
    /// Whether jobs lie beyond the scan window (it was full): a page with fewer jobs than
    /// asked may continue from [`Self::scan_edge`].
    #[must_use]
    pub fn window_full(&self, params: &JobPageParams) -> bool {
        params.filter.id.is_none() && self.scanned >= params.scan_limit
    }
}

/// One queue at a glance ([`Store::queue_overview`](super::Store::queue_overview)).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueState {
    /// The queue.
    pub name: String,
    /// Waiting jobs (`todo`, due or scheduled): exact, or a lower bound when
    /// [`Self::open_capped`].
    pub todo: i64,
    /// Running jobs: exact, or a lower bound when [`Self::open_capped`].
    pub doing: i64,
    /// The open (todo or doing) jobs of all queues reached the cap of the one pass that
    /// counts them: `todo` and `doing` are lower bounds.
    pub open_capped: bool,
    /// The oldest runnable job (todo and due now, lowest id), if any.
    pub oldest_runnable: Option<OldestRunnable>,
    /// Since when the queue is paused.
    pub paused_at: Option<DateTime<Utc>>,
}

/// A queue's oldest runnable job.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OldestRunnable {
    /// The job.
    pub job_id: i64,
    /// Since when it may run: the later of its `deferred` event and its schedule (`None`
    /// when it has neither, its events deleted).
    pub since: Option<DateTime<Utc>>,
    /// How long ago that was, in seconds, by the store's clock.
    pub age_seconds: Option<f64>,
}

/// Jobs per queue and status, counted or estimated
/// ([`Store::estimate_job_counts`](super::Store::estimate_job_counts)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EstimatedCounts {
    /// Counted (true) or estimated from a sample of the table's pages (false).
    pub exact: bool,
    /// Per queue, by name.
    pub counts: Vec<super::JobCounts>,
}

/// A registered worker (`procrastinate_workers`: Postpone's and Procrastinate's alike).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerRow {
    /// Its id.
    pub id: i64,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// How long ago that was, in seconds, by the store's clock.
    pub heartbeat_age_seconds: f64,
    /// How many jobs it runs (`doing` with its id).
    pub running_jobs: i64,
}

/// The last deferred tick of a periodic schedule (`procrastinate_periodic_defers`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeriodicDefer {
    /// The task.
    pub task_name: String,
    /// The schedule's periodic id (empty by default).
    pub periodic_id: String,
    /// The tick, in seconds since the epoch.
    pub defer_timestamp: Option<i64>,
    /// The job it deferred.
    pub job_id: Option<i64>,
}

/// Events counted per minute and type ([`Store::events_since`](super::Store::events_since)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventTally {
    /// The highest event id counted: the next call starts after it. `None`: no event.
    pub last_id: Option<i64>,
    /// The counts, by minute then type.
    pub counts: Vec<EventCount>,
}

/// How many events of one type happened in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    /// The minute (its start); `None` for events without a time.
    pub minute: Option<DateTime<Utc>>,
    /// The event type (`procrastinate_job_event_type`).
    pub event_type: String,
    /// How many.
    pub count: i64,
}
