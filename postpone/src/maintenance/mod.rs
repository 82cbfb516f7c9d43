//! The services a worker runs beside its jobs, one file each, sharing one lifecycle:
//!
//! - [`heartbeat`]: keeps the worker's row alive (`procrastinate_update_heartbeat_v1`);
//! - [`rescuer`]: rescues the jobs of dead workers and removes their rows, at start and
//!   every `rescue_interval` (on by default);
//! - [`pruner`]: with the rescue off, removes workers whose heartbeat stopped, at start
//!   (`procrastinate_prune_stalled_workers_v1`);
//! - [`aborter`]: finds abort requests of held jobs that no notification delivered;
//! - [`periodic`]: defers the ticks of the app's periodic tasks;
//! - [`workflows`]: records the ends of workflow nodes whose jobs ended elsewhere (a
//!   Python worker's), and advances their workflows.
//!
//! A service is a [`Service`]: a `run_once` pass (which tests call directly) that says when
//! the next pass is due, and when the first one runs ([`Service::START`]). [`Services`]
//! starts them, runs each in its own task until [`Services::stop`], and stops them all
//! together, after the worker's last outcome is written (so the heartbeat outlives the
//! jobs). A pass is never cut short: a stop takes effect between passes.

pub(crate) mod aborter;
pub(crate) mod heartbeat;
pub(crate) mod periodic;
pub(crate) mod pruner;
pub(crate) mod rescuer;
pub(crate) mod workflows;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// When a service's next pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// After this long.
    After(Duration),
    /// Never: the service has nothing more to do.
    Done,
}

/// When a service's first pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Before [`Services::start`] returns (so the worker starts only after it).
    Inline,
    /// At once, in the background.
    Now,
    /// After this long.
    After(Duration),
}

/// A background service of a worker.
pub(crate) trait Service: Send + 'static {
    /// Its name, in logs.
    const NAME: &'static str;
    /// When its first pass runs.
    fn start(&self) -> Start;
    /// One pass; when the next one is due. A pass handles its own errors (logs them and
    /// says when to try again): a service never stops the worker.
    fn run_once(&mut self) -> impl Future<Output = Next> + Send;
}

/// The running services of one worker, stopped together.
#[derive(Debug, Default)]
pub(crate) struct Services {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Services {
    /// No service yet.
    #[must_use]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts a service: its first pass when [`Service::start`] says, then each pass when
    /// the last one said, until [`Self::stop`].
    pub(crate) async fn start<S: Service>(&self, mut service: S) {
        let first = match service.start() {
            Start::Inline => match service.run_once().await {
                Next::After(wait) => wait,
                Next::Done => return,
            },
            Start::Now => Duration::ZERO,
            Start::After(wait) => wait,
        };
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tracing::debug!(service = S::NAME, "service started");
            let mut wait = first;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match service.run_once().await {
                    Next::After(next) => wait = next,
                    Next::Done => {
                        tracing::debug!(service = S::NAME, "service done");
                        return;
                    }
                }
            }
        });
    }

    /// Runs a service that is a loop of its own (the notifier) under the same lifecycle:
    /// `run` gets the token that [`Self::stop`] cancels, and must return once it is.
    pub(crate) fn spawn<F, Fut>(&self, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(run(self.stop.clone()));
    }

    /// Stops every service and waits until each has returned.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts its passes; done after `last`.
    struct Counter {
        start: Start,
        passes: Arc<AtomicUsize>,
        last: usize,
    }

    impl Service for Counter {
        const NAME: &'static str = "counter";

        fn start(&self) -> Start {
            self.start
        }

        async fn run_once(&mut self) -> Next {
            let n = self.passes.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.last {
                Next::Done
            } else {
                Next::After(Duration::from_secs(10))
            }
        }
    }

    fn counter(start: Start, last: usize) -> (Counter, Arc<AtomicUsize>) {
        let passes = Arc::new(AtomicUsize::new(0));
        let service = Counter {
            start,
            passes: passes.clone(),
            last,
        };
        (service, passes)
    }

    /// Lets the spawned services run up to the (paused) clock's present.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_when_due_until_done_or_stopped() {
        let services = Services::new();
        let (inline, inline_passes) = counter(Start::Inline, 1);
        services.start(inline).await;
        assert_eq!(
            inline_passes.load(Ordering::SeqCst),
            1,
            "inline: before start returns"
        );

        let (later, later_passes) = counter(Start::After(Duration::from_secs(5)), usize::MAX);
        services.start(later).await;
        settle().await;
        assert_eq!(later_passes.load(Ordering::SeqCst), 0);
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(
            later_passes.load(Ordering::SeqCst),
            1,
            "first pass after 5 s"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(later_passes.load(Ordering::SeqCst), 2, "then every 10 s");

        let (done, done_passes) = counter(Start::Now, 2);
        services.start(done).await;
        settle().await;
        assert_eq!(done_passes.load(Ordering::SeqCst), 1, "now");
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(done_passes.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(done_passes.load(Ordering::SeqCst), 2, "no pass after Done");

        services.stop().await;
        let stopped_at = later_passes.load(Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(
            later_passes.load(Ordering::SeqCst),
            stopped_at,
            "no pass after stop"
        );
    }
}
