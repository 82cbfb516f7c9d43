//! The jobs this worker runs right now, with their abort signals.
//!
//! Shared by the executor (adds and removes), the notifier and the abort poller (abort
//! one job on request) and shutdown (abort all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::context::{AbortReason, AbortSignal};

/// Running jobs by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    jobs: Arc<Mutex<HashMap<i64, AbortSignal>>>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, AbortSignal>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, id: i64) -> AbortSignal {
        let signal = AbortSignal::default();
        self.lock().insert(id, signal.clone());
        signal
    }

    pub(crate) fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Asks one job to stop; false when it does not run here.
    pub(crate) fn abort(&self, id: i64, reason: AbortReason) -> bool {
        match self.lock().get(&id) {
            Some(signal) => {
                signal.abort(reason);
                true
            }
            None => false,
        }
    }

    pub(crate) fn abort_all(&self, reason: AbortReason) {
        for signal in self.lock().values() {
            signal.abort(reason);
        }
    }

    pub(crate) fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
