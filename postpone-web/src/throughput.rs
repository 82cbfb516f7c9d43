//! Throughput over the last minutes without scanning the events table: a background task
//! reads the events after the last one it saw (`JobManager::events_since`, through the
//! primary key) every refresh interval and keeps per-minute counts per event type in a
//! ring of [`MINUTES_KEPT`] minutes. At start it backfills from at most [`BACKFILL_EVENTS`]
//! events back.
//!
//! The task starts with the first request that needs it and ends once the router (which
//! holds the only strong reference to the ring) is dropped. An event whose transaction
//! commits after a later id was read is not counted: the chart may miss a few events of
//! long transactions, never count one twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use postpone::JobManager;

use crate::REFRESH_INTERVAL_DEFAULT;

/// Minutes of counts kept.
pub(crate) const MINUTES_KEPT: usize = 30;
/// How far back the first read starts, in events.
pub(crate) const BACKFILL_EVENTS: i64 = 200_000;
/// Events read per statement.
const CHUNK: i64 = 50_000;
/// Statements per refresh at most (a burst larger than that is caught up over a few).
const CHUNKS_PER_TICK: usize = 4;

/// Counts per minute and event type.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// Minute to event type to count.
    pub(crate) minutes: BTreeMap<DateTime<Utc>, BTreeMap<String, i64>>,
    /// The last event id read.
    last_id: Option<i64>,
    /// Whether the first read (the backfill) is done.
    pub(crate) ready: bool,
}

/// The ring and its sampler.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    ring: Mutex<Ring>,
    started: AtomicBool,
}

impl Throughput {
    /// Starts the sampler once (needs a tokio runtime: called from a handler).
    pub(crate) fn ensure_started(self: &Arc<Self>, manager: &JobManager) {
        let weak = Arc::downgrade(self);
        let manager = manager.clone();
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(weak, manager));
        }
    }

    /// The counts of `event_type` over the last `n` minutes (oldest first, the current
    /// minute last), and whether the backfill is done.
    pub(crate) fn last_minutes(
        &self,
        event_type: &str,
        n: usize,
    ) -> (Vec<(DateTime<Utc>, i64)>, bool) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let now = minute_of(Utc::now());
        let span = i64::try_from(n).unwrap_or(0);
        let counts = (0..span)
            .rev()
            .map(|back| {
                let minute = now - TimeDelta::minutes(back);
                let count = ring
                    .minutes
                    .get(&minute)
                    .and_then(|types| types.get(event_type))
                    .copied()
                    .unwrap_or(0);
                (minute, count)
            })
            .collect();
        (counts, ring.ready)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// One pass: reads new events (the backfill on the first), adds them to the ring.
async fn sample(throughput: &Throughput, manager: &JobManager) -> postpone::Result<()> {
    let start = throughput.lock().last_id;
    let mut after = match start {
        Some(id) => id,
        None => manager
            .last_event_id()
            .await?
            .map_or(0, |last| last.saturating_sub(BACKFILL_EVENTS).max(0)),
    };
    for _ in 0..CHUNKS_PER_TICK {
        let tally = manager.events_since(after, CHUNK).await?;
        let mut ring = throughput.lock();
        for count in &tally.counts {
            if let Some(minute) = count.minute {
                *ring
                    .minutes
                    .entry(minute)
                    .or_default()
                    .entry(count.event_type.clone())
                    .or_default() += count.count;
            }
        }
        let Some(last) = tally.last_id else {
            ring.last_id = Some(after);
            break;
        };
        after = last;
        ring.last_id = Some(last);
        let total: i64 = tally.counts.iter().map(|c| c.count).sum();
        if total < CHUNK {
            break;
        }
    }
    let mut ring = throughput.lock();
    ring.ready = true;
    let oldest =
        minute_of(Utc::now()) - TimeDelta::minutes(i64::try_from(MINUTES_KEPT).unwrap_or(30));
    ring.minutes.retain(|minute, _| *minute >= oldest);
    Ok(())
}

async fn run(throughput: Weak<Throughput>, manager: JobManager) {
    let mut interval = tokio::time::interval(REFRESH_INTERVAL_DEFAULT);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(throughput) = throughput.upgrade() else {
            return; // the router is gone
        };
        if let Err(error) = sample(&throughput, &manager).await {
            tracing::warn!(%error, "dashboard: cannot read new events for the throughput chart");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use postpone::store::DeferJobParams;
    use postpone::{App, MemoryStore};

    use super::{Throughput, sample};

    #[tokio::test]
    async fn events_are_counted_per_minute_and_once() {
        let store = MemoryStore::new();
        let app = App::builder()
            .store(Arc::new(store.clone()))
            .build()
            .expect("app");
        let job = DeferJobParams::resolve("t".into(), serde_json::json!({}), Default::default())
            .expect("job");
        app.store()
            .defer_jobs(&[job.clone(), job])
            .await
            .expect("defer");
        let throughput = Throughput::default();
        let manager = app.job_manager();
        sample(&throughput, &manager).await.expect("sample");
        sample(&throughput, &manager).await.expect("sample again");
        let (counts, ready) = throughput.last_minutes("deferred", 2);
        assert!(ready);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 2);
    }
}
