//! The dashboard's reads on PostgreSQL ([`crate::store::inspect`]): one named query each,
//! every one bounded by an index or a cap (see the query files for how).

use std::collections::BTreeMap;

use tokio_postgres::Row;

use super::{PgStore, db, queries, rows, status_text};
use crate::Result;
use crate::job::Job;
use crate::store::{
    EstimatedCounts, EventCount, EventTally, JobCounts, JobEvent, JobFilter, JobPage,
    JobPageParams, OldestRunnable, PageCursor, PeriodicDefer, QueueState, WorkerRow,
};

/// Per-queue counts from rows of `(name, status, n)`, each `n` multiplied by `scale`.
fn counts_from_rows(rows: &[Row], scale: f64) -> Result<Vec<JobCounts>> {
    let mut per_queue: BTreeMap<String, BTreeMap<crate::JobStatus, i64>> = BTreeMap::new();
    for row in rows {
        let name: String = row.try_get("name").map_err(db)?;
        let status: String = row.try_get("status").map_err(db)?;
        let n: i64 = row.try_get("n").map_err(db)?;
        // Estimates are whole jobs; a sample's scale is at most a few thousand.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let scaled = (n as f64 * scale).round() as i64;
        *per_queue
            .entry(name)
            .or_default()
            .entry(status.parse()?)
            .or_default() += scaled;
    }
    Ok(per_queue
        .into_iter()
        .map(|(name, stats)| JobCounts {
            name,
            jobs_count: stats.values().sum(),
            stats,
        })
        .collect())
}

impl PgStore {
    pub(super) async fn inspect_list_jobs_page(&self, params: &JobPageParams) -> Result<JobPage> {
        let (sql, cursor) = match params.cursor {
            PageCursor::Newest => (queries::LIST_JOBS_PAGE, None),
            PageCursor::Before(id) => (queries::LIST_JOBS_PAGE, Some(id)),
            PageCursor::After(id) => (queries::LIST_JOBS_PAGE_NEWER, Some(id)),
        };
        let JobFilter {
            id,
            queue_name,
            task_name,
            status,
            lock,
            queueing_lock,
            worker_id,
            limit: _,
        } = &params.filter;
        let rows = self
            .query(
                sql,
                &[
                    id,
                    queue_name,
                    task_name,
                    &status_text(*status),
                    lock,
                    queueing_lock,
                    worker_id,
                    &params.search,
                    &cursor,
                    &params.limit,
                    &params.scan_limit,
                ],
            )
            .await?;
        let mut page = JobPage::default();
        for row in &rows {
            page.scan_edge = row.try_get("edge").map_err(db)?;
            page.scanned = row.try_get("scanned").map_err(db)?;
            let job_id: Option<i64> = row.try_get("id").map_err(db)?;
            if job_id.is_some() {
                page.jobs.push(rows::job(row)?);
            }
        }
        if matches!(params.cursor, PageCursor::After(_)) {
            page.jobs.reverse(); // read oldest first: shown newest first
        }
        Ok(page)
    }

