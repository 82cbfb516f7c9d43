//! The jobs this worker holds: claimed and waiting in the producer's local queue, or
//! running, each with its abort signal.
//!
//! Shared by the producer (adds claimed jobs, finishes those aborted before they start),
//! the executor (starts and removes), the notifier and the abort poller (abort one job on
//! request, whether it runs or waits) and shutdown (abort all running jobs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::context::{AbortReason, AbortSignal};

#[derive(Debug)]
struct Held {
    signal: AbortSignal,
    started: bool,
}

/// Held jobs by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    jobs: Arc<Mutex<HashMap<i64, Held>>>,
    /// Set (and `waiting_aborted` notified) when a job not started yet is aborted.
    waiting_abort: Arc<AtomicBool>,
    waiting_aborted: Arc<Notify>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job claimed into the local queue: abortable, not started.
    pub(crate) fn claimed(&self, id: i64) {
        self.lock().insert(
            id,
            Held {
                signal: AbortSignal::default(),
                started: false,
            },
        );
    }

    /// A job starts: its abort signal (the one it had while waiting, if any).
    pub(crate) fn start(&self, id: i64) -> AbortSignal {
        let mut jobs = self.lock();
        let held = jobs.entry(id).or_insert_with(|| Held {
            signal: AbortSignal::default(),
            started: false,
        });
        held.started = true;
        held.signal.clone()
    }

    pub(crate) fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// True (once) when a waiting job was aborted since the last call.
    pub(crate) fn take_waiting_abort(&self) -> bool {
        self.waiting_abort.swap(false, Ordering::SeqCst)
    }

    /// Completes when a waiting job is aborted (check with [`Self::take_waiting_abort`]).
    pub(crate) async fn waiting_aborted(&self) {
        self.waiting_aborted.notified().await;
    }

    /// Whether this held job was asked to stop.
    pub(crate) fn is_aborted(&self, id: i64) -> bool {
        self.lock().get(&id).is_some_and(|h| h.signal.is_aborted())
    }

    /// Asks one job to stop; false when this worker does not hold it.
    pub(crate) fn abort(&self, id: i64, reason: AbortReason) -> bool {
        let waiting = match self.lock().get(&id) {
            Some(held) => {
                held.signal.abort(reason);
                !held.started
            }
            None => return false,
        };
        if waiting {
            self.waiting_abort.store(true, Ordering::SeqCst);
            self.waiting_aborted.notify_one();
        }
        true
    }

    /// Asks every running job to stop (jobs waiting to start are the producer's to hand
    /// back).
    pub(crate) fn abort_all(&self, reason: AbortReason) {
        for held in self.lock().values().filter(|h| h.started) {
            held.signal.abort(reason);
        }
    }

    /// Every held job, running or waiting.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    /// Jobs running.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().filter(|h| h.started).count()
    }
}
