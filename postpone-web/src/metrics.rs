//! `GET /metrics`: queue depth and the age of the oldest runnable job per queue, read from
//! the database at each scrape (`JobManager::queue_overview`, bounded), in the OpenMetrics
//! text format (which Prometheus reads) through `prometheus-client`.

use std::sync::atomic::AtomicU64;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Shared;
use crate::auth::Base;
use crate::pages::COUNT_CAP;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<Shared>,
    Extension(base): Extension<Base>,
) -> Response {
    let queues = match state.manager.queue_overview(COUNT_CAP).await {
        Ok(queues) => queues,
        Err(error) => return crate::pages::failure(&base, &state, &error),
    };
    let todo = Family::<QueueLabels, Gauge>::default();
    let doing = Family::<QueueLabels, Gauge>::default();
    let oldest = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
    let paused = Family::<QueueLabels, Gauge>::default();
    for queue in &queues {
        let labels = QueueLabels {
            queue: queue.name.clone(),
        };
        todo.get_or_create(&labels).set(queue.todo);
        doing.get_or_create(&labels).set(queue.doing);
        oldest.get_or_create(&labels).set(
            queue
                .oldest_runnable
                .as_ref()
                .and_then(|o| o.age_seconds)
                .unwrap_or(0.0),
        );
        paused
            .get_or_create(&labels)
            .set(i64::from(queue.paused_at.is_some()));
    }
    let mut registry = Registry::with_prefix("postpone_queue");
    registry.register(
        "todo_jobs",
        format!("Jobs waiting in the queue (todo); a lower bound when over {COUNT_CAP} jobs are open in all queues"),
        todo,
    );
    registry.register(
        "doing_jobs",
        format!("Jobs of the queue running (doing); a lower bound when over {COUNT_CAP} jobs are open in all queues"),
        doing,
    );
    registry.register(
        "oldest_runnable_age_seconds",
        "How long the queue's oldest runnable job has waited (0 when none)",
        oldest,
    );
    registry.register("paused", "1 when the queue is paused", paused);
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::warn!(%error, "dashboard: cannot encode the metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
