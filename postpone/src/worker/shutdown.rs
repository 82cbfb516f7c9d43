//! Stopping a worker: the two requests (graceful and forced), the signals that make them,
//! and the winding down of running jobs (Procrastinate's shutdown).
//!
//! A graceful stop claims nothing more, hands the jobs of the local queue back to `todo`,
//! and lets running jobs end, up to `shutdown_graceful_timeout`; then they are aborted
//! (reason [`AbortReason::Shutdown`]). A forced stop (second signal,
//! [`WorkerHandle::abort`](super::WorkerHandle::abort)) aborts running jobs at once, and
//! stops the retries of writes the database does not take. Either way every outcome that
//! can be written is written, then the worker unregisters.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::WorkerState;
use crate::context::AbortReason;

/// The stop requests of one worker; clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown {
    stop: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    /// Graceful stop.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Forced stop (a graceful one too).
    pub(crate) fn force(&self) {
        self.stop.cancel();
        self.force.cancel();
    }

    /// The graceful stop as a token (cancelling it stops the worker).
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// True once a stop was asked.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Completes when a stop is asked.
    pub(crate) async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Completes when a forced stop is asked.
    pub(crate) async fn forced(&self) {
        self.force.cancelled().await;
    }

    /// Stops on SIGINT/SIGTERM, as `signals` receives them: the first graceful, the
    /// second forced. A signal received before this call (while the worker started) counts.
    pub(crate) fn on_signals(&self, mut signals: StopSignals) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            signals.next().await;
            tracing::info!("stop requested: finishing running jobs (signal again to abort them)");
            shutdown.stop();
            signals.next().await;
            tracing::warn!("second stop request: aborting running jobs");
            shutdown.force();
        });
    }
}

/// Once nothing new starts: waits for the running jobs (`jobs`) to end, aborting them when
/// the graceful timeout runs out or a forced stop comes.
pub(crate) async fn wind_down(
    jobs: &TaskTracker,
    state: &WorkerState,
    graceful_timeout: Option<Duration>,
    shutdown: &Shutdown,
) {
    jobs.close();
    if !jobs.is_empty() {
        tracing::info!(running = state.running(), "waiting for running jobs");
    }
    let graceful = async {
        match graceful_timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = jobs.wait() => return,
        () = graceful => {
            tracing::warn!(running = state.running(), "graceful timeout over: aborting running jobs");
            state.abort_all(AbortReason::Shutdown);
        }
        () = shutdown.forced() => state.abort_all(AbortReason::Shutdown),
    }
    // A forced stop may still come while aborted jobs wind down.
    tokio::select! {
        () = jobs.wait() => {}
        () = shutdown.forced() => {
            state.abort_all(AbortReason::Shutdown);
            jobs.wait().await;
        }
    }
}

/// SIGINT and SIGTERM, listened to from creation on.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Listens from now on: the process no longer dies of these signals.
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt.as_mut()) => {}
                () = recv(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
