//! Background services of a worker, one file each, sharing one loop helper.
//!
//! A service is a `run_once` pass (that tests call directly) repeated every period by
//! `run_every` until its cancellation token fires.

pub mod heartbeat;
pub(crate) mod periodic;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Calls `pass` every `period` until `stop` fires (first call after one period).
pub(crate) async fn run_every<F, Fut>(period: Duration, stop: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        pass().await;
    }
}
