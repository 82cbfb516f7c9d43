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

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Slept past each tick, so the wall clock has surely reached it.
const MARGIN: Duration = Duration::from_millis(5);
/// Longest wait before trying again a tick that could not be deferred.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs the deferrer until `stop` fires; returns at once when there is nothing periodic.
pub(crate) async fn run(app: App, stop: CancellationToken) {
    let periodic = app.periodic_tasks();
    if periodic.is_empty() {
        return;
    }
    tracing::info!(schedules = periodic.len(), "periodic deferrer started");
    // Registration index to the last tick handled.
    let mut last: HashMap<usize, i64> = HashMap::new();
    loop {
        let now = Utc::now();
        let failed = run_once(&app, &mut last, now).await;
        let Some(next) = periodic
            .iter()
            .filter_map(|p| p.schedule().and_then(|s| s.next_after(now)))
            .min()
        else {
            tracing::warn!("no periodic schedule has a tick to come: periodic deferrer stopped");
            return;
        };
        let mut wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO) + MARGIN;
        if failed {
            wait = wait.min(RETRY_AFTER);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass at `now`: defers the due ticks; true if one of them could not be written.
async fn run_once(app: &App, last: &mut HashMap<usize, i64>, now: chrono::DateTime<Utc>) -> bool {
    let max_delay = app.periodic_max_delay();
    let mut failed = false;
    for (index, periodic) in app.periodic_tasks().iter().enumerate() {
        let Some(schedule) = periodic.schedule() else {
            continue;
        };
        for tick in schedule.due_ticks(last.get(&index).copied(), now, max_delay) {
            match app.defer_periodic_tick(periodic, tick).await {
                Ok(_) => {
                    last.insert(index, tick);
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