    pub(super) async fn inspect_queue_overview(&self, count_cap: i64) -> Result<Vec<QueueState>> {
        let rows = self.query(queries::QUEUE_OVERVIEW, &[&count_cap]).await?;
        rows.iter()
            .map(|row| {
                let oldest_id: Option<i64> = row.try_get("oldest_id").map_err(db)?;
                Ok(QueueState {
                    name: row.try_get("name").map_err(db)?,
                    todo: row.try_get("todo").map_err(db)?,
                    doing: row.try_get("doing").map_err(db)?,
                    open_capped: row.try_get("open_capped").map_err(db)?,
                    oldest_runnable: match oldest_id {
                        Some(job_id) => Some(OldestRunnable {
                            job_id,
                            since: row.try_get("runnable_since").map_err(db)?,
                            age_seconds: row.try_get("oldest_age_seconds").map_err(db)?,
                        }),
                        None => None,
                    },
                    paused_at: row.try_get("paused_at").map_err(db)?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_estimate_job_counts(
        &self,
        sample_pages: i64,
    ) -> Result<EstimatedCounts> {
        let pages: i64 = match self.query(queries::JOB_TABLE_SIZE, &[]).await?.first() {
            Some(row) => row.try_get("pages").map_err(db)?,
            None => 0,
        };
        if pages <= sample_pages.max(1) {
            let none: Option<String> = None;
            let rows = self
                .query(queries::LIST_QUEUES, &[&none, &none, &none, &none])
                .await?;
            let mut counts = Vec::with_capacity(rows.len());
            for row in &rows {
                let stats: serde_json::Value = row.try_get("stats").map_err(db)?;
                let mut per_status = BTreeMap::new();
                if let serde_json::Value::Object(map) = stats {
                    for (status, n) in map {
                        per_status.insert(status.parse()?, n.as_i64().unwrap_or(0));
                    }
                }
                counts.push(JobCounts {
                    name: row.try_get("name").map_err(db)?,
                    jobs_count: row.try_get("jobs_count").map_err(db)?,
                    stats: per_status,
                });
            }
            return Ok(EstimatedCounts {
                exact: true,
                counts,
            });
        }
        // Page counts are far below f32's exact range for a ratio of two of them.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let percent = (100.0 * sample_pages.max(1) as f64 / pages as f64) as f32;
        let rows = self.query(queries::COUNT_JOBS_SAMPLED, &[&percent]).await?;
        Ok(EstimatedCounts {
            exact: false,
            counts: counts_from_rows(&rows, 100.0 / f64::from(percent))?,
        })
    }

    pub(super) async fn inspect_list_workers(&self) -> Result<Vec<WorkerRow>> {
        let rows = self.query(queries::LIST_WORKERS, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(WorkerRow {
                    id: row.try_get("id").map_err(db)?,
                    last_heartbeat: row.try_get("last_heartbeat").map_err(db)?,
                    heartbeat_age_seconds: row.try_get("heartbeat_age_seconds").map_err(db)?,
                    running_jobs: row.try_get("running_jobs").map_err(db)?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_list_events(
        &self,
        job_id: i64,
        limit: i64,
    ) -> Result<Vec<JobEvent>> {
        let rows = self.query(queries::LIST_EVENTS, &[&job_id, &limit]).await?;
        rows.iter()
            .map(|row| {
                let event_type: String = row.try_get("type").map_err(db)?;
                let at: Option<chrono::DateTime<chrono::Utc>> = row.try_get("at").map_err(db)?;
                Ok(JobEvent {
                    id: row.try_get("id").map_err(db)?,
                    job_id: row.try_get("job_id").map_err(db)?,
                    event_type: event_type.parse()?,
                    at: at.unwrap_or_default(),
                })
            })
            .collect()
    }

    pub(super) async fn inspect_last_event_id(&self) -> Result<Option<i64>> {
        match self.query(queries::LAST_EVENT_ID, &[]).await?.first() {
            Some(row) => row.try_get("id").map_err(db),
            None => Ok(None),
        }
    }

    pub(super) async fn inspect_events_since(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<EventTally> {
        let rows = self
            .query(queries::EVENTS_SINCE, &[&after_id, &limit])
            .await?;
        let mut tally = EventTally::default();
        for row in &rows {
            let last_id: i64 = row.try_get("last_id").map_err(db)?;
            tally.last_id = tally.last_id.max(Some(last_id));
            tally.counts.push(EventCount {
                minute: row.try_get("minute").map_err(db)?,
                event_type: row.try_get("type").map_err(db)?,
                count: row.try_get("n").map_err(db)?,
            });
        }
        Ok(tally)
    }

    pub(super) async fn inspect_list_periodic_defers(&self) -> Result<Vec<PeriodicDefer>> {
        let rows = self.query(queries::LIST_PERIODIC_DEFERS, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(PeriodicDefer {
                    task_name: row.try_get("task_name").map_err(db)?,
                    periodic_id: row.try_get("periodic_id").map_err(db)?,
                    defer_timestamp: row.try_get("defer_timestamp").map_err(db)?,
                    job_id: row.try_get("job_id").map_err(db)?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_list_locked_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        let rows = self.query(queries::LIST_LOCKED_JOBS, &[&limit]).await?;
        rows.iter().map(rows::job).collect()
    }

    pub(super) async fn inspect_get_job_timeout(
        &self,
        job_id: i64,
    ) -> Result<Option<std::time::Duration>> {
        let rows = self.query(queries::GET_JOB_TIMEOUT, &[&job_id]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let ms: i64 = row.try_get("timeout_ms").map_err(db)?;
        Ok(u64::try_from(ms).ok().map(std::time::Duration::from_millis))
    }
}
