//! The periodic deferrer: defers each tick of the app's periodic registrations
//! (Procrastinate's `PeriodicDeferrer`). Every worker runs one; the database keeps each
//! tick to one job (`procrastinate_defer_periodic_job_v2`), so it does not matter how
//! many workers, Rust or Python, defer the same schedule.
//!
//! Each pass defers the ticks due since the last pass (the latest one only on the first
//! pass), never one older than the app's max delay, then sleeps until the next tick of
//! any schedule. A tick whose insert fails (database unreachable) is tried again on the
//! next pass, one second later at most, while it is younger than the max delay.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Next, Service, Start};
use crate::app::App;

/// Slept past each tick, so the wall clock has surely reached it.
const MARGIN: Duration = Duration::from_millis(5);
/// Longest wait before trying again a tick that could not be deferred.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The periodic deferrer service.
#[derive(Debug)]
pub(crate) struct PeriodicDeferrer {
    app: App,
    /// Registration index to the last tick handled.
    last: HashMap<usize, i64>,
}

impl PeriodicDeferrer {
    /// Defers the ticks of `app`'s periodic registrations.
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            last: HashMap::new(),
        }
    }

    /// Defers the ticks due at `now`; true if one of them could not be written.
    async fn defer_due(&mut self, now: DateTime<Utc>) -> bool {
        let max_delay = self.app.periodic_max_delay();
        let mut failed = false;
        for (index, periodic) in self.app.periodic_tasks().iter().enumerate() {
            let Some(schedule) = periodic.schedule() else {
                continue;
            };
            for tick in schedule.due_ticks(self.last.get(&index).copied(), now, max_delay) {
                match self.app.defer_periodic_tick(periodic, tick).await {
                    Ok(_) => {
                        self.last.insert(index, tick);
                    }
                    Err(error) => {
                        tracing::warn!(%error, task = %periodic.task_name(), periodic_id = %periodic.periodic_id(), tick, "could not defer a periodic job; trying again");
                        failed = true;
                        break;
                    }
                }
            }
        }
        failed
    }
}

impl Service for PeriodicDeferrer {
    const NAME: &'static str = "periodic deferrer";

    fn start(&self) -> Start {
        let schedules = self.app.periodic_tasks().len();
        if schedules > 0 {
            tracing::info!(schedules, "periodic deferrer started");
        }
        Start::Now
    }

    async fn run_once(&mut self) -> Next {
        if self.app.periodic_tasks().is_empty() {
            return Next::Done;
        }
        let now = Utc::now();
        let failed = self.defer_due(now).await;
        let Some(next) = self
            .app
            .periodic_tasks()
            .iter()
            .filter_map(|p| p.schedule().and_then(|s| s.next_after(now)))
            .min()
        else {
            tracing::warn!("no periodic schedule has a tick to come: periodic deferrer stopped");
            return Next::Done;
        };
        let mut wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO) + MARGIN;
        if failed {
            wait = wait.min(RETRY_AFTER);
        }
        Next::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::periodic::Periodic;
    use crate::store::memory::MemoryStore;
    use crate::task::{JobContext, Task, TaskError};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Tick {
        timestamp: i64,
    }

    impl Task for Tick {
        fn name() -> std::borrow::Cow<'static, str> {
            "tick".into()
        }
        async fn run(self, _ctx: JobContext) -> Result<(), TaskError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_pass_defers_the_due_tick_once_and_waits_for_the_next() {
        let store = MemoryStore::new();
        // Yearly, and a max delay longer than a year: the latest tick is always due, and
        // the next one always a long way off, whenever the test runs.
        let year = Duration::from_secs(366 * 24 * 3600);
        let app = App::builder()
            .task::<Tick>()
            .periodic(Periodic::new::<Tick>("0 0 1 1 *"))
            .periodic_max_delay(year)
            .store(Arc::new(store.clone()))
            .build()
            .expect("app");
        let mut deferrer = PeriodicDeferrer::new(app.clone());
        let Next::After(wait) = deferrer.run_once().await else {
            panic!("a yearly schedule always has a next tick");
        };
        assert!(wait <= year + MARGIN, "{wait:?}");
        let jobs = store.deferred_jobs("tick");
        assert_eq!(jobs.len(), 1, "the latest tick: {jobs:?}");
        // A second pass before the next tick defers nothing more.
        deferrer.run_once().await;
        assert_eq!(store.deferred_jobs("tick").len(), 1);
    }

    #[tokio::test]
    async fn an_app_without_periodic_tasks_is_done_at_once() {
        let app = App::builder()
            .store(Arc::new(MemoryStore::new()))
            .build()
            .expect("app");
        assert_eq!(PeriodicDeferrer::new(app).run_once().await, Next::Done);
    }
}
