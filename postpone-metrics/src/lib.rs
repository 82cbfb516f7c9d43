//! Prometheus metrics for Postpone workers.
//!
//! [`Metrics`] is a [`Subscriber`](postpone::telemetry::Subscriber) of the app's
//! [telemetry](postpone::telemetry): add it with [`AppBuilder::subscribe`], and every
//! worker of the app counts into it. [`serve`] answers `GET /metrics` in Prometheus' text
//! exposition format; [`Metrics::router`] gives the same route to mount in your own axum
//! service. `postpone worker --metrics-addr 127.0.0.1:9464` does both.
//!
//! ```no_run
//! use std::sync::Arc;
//! use postpone_metrics::Metrics;
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = Arc::new(Metrics::new());
//! let app = postpone::App::builder()
//!     .subscribe(metrics.clone())
//!     .build()?;
//! let listener = postpone_metrics::bind("127.0.0.1:9464").await?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(postpone_metrics::serve(listener, metrics, stop.clone()));
//! app.run_worker(postpone::WorkerConfig::default()).await?;
//! # Ok(()) }
//! ```
//!
//! What is measured (labels in braces; `docs/observability.md` has the list with what
//! each is for):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `postpone_jobs_claimed_total` | counter | queue |
//! | `postpone_jobs_started_total` | counter | queue, task |
//! | `postpone_jobs_finished_total` | counter | queue, task, outcome (`succeeded`, `retried`, `failed`, `aborted`) |
//! | `postpone_jobs_rescued_total` | counter | queue, task, action (`handed_back`, `retried`, `failed`, `aborted`) |
//! | `postpone_job_duration_seconds` | histogram | queue, task, outcome |
//! | `postpone_job_local_wait_seconds` | histogram | queue: claim to start, in the worker |
//! | `postpone_job_schedule_lag_seconds` | histogram | queue: `scheduled_at` to start, for jobs that have one |
//! | `postpone_local_queue_jobs` | gauge | claimed, not started yet |
//! | `postpone_jobs_running` | gauge | |
//! | `postpone_claim_duration_seconds` | histogram | one claim round trip |
//! | `postpone_batch_size` | histogram | kind (`outcomes`, `hand_back`) |
//! | `postpone_batch_duration_seconds` | histogram | kind |
//! | `postpone_database_errors_total` | counter | operation |
//! | `postpone_listener_reconnects_total` | counter | |
//!
//! Queue depth and the age of the oldest runnable job come from the database, not from a
//! worker: the dashboard (`postpone dashboard`) serves them on its own `/metrics`.
//!
//! [`AppBuilder::subscribe`]: postpone::AppBuilder::subscribe

#![forbid(unsafe_code)]

mod families;
mod http;

pub use families::Metrics;
pub use http::{Error, bind, serve};

/// The guide `docs/observability.md`, compiled here so that its examples are tested.
pub mod guide {
    #[doc = include_str!("../../docs/observability.md")]
    pub mod observability {}
}
