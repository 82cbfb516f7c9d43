//! The metric families, and how each telemetry event counts into them.

use std::fmt;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use postpone::telemetry::{Event, Subscriber};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Queue {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueTask {
    queue: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    queue: String,
    task: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rescued {
    queue: String,
    task: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Job durations and waits: 1 ms to about 9 minutes.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 15))
}

/// Round trips: 100 µs to about 15 s.
fn round_trips() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// Batch sizes: 1 to 1,024 (the completer's most is 1,000).
fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// The metrics of every worker of an app: a telemetry subscriber, and its registry.
pub struct Metrics {
    registry: Registry,
    claimed: Family<Queue, Counter>,
    started: Family<QueueTask, Counter>,
    finished: Family<Finished, Counter>,
    rescued: Family<Rescued, Counter>,
    duration: Histograms<Finished>,
    local_wait: Histograms<Queue>,
    schedule_lag: Histograms<Queue>,
    local_queue: Gauge<i64, AtomicI64>,
    running: Gauge<i64, AtomicI64>,
    claim_duration: Histogram,
    batch_size: Histograms<Kind>,
    batch_duration: Histograms<Kind>,
    database_errors: Family<Operation, Counter>,
    listener_reconnects: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, each at zero, names prefixed `postpone_`.
    #[must_use]
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("postpone"),
            claimed: Family::default(),
            started: Family::default(),
            finished: Family::default(),
            rescued: Family::default(),
            duration: Family::new_with_constructor(seconds),
            local_wait: Family::new_with_constructor(seconds),
            schedule_lag: Family::new_with_constructor(seconds),
            local_queue: Gauge::default(),
            running: Gauge::default(),
            claim_duration: round_trips(),
            batch_size: Family::new_with_constructor(sizes),
            batch_duration: Family::new_with_constructor(round_trips),
            database_errors: Family::default(),
            listener_reconnects: Counter::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "jobs_claimed",
            "Jobs claimed by a worker",
            metrics.claimed.clone(),
        );
        r.register("jobs_started", "Attempts started", metrics.started.clone());
        r.register(
            "jobs_finished",
            "Attempts ended, by outcome (succeeded, retried, failed, aborted)",
            metrics.finished.clone(),
        );
        r.register(
            "jobs_rescued",
            "Jobs of dead workers rescued, by what the rescue did",
            metrics.rescued.clone(),
        );
        r.register(
            "job_duration_seconds",
            "How long attempts ran, by outcome",
            metrics.duration.clone(),
        );
        r.register(
            "job_local_wait_seconds",
            "From a job's claim to its start, in the worker's local queue",
            metrics.local_wait.clone(),
        );
        r.register(
            "job_schedule_lag_seconds",
            "From a job's scheduled_at to its start, for jobs that have one",
            metrics.schedule_lag.clone(),
        );
        r.register(
            "local_queue_jobs",
            "Jobs claimed and not started yet",
            metrics.local_queue.clone(),
        );
        r.register("jobs_running", "Attempts running", metrics.running.clone());
        r.register(
            "claim_duration_seconds",
            "Claim round trips",
            metrics.claim_duration.clone(),
        );
        r.register(
            "batch_size",
            "Jobs per batch written (outcomes, hand-backs)",
            metrics.batch_size.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Round trip of a batch written, its retries included",
            metrics.batch_duration.clone(),
        );
        r.register(
            "database_errors",
            "Statements of a worker that failed (and were tried again), by operation",
            metrics.database_errors.clone(),
        );
        r.register(
            "listener_reconnects",
            "Times the link to the database's notifications was made again",
            metrics.listener_reconnects.clone(),
        );
        metrics
    }

    /// The registry: add your own metrics to a registry of yours instead, and encode both
    /// (this one is complete as it is).
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the text exposition format (OpenMetrics 1.0, which Prometheus reads).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn queue(name: &str) -> Queue {
    Queue {
        queue: name.to_owned(),
    }
}

fn queue_task(job: &postpone::Job) -> QueueTask {
    QueueTask {
        queue: job.queue_name.clone(),
        task: job.task_name.clone(),
    }
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl Subscriber for Metrics {
    fn on_event(&self, event: &Event<'_>) {
        match event {
            Event::Claimed { jobs, duration, .. } => {
                self.claim_duration.observe(secs(*duration));
                self.local_queue.inc_by(jobs.len() as i64);
                for job in *jobs {
                    self.claimed.get_or_create(&queue(&job.queue_name)).inc();
                }
            }
            Event::Started {
                job,
                waited_local,
                since_scheduled,
                ..
            } => {
                self.local_queue.dec();
                self.running.inc();
                self.started.get_or_create(&queue_task(job)).inc();
                let queue = queue(&job.queue_name);
                self.local_wait
                    .get_or_create(&queue)
                    .observe(secs(*waited_local));
                if let Some(lag) = since_scheduled {
                    self.schedule_lag.get_or_create(&queue).observe(secs(*lag));
                }
            }
            Event::Finished {
                job, outcome, ran, ..
            } => {
                match ran {
                    Some(_) => self.running.dec(),
                    None => self.local_queue.dec(),
                };
                let labels = Finished {
                    queue: job.queue_name.clone(),
                    task: job.task_name.clone(),
                    outcome: outcome.as_str(),
                };
                if let Some(ran) = ran {
                    self.duration.get_or_create(&labels).observe(secs(*ran));
                }
                self.finished.get_or_create(&labels).inc();
            }
            Event::BatchWritten {
                kind,
                size,
                duration,
                ..
            } => {
                let labels = Kind {
                    kind: kind.as_str(),
                };
                if *kind == postpone::telemetry::BatchKind::HandBack {
                    self.local_queue.dec_by(*size as i64);
                }
                self.batch_size.get_or_create(&labels).observe(*size as f64);
                self.batch_duration
                    .get_or_create(&labels)
                    .observe(secs(*duration));
            }
            Event::Rescued { job, action, .. } => {
                self.rescued
                    .get_or_create(&Rescued {
                        queue: job.queue_name.clone(),
                        task: job.task_name.clone(),
                        action: action.as_str(),
                    })
                    .inc();
            }
            Event::ListenerReconnected { .. } => {
                self.listener_reconnects.inc();
            }
            Event::DatabaseError { operation, .. } => {
                self.database_errors
                    .get_or_create(&Operation { operation })
                    .inc();
            }
            _ => {}
        }
    }
}
